"""Every bad input a demanding user tried gives one clear line and exit code 2, no traceback, nothing written.

The command lines run in-process (their `main` under `guarded`, as `python -m` runs them) to keep the table fast;
tests/test_cli.py runs them as real processes.
"""
from __future__ import annotations

import numpy as np
import pytest

from lib.api import PosePrior
from lib.errors import ToolkitError
from run import denoise_fc_adv_3d, eval_fc_mp_adv_3d, train_fc_adv_3d
from tests.helpers import overrides, run_main, tiny_config

SMALL_TRAIN = ["--config", "configs/subvp/synthetic_small.py", "--name", "bad"]


def _cli(module, argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    code, _, err = run_main(module, argv, monkeypatch, capsys)
    return code, err


def _one_line_error(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err


@pytest.fixture()
def bad_configs(tmp_path) -> dict[str, str]:
    (tmp_path / "syntax.py").write_text("def get_config(:\n")
    (tmp_path / "raises.py").write_text("def get_config():\n    raise RuntimeError('boom')\n")
    (tmp_path / "nothing.py").write_text("x = 1\n")
    return {k: str(tmp_path / f"{k}.py") for k in ("syntax", "raises", "nothing")}


TRAIN_CASES = [
    (["--config", "{syntax}", "--name", "x"], "line 1: syntax error"),
    (["--config", "{raises}", "--name", "x"], "get_config() failed with RuntimeError: boom"),
    (["--config", "{nothing}", "--name", "x"], "does not define get_config()"),
    (["--config.training.batch_size=0"], "training.batch_size = 0 must be >= 1"),
    (["--config.training.batch_size=-5"], "training.batch_size = -5 must be >= 1"),
    (["--config.training.log_every=0"], "training.log_every = 0 must be >= 1"),
    (["--config.training.n_iters=-1"], "training.n_iters = -1 must be >= 1"),
    (["--config.optim.lr=-1"], "optim.lr = -1.0 must be > 0"),
    (["--config.optim.lr=1e400"], "optim.lr = inf must be finite"),
    (["--config.eval.train_max_poses=0"], "eval.train_max_poses = 0 must be >= 1"),
    (["--config.data.scale=0"], "data.scale = 0.0 must be > 0"),
    (["--config.sampling.eps=2"], "sampling.eps = 2.0 must be < 1"),
    (["--config.model.hidden_dim=100"], "must be divisible by model.num_groups"),
    (["--config.eval.train_method=magic"], "unknown sampler 'magic'"),
    (["--config.model.widht=3"], "unknown config field 'model.widht'"),
    (["--restore-dir", "{tmp}/nowhere"], "holds no checkpoint.pth"),
]


@pytest.mark.parametrize("args,message", TRAIN_CASES)
def test_train_bad_input(args, message, data_root, tmp_path, bad_configs, monkeypatch, capsys):
    args = [a.format(tmp=tmp_path, **bad_configs) for a in args]
    argv = ["--ckpt-root", str(tmp_path)] + overrides(tiny_config(data_root))
    argv = (args + argv) if args[0] == "--config" else (SMALL_TRAIN + argv + args)
    code, err = _cli(train_fc_adv_3d, argv, monkeypatch, capsys)
    _one_line_error(code, err, message)
    assert not (tmp_path / "bad").exists()  # nothing that looks like a run


def test_train_refuses_an_existing_run_and_keeps_it(trained_run, data_root, monkeypatch, capsys):
    before = (trained_run / "best_model.pth").read_bytes()
    argv = [*SMALL_TRAIN[:2], "--name", trained_run.name, "--ckpt-root", str(trained_run.parent),
            *overrides(tiny_config(data_root))]
    code, err = _cli(train_fc_adv_3d, argv, monkeypatch, capsys)
    _one_line_error(code, err, "--restore-dir")
    assert (trained_run / "best_model.pth").read_bytes() == before


EVAL_CASES = [
    (["--hypo", "0", "est"], "eval.hypo = 0 must be >= 1"),
    (["--batch", "0", "est"], "eval.batch_size = 0 must be >= 1"),
    (["--batch", "-5", "est"], "eval.batch_size = -5 must be >= 1"),
    (["--gpus", "-1", "est"], "--gpus must be >= 0"),
    (["--traj-frames", "0", "--save", "trajs", "est"], "--traj-frames must be >= 1"),
    (["--traj-frames", "-1", "est"], "--traj-frames must be >= 1"),
    (["--config.sampling.eps=2", "est"], "sampling.eps = 2.0 must be < 1"),
    (["--config.model.hidden_dim=512", "est"], "model.hidden_dim=512 cannot take effect"),
    (["--config.training.batch_size=5", "est"], "training.batch_size=5 cannot take effect"),
    (["--config.data.det_file=nothere.pkl", "est"], "nothere.pkl (data.det_file) not found"),
    (["--config.data.scale=0", "est"], "data.scale = 0.0 must be > 0"),
    (["--gt", "--config.data.use_gt_2d=false", "est"], "--gt and --config.data.use_gt_2d=False disagree"),
    (["--config.sampling.method=magic", "est"], "unknown sampler 'magic'"),
    (["--fast", "--steps", "5", "est"], "--fast picks the sampler itself"),
    (["--pflow", "--sampler", "em", "est"], "--pflow picks the paper's deterministic sampler"),
    (["--schedule", "paper", "--sampler", "drift_2m", "est"], "needs a proper grid"),
    (["--config.model.widht=3", "est"], "unknown config field"),
    (["comp2d", "--randj", "9"], "--randj must be between 1 and 8"),
    (["comp3d", "--jlist", "1,17"], "out of range"),
    (["comp3d", "--jlist", "left_tail"], "unknown joint or part"),
    (["comp3d"], "give exactly one of --randj"),
    (["gen", "--num", "0"], "--num must be >= 1"),
    (["--out", "README.md", "est"], "cannot create folder README.md"),
    (["--json", "{tmp}", "est"], "is a folder; give a file name"),
]


@pytest.mark.parametrize("args,message", EVAL_CASES)
def test_eval_bad_input(args, message, trained_run, tmp_path, monkeypatch, capsys):
    args = [a.format(tmp=tmp_path) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "out")]
    code, err = _cli(eval_fc_mp_adv_3d, ["--ckpt-dir", str(trained_run), *out, *args], monkeypatch, capsys)
    _one_line_error(code, err, message)
    assert not (tmp_path / "out" / "results.npz").exists()


@pytest.mark.parametrize("args,message", [
    (["--std", "nan"], "--std must be >= 0 and finite"), (["--std", "-1"], "--std must be >= 0"),
    (["--t", "0"], "--t must be in (0, 1]"), (["--t", "2"], "--t must be in (0, 1]"),
    (["--t", "0.0005"], "start time (0.0005) must be in (sampling.eps"),
    (["--noise-type", "pink"], "argument --noise-type: invalid choice"),
])
def test_den_bad_input(args, message, trained_run, tmp_path, monkeypatch, capsys):
    argv = ["--ckpt-dir", str(trained_run), "--out", str(tmp_path), "--steps", "5", "den", *args]
    code, err = _cli(denoise_fc_adv_3d, argv, monkeypatch, capsys)
    _one_line_error(code, err, message)


def test_paths_that_do_not_exist(trained_run, tmp_path, monkeypatch, capsys):
    code, err = _cli(eval_fc_mp_adv_3d, ["--ckpt-dir", str(tmp_path / "none"), "est"], monkeypatch, capsys)
    _one_line_error(code, err, "does not exist")
    code, err = _cli(eval_fc_mp_adv_3d, ["--ckpt-dir", str(tmp_path), "--best", "est"], monkeypatch, capsys)
    _one_line_error(code, err, "best_model.pth not found")
    (tmp_path / "best_model.pth").write_bytes(b"\x80\x04garbage")
    code, err = _cli(eval_fc_mp_adv_3d, ["--ckpt-dir", str(tmp_path), "--best", "est"], monkeypatch, capsys)
    _one_line_error(code, err, "truncated, corrupt or not a checkpoint")


@pytest.fixture(scope="module")
def prior(trained_run):
    return PosePrior.from_checkpoint(trained_run, best=False)


API_CASES = [
    (lambda p: p.estimate(np.zeros((2, 17, 2)), hypotheses=2.5), "hypotheses must be a whole number"),
    (lambda p: p.estimate(np.zeros((2, 17, 2)), hypotheses=0), "hypotheses must be a whole number >= 1"),
    (lambda p: p.estimate(np.zeros((2, 17, 2)), seed=None), "seed must be a whole number"),
    (lambda p: p.estimate(np.zeros((2, 17, 2)), steps=0), "steps must be a whole number >= 1"),
    (lambda p: p.estimate(np.zeros((2, 17, 2)), camera=(1000, 1000, 500, 500)), "give root_depth"),
    (lambda p: p.estimate(np.zeros((2, 17, 2)), camera=(np.nan, 1000, 500, 500), root_depth=4000), "fx, fy > 0"),
    (lambda p: p.estimate(np.zeros((2, 17, 2)), camera=(0, 1000, 500, 500), root_depth=4000), "fx, fy > 0"),
    (lambda p: p.estimate(np.zeros((2, 17, 2)), camera=(1000, 1000, 500, 500), root_depth=-1), "root_depth must"),
    (lambda p: p.estimate(np.zeros((2, 17, 2)), root_depth=4000), "only used with camera"),
    (lambda p: p.estimate(np.full((2, 17, 2), "a")), "array of numbers"),
    (lambda p: p.complete_3d(np.zeros((2, 17, 3)), [1.5]), "joint indices (whole numbers)"),
    (lambda p: p.complete_3d(np.zeros((2, 17, 3)), [17]), "0..16"),
    (lambda p: p.complete_3d(np.zeros((2, 17, 3)), np.ones(5, bool)), "boolean `missing` must have shape"),
    (lambda p: p.score(np.zeros((2, 17, 3)), t=0), "t must be a number in [1e-05, 1]"),
    (lambda p: p.score(np.zeros((2, 17, 3)), t=1.5), "t must be a number in [1e-05, 1]"),
    (lambda p: p.denoise(np.zeros((2, 17, 3)), t=1e-4), "t must be a number in (0.001, 1]"),
    (lambda p: p.generate(-1), "n must be a whole number >= 0"),
    (lambda p: p.estimate(np.zeros((2, 17, 2)), method="magic"), "unknown method 'magic'"),
    (lambda p: p.estimate(np.zeros((2, 17, 2)), fast=True, steps=5), "--fast picks the sampler itself"),
]


@pytest.mark.parametrize("call,message", API_CASES)
def test_api_bad_input(prior, call, message):
    with pytest.raises(ToolkitError) as e:
        call(prior)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_api_empty_input_and_chunking(prior):
    assert prior.estimate(np.zeros((0, 17, 2)), hypotheses=3).shape == (0, 3, 17, 3)
    assert prior.complete_3d(np.zeros((0, 17, 3)), [2]).shape == (0, 1, 17, 3)
    assert prior.generate(0).shape == (0, 17, 3)
    assert prior.denoise(np.zeros((0, 17, 3))).shape == (0, 17, 3)
    batch = prior.config.eval.batch_size
    many = np.random.default_rng(0).normal(0, 0.3, (batch + 7, 17, 2))
    out = prior.estimate(many, steps=2)
    assert out.shape == (batch + 7, 1, 17, 3) and np.isfinite(out).all()  # sampled in chunks of eval.batch_size


def test_a_malicious_checkpoint_is_refused_as_such(tmp_path):
    import os

    import torch

    from lib.checkpoint import load_checkpoint

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model_state_dict": {}, "x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ToolkitError, match="refusing to load .* could run code"):
        load_checkpoint(tmp_path / "evil.pth")
