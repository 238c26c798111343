"""Every bad input a demanding user tried gives one clear line and exit code 2, no traceback, nothing written.

The command lines run in-process (their `main` under `guarded`, as `python -m` runs them) to keep the table fast;
tests/test_cli.py runs them as real processes.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from lib.api import PosePrior
from lib.errors import ToolkitError
from lib.safe_pickle import save_pickle
from run import benchmark, denoise_fc_adv_3d, distill, eval_fc_mp_adv_3d, lift, prepare_data, train_fc_adv_3d, visualize
from tests.helpers import POSE, cmu_bvh_text, overrides, run_main, tiny_config

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
    (["--config.training.n_iters=-1"], "training.n_iters = -1 must be >= 0"),
    (["--config.optim.lr=-1"], "optim.lr = -1.0 must be > 0"),
    (["--config.optim.lr=1e400"], "optim.lr = inf must be finite"),
    (["--config.monitor.max_poses=0"], "monitor.max_poses = 0 must be >= 1"),
    (["--config.data.scale=0"], "data.scale = 0.0 must be > 0"),
    (["--config.sampling.eps=2"], "sampling.eps = 2.0 must be < 1"),
    (["--config.model.hidden_dim=100"], "must be divisible by model.num_groups"),
    (["--config.monitor.method=magic"], "monitor.method = 'magic' must be one of em, drift"),
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
    (["--gpus", "-1", "est"], "--gpus must be between 0 and"),
    (["--traj-frames", "0", "--save", "trajs", "est"], "--traj-frames must be a whole number >= 1"),
    (["--traj-frames", "-1", "est"], "--traj-frames must be a whole number >= 1"),
    (["--config.sampling.eps=2", "est"], "sampling.eps = 2.0 must be < 1"),
    (["--config.model.hidden_dim=512", "est"], "model.hidden_dim=512 cannot take effect"),
    (["--config.training.batch_size=5", "est"], "training.batch_size=5 cannot take effect"),
    (["--config.data.det_file=nothere.pkl", "est"], "nothere.pkl (data.det_file) not found"),
    (["--config.data.scale=10", "est"], "data.scale=10.0 cannot take effect: the network and its training come"),
    (["--gt", "--config.data.use_gt_2d=false", "est"], "--gt and --config.data.use_gt_2d=False disagree"),
    (["--config.sampling.method=magic", "est"], "config field sampling.method = 'magic' must be one of em, drift"),
    (["--fast", "--steps", "5", "est"], "--fast picks the sampler itself"),
    (["--pflow", "--sampler", "em", "est"], "--pflow picks the paper's deterministic sampler"),
    (["--schedule", "paper", "--sampler", "drift_2m", "est"], "needs a proper grid"),
    (["--config.model.widht=3", "est"], "unknown config field"),
    (["comp2d", "--randj", "9"], "--randj must be between 1 and 8"),
    (["comp3d", "--jlist", "1,17"], "out of range"),
    (["comp3d", "--jlist", "left_tail"], "unknown joint or part"),
    (["comp3d"], "give exactly one of --randj"),
    (["gen", "--num", "0"], "--num must be between 1 and 10,000,000"),
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
    (["--std", "nan"], "--std must be between 0 and 1000"), (["--std", "-1"], "--std must be between 0 and 1000"),
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
    (lambda p: p.estimate(np.zeros((2, 17, 2)), method="magic"), "unknown sampler method 'magic'"),
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


# ---------------------------------------------------------------------------------------------------------------
# The probe suite, by class (issue: nothing lost, nothing silent). Every probe runs an entry point in-process as
# `python -m` would and asserts the outcome: 'ok' (exit 0) or 'error' (exit 2, one line 'error: ...', no traceback);
# no probe may end any other way. Values that are valid for one flag (a seed of 0) and not for another (0 steps)
# are listed with their outcome.

ENTRIES = {"train": train_fc_adv_3d, "eval": eval_fc_mp_adv_3d, "den": denoise_fc_adv_3d, "lift": lift,
           "visualize": visualize, "prepare_data": prepare_data, "benchmark": benchmark, "distill": distill}


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under folder (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _probe(entry: str, argv: list[str], expect: str, monkeypatch, capsys, message: str | tuple[str, ...] = "",
           folder: Path | None = None) -> str:
    """Run a probe; an error must be one line naming `message` (any one of a tuple) and, with `folder`, leave every
    file in it as it was, byte for byte (and add none)."""
    before = _files(folder) if folder is not None else None
    code, out, err = run_main(ENTRIES[entry], argv, monkeypatch, capsys)
    assert "Traceback" not in err, err
    if expect == "ok":
        assert code == 0, (argv, err[-2000:])
    else:
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (argv, code, err[-2000:])
        names = (message,) if isinstance(message, str) else message
        assert any(n in err for n in names), (argv, names, err)
        if before is not None:
            assert _files(folder) == before, argv
    return out + err


@pytest.fixture(scope="module")
def files(trained_run, data_root, tmp_path_factory):
    """Valid inputs of every kind, to truncate and to point bad arguments beside."""
    root = tmp_path_factory.mktemp("probe_files")
    out = {"pth": trained_run / "checkpoint.pth", "config": Path("configs/subvp/synthetic_small.py").resolve(),
           "pkl": data_root / "synthetic_test.pkl", "det": data_root / "synthetic_dt.pkl"}
    kps = np.stack([POSE[:, [0, 2]] * [0.25, -0.25] + [600.0, 700.0]] * 3)  # [3, 17, 2] px
    coco = [{"image_id": t, "category_id": 1, "score": 0.9, "keypoints":
             np.concatenate([kps[t], np.ones((17, 1))], -1).ravel().tolist()} for t in range(3)]
    (root / "coco.json").write_text(json.dumps(coco))
    (root / "op.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [10.0] * 75}]}))
    np.save(root / "kps.npy", kps)
    np.savez(root / "results.npz", pred3d=np.zeros((1, 2, 1, 17, 3)), gt3d=np.zeros((1, 2, 1, 17, 3)))
    (root / "table.json").write_text(json.dumps(_det_table()))
    (root / "131_01.bvh").write_text(cmu_bvh_text())
    np.savez(root / "pack.npz", poses_3d=np.zeros((4, 17, 3)), clip=np.zeros(4, int),
             clip_names=np.array(["test/a/a_1.txt"]), split=np.array(["test"]), action=np.array(["a"]))
    out |= {k: root / f for k, f in (("coco", "coco.json"), ("openpose", "op.json"), ("npy", "kps.npy"),
                                     ("npz", "results.npz"), ("table", "table.json"), ("bvh", "131_01.bvh"),
                                     ("pack", "pack.npz"))}
    return out


def _det_table() -> dict:
    joint = {"bias_px": [0, 0], "std_px": [5, 5], "error_px_quantiles": {"50": 6, "90": 11, "99": 15}}
    return {"pose_size_px_median": 300, "joints": [dict(joint, name=str(j)) for j in range(17)]}


BAD_FILES = ("missing", "zero-byte", "empty", "truncated", "wrong type", "non-UTF-8")
EMPTY = {"pth": lambda p: torch.save({}, p), "config": lambda p: p.write_text("# nothing here\n"),
         "pkl": lambda p: save_pickle([], p), "det": lambda p: save_pickle({}, p), "coco": lambda p: p.write_text("[]"),
         "openpose": lambda p: p.write_text("{}"), "npy": lambda p: np.save(p, np.zeros((0, 17, 2))),
         "npz": lambda p: np.savez(p), "table": lambda p: p.write_text("{}"),
         "bvh": lambda p: p.write_text("HIERARCHY\nMOTION\nFrames: 0\nFrame Time: 0.01\n"),
         "pack": lambda p: np.savez(p)}
SUFFIX = {"pth": ".pth", "config": ".py", "pkl": ".pkl", "det": ".pkl", "coco": ".json", "openpose": ".json",
          "npy": ".npy", "npz": ".npz", "table": ".json", "bvh": ".bvh", "pack": ".npz"}


def _bad_file(kind: str, what: str, valid: Path, folder: Path) -> Path:
    """A bad file of `kind` ('missing', 'zero-byte', ...) standing in for a valid one of type `what`."""
    path = folder / f"bad{SUFFIX[what]}"
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "empty":
        EMPTY[what](path)
    elif kind == "truncated":
        data = valid.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif kind == "wrong type":
        path.mkdir() if what in ("pth", "config", "pkl", "det", "npz", "pack") else np.save(path.with_suffix(
            ".npy"), np.zeros(3))
        if what not in ("pth", "config", "pkl", "det", "npz", "pack"):
            path.with_suffix(".npy").rename(path)
    elif kind == "non-UTF-8":
        path.write_bytes(b"\xff\xfe\xfa" + bytes(range(128, 256)) * 4)
    return path


def _ckpt_dir(bad: Path, folder: Path, name: str = "best_model.pth") -> Path:
    run = folder / "run"
    run.mkdir(exist_ok=True)
    if bad.exists():
        bad.rename(run / name)
    return run


# (entry, the file's type, argv with {f} for the bad file and {run} / {out} / valid files, or a callable)
FILE_ARGS = [
    ("train", "config", ["--config", "{f}", "--name", "x", "--ckpt-root", "{out}"]),
    ("eval", "pth", "ckpt"), ("den", "pth", "ckpt"), ("lift", "pth", "ckpt"), ("distill", "pth", "ckpt"),
    ("train", "pth", "restore"),
    ("eval", "config", ["--config", "{f}", "--ckpt-dir", "{run}", "--out", "{out}", "est"]),
    ("eval", "pkl", "data"), ("eval", "det", "det"),
    ("lift", "coco", ["{f}", "--format", "coco", "--ckpt-dir", "{run}", "--image-size", "1000", "1000", "--out",
                      "{out}", "--draw", "none"]),
    ("lift", "openpose", ["{f}", "--format", "openpose", "--ckpt-dir", "{run}", "--image-size", "1000", "1000",
                          "--out", "{out}", "--draw", "none"]),
    ("lift", "npy", ["{f}", "--format", "h36m", "--ckpt-dir", "{run}", "--image-size", "1000", "1000", "--out",
                     "{out}", "--draw", "none"]),
    ("visualize", "npz", ["--input", "{f}", "--out", "{out}/x.png"]),
    ("prepare_data", "pkl", ["detector-errors", "--split", "test", "--gt", "{f}", "--det", "{det}", "--out",
                             "{out}/t.json"]),
    ("prepare_data", "det", ["detector-errors", "--split", "test", "--gt", "{pkl}", "--det", "{f}", "--out",
                             "{out}/t.json"]),
    ("prepare_data", "table", ["detections", "--table", "{f}", "--train", "{pkl}", "--test", "{pkl}", "--out",
                               "{out}/d.pkl"]),
    ("prepare_data", "bvh", ["cmu", "--bvh", "{f}", "--pack", "{pack}", "--out", "{out}"]),
    ("prepare_data", "pack", ["cmu", "--pack", "{f}", "--out", "{out}"]),
    ("prepare_data", "npz", ["videopose3d", "--npz", "{f}", "--out", "{out}"]),
]


@pytest.mark.parametrize("kind", BAD_FILES)
@pytest.mark.parametrize("entry,what,argv", FILE_ARGS, ids=[f"{e}-{w}-{i}" for i, (e, w, _) in enumerate(FILE_ARGS)])
def test_probe_every_file_argument(entry, what, argv, kind, files, trained_run, data_root, tmp_path, monkeypatch,
                                   capsys):
    bad = tmp_path / "missing.bin" if kind == "missing" else _bad_file(kind, what, files[what], tmp_path)
    out = tmp_path / "out"
    if argv == "ckpt":
        run = _ckpt_dir(bad, tmp_path, "checkpoint.pth")
        argv = {"eval": ["--ckpt-dir", str(run), "--out", str(out), "est"],
                "den": ["--ckpt-dir", str(run), "--out", str(out), "den"],
                "lift": [str(files["coco"]), "--format", "coco", "--ckpt-dir", str(run), "--image-size", "1000",
                         "1000", "--out", str(out)],
                "distill": ["--ckpt-dir", str(run), "--ckpt-root", str(out)]}[entry]
        message = "checkpoint"
    elif argv == "restore":
        run = _ckpt_dir(bad, tmp_path, "checkpoint.pth")
        argv = [*SMALL_TRAIN[:2], "--name", "r", "--ckpt-root", str(tmp_path), "--restore-dir", str(run),
                *overrides(tiny_config(data_root))]
        message = "checkpoint"
    elif argv in ("data", "det"):
        folder = tmp_path / "data"
        folder.mkdir()
        for f in ("synthetic_train.pkl", "synthetic_test.pkl", "synthetic_dt.pkl"):
            (folder / f).symlink_to(data_root / f)
        target = folder / ("synthetic_test.pkl" if argv == "data" else "synthetic_dt.pkl")
        target.unlink()
        if bad.exists():
            bad.rename(target)
        argv = ["--ckpt-dir", str(trained_run), "--out", str(out), f"--config.data.root={folder}", "est"]
        message = str(target.name)
    else:
        argv = [a.format(f=bad, run=trained_run, out=out, det=files["det"], pkl=files["pkl"], pack=files["pack"])
                for a in argv]
        message = bad.name
    _probe(entry, argv, "error", monkeypatch, capsys, message, folder=tmp_path)
    assert not (out / "results.npz").exists() and not (out / "poses.npz").exists()


# (entry, argv before the value, argv after it, {value kind: expected outcome})
BAD, OK = "error", "ok"
NUMERIC = {"zero": "0", "negative": "-1", "huge": "1000000000000", "non-number": "x"}
NUMERIC_FLAGS = [
    ("eval", ["--hypo"], ["est"], {"zero": BAD, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("eval", ["--batch"], ["est"], {"zero": BAD, "negative": BAD, "huge": OK, "non-number": BAD}),
    ("eval", ["--sample"], ["est"], {"zero": BAD, "negative": BAD, "huge": OK, "non-number": BAD}),
    ("eval", ["--seed"], ["est"], {"zero": OK, "negative": BAD, "huge": OK, "non-number": BAD}),
    ("eval", ["--steps"], ["est"], {"zero": BAD, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("eval", ["--eta"], ["est"], {"zero": OK, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("eval", ["--gpus"], ["est"], {"zero": OK, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("eval", ["--save", "trajs", "--traj-frames"], ["est"], {"zero": BAD, "negative": BAD, "huge": OK,
                                                           "non-number": BAD}),
    ("eval", ["--min-conf"], ["est"], {"zero": OK, "negative": BAD, "huge": OK, "non-number": BAD}),
    ("eval", ["--config.eval.refine_steps"], ["--hypo", "2", "est"], {"zero": BAD, "negative": BAD, "huge": BAD,
                                                                    "non-number": BAD}),
    ("eval", ["--config.sampling.resample"], ["comp3d", "--randj", "1"], {"zero": OK, "negative": BAD, "huge": BAD,
                                                                         "non-number": BAD}),
    ("eval", ["--config.sampling.guidance"], ["comp3d", "--randj", "1"], {"zero": OK, "negative": BAD, "huge": OK,
                                                                         "non-number": BAD}),
    ("eval", ["comp2d", "--randj"], [], {"zero": BAD, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("eval", ["gen", "--num"], [], {"zero": BAD, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("den", ["den", "--std"], [], {"zero": OK, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("den", ["den", "--t"], [], {"zero": BAD, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("lift", ["--hypo"], [], {"zero": BAD, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("lift", ["--min-conf"], [], {"zero": OK, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("lift", ["--seed"], [], {"zero": OK, "negative": BAD, "huge": OK, "non-number": BAD}),
    ("lift", ["--image-size", "1000"], [], {"zero": BAD, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("lift", ["--camera", "1000", "1000", "500"], [], {"zero": OK, "negative": OK, "huge": BAD, "non-number": BAD}),
    ("lift", ["--camera"], ["1000", "500", "500"], {"zero": BAD, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("visualize", ["--num-human"], [], {"zero": BAD, "negative": BAD, "huge": OK, "non-number": BAD}),
    ("visualize", ["--num-hypo"], [], {"zero": BAD, "negative": BAD, "huge": OK, "non-number": BAD}),
    ("visualize", ["--num-perline"], [], {"zero": BAD, "negative": BAD, "huge": OK, "non-number": BAD}),
    ("visualize", ["--fps"], [], {"zero": BAD, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("prepare_data", ["synthetic", "--train-frames"], [], {"zero": BAD, "negative": BAD, "huge": BAD,
                                                           "non-number": BAD}),
    ("prepare_data", ["synthetic", "--test-frames"], [], {"zero": BAD, "negative": BAD, "huge": BAD,
                                                          "non-number": BAD}),
    ("prepare_data", ["synthetic", "--train-frames", "1", "--test-frames", "1", "--seed"], [],
     {"zero": OK, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("prepare_data", ["cmu", "--bvh", "{bvh}", "--pack", "{pack}", "--bvh-step"], [],
     {"zero": BAD, "negative": BAD, "huge": OK, "non-number": BAD}),
    ("prepare_data", ["cmu", "--bvh", "{bvh}", "--pack", "{pack}", "--train-every"], [],
     {"zero": BAD, "negative": BAD, "huge": OK, "non-number": BAD}),
    ("prepare_data", ["detections", "--table", "{table}", "--train", "{pkl}", "--test", "{pkl}", "--format", "h36m",
                      "--tail"], [], {"zero": BAD, "negative": BAD, "huge": OK, "non-number": BAD}),
    ("benchmark", ["--poses"], [], {"zero": BAD, "negative": BAD, "huge": BAD,
                                                              "non-number": BAD}),
    ("benchmark", ["--poses-multi"], [], {"zero": BAD, "negative": BAD, "huge": BAD,
                                                                    "non-number": BAD}),
    ("benchmark", ["--steps"], [], {"zero": BAD, "negative": BAD, "huge": BAD,
                                                              "non-number": BAD}),
    ("benchmark", ["--train-steps"], [], {"zero": BAD, "negative": BAD, "huge": BAD,
                                                                    "non-number": BAD}),
    ("benchmark", ["--batch"], [], {"zero": BAD, "negative": BAD, "huge": BAD,
                                                              "non-number": BAD}),
    ("distill", ["--steps"], [], {"zero": BAD, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("distill", ["--minutes"], [], {"zero": BAD, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("train", ["--sample"], [], {"zero": BAD, "negative": BAD, "huge": BAD, "non-number": BAD}),
    ("train", ["--config.training.n_iters"], [], {"zero": BAD, "negative": BAD, "huge": OK, "non-number": BAD}),
]


# The config field a short flag sets, where the error names the field (written here from the README's flag lists)
ALIASES = {("eval", "--hypo"): ("eval.hypo", "hypotheses"), ("eval", "--batch"): ("eval.batch_size",),
           ("eval", "--sample"): ("data.test_sample",), ("eval", "--seed"): ("seed",),
           ("eval", "--steps"): ("sampling.steps",), ("eval", "--eta"): ("sampling.eta",),
           ("eval", "--min-conf"): ("eval.min_conf",), ("lift", "--hypo"): ("lift.hypotheses", "hypotheses"),
           ("lift", "--min-conf"): ("lift.min_conf",), ("lift", "--seed"): ("seed",),
           ("lift", "1000"): ("--image-size",), ("lift", "500"): ("--camera", "camera"),
           ("lift", "--camera"): ("camera",), ("train", "--sample"): ("data.train_sample",),
           ("den", "--std"): ("--std",), ("den", "--t"): ("--t",)}


def _base_argv(entry: str, files: dict, run: Path, data_root: Path, out: Path) -> list[str]:
    """What an entry needs around the probed flag, for a valid run on the tiny data."""
    return {"eval": ["--ckpt-dir", str(run), "--out", str(out), "--steps", "2"],
            "den": ["--ckpt-dir", str(run), "--out", str(out), "--steps", "2"],
            "lift": [str(files["coco"]), "--format", "coco", "--ckpt-dir", str(run), "--image-size", "1000", "1000",
                     "--out", str(out), "--draw", "none", "--hypo", "1"],
            "visualize": ["--input", str(files["npz"]), "--out", str(out / "x.png")],
            "prepare_data": ["--out", str(out)],
            "benchmark": ["--sections", "sampling", "--batch", "8", "--steps", "2", "--json", str(out / "b.json")],
            "distill": ["--ckpt-dir", str(run), "--ckpt-root", str(out), "--config.distill.first_steps=4"],
            "train": [*SMALL_TRAIN[:2], "--name", "n", "--ckpt-root", str(out), *overrides(tiny_config(data_root))],
            }[entry]


@pytest.mark.parametrize("kind", NUMERIC)
@pytest.mark.parametrize("entry,before,after,expect", NUMERIC_FLAGS,
                         ids=[f"{e}{''.join(b[-1:])}" for e, b, _, _ in NUMERIC_FLAGS])
def test_probe_every_numeric_flag(entry, before, after, expect, kind, files, trained_run, data_root, tmp_path,
                                  monkeypatch, capsys):
    out = tmp_path / "out"
    before = [b.format(**{k: str(v) for k, v in files.items()}) for b in before]
    value = NUMERIC[kind]
    argv = _base_argv(entry, files, trained_run, data_root, out)
    if entry == "prepare_data":  # the sub-command comes first
        argv = [*before, value, *after, *argv]
    elif entry == "train" and before[0] == "--config.training.n_iters":
        argv = [*argv, f"{before[0]}={value}", "--config.training.eval_every=0"]
        if kind == "huge":
            argv += ["--config.training.max_minutes=0.01"]
    elif before[0].startswith("--config."):
        argv = [*argv, f"{before[0]}={value}", *after]
    else:
        sub = [i for i, b in enumerate(before) if b in ("est", "comp2d", "gen", "den")]
        argv = [*argv, *before, value, *after] if not sub else [*argv, *before, value, *after]
    flag = before[-1] if not before[-1].startswith("--config.") else before[-1].removeprefix("--config.")
    names = (flag, *ALIASES.get((entry, flag), ()))
    text = _probe(entry, argv, expect[kind], monkeypatch, capsys, names, folder=tmp_path)
    if expect[kind] == "error":
        assert not (out / "results.npz").exists()
    elif entry == "eval" and kind == "huge" and "--sample" in before:
        assert "N = 1 pose" in text  # a count smaller than asked is said


# output paths x {an existing file, a read-only folder}
OUTPUTS = [
    ("eval", ["--ckpt-dir", "{run}", "--out", "{p}", "--steps", "2", "est"], "folder"),
    ("eval", ["--ckpt-dir", "{run}", "--out", "{tmp}/o", "--json", "{p}", "--steps", "2", "est"], "file"),
    ("den", ["--ckpt-dir", "{run}", "--out", "{p}", "--steps", "2", "den"], "folder"),
    ("den", ["--ckpt-dir", "{run}", "--out", "{tmp}/o", "--json", "{p}", "--steps", "2", "den"], "file"),
    ("lift", ["{coco}", "--format", "coco", "--ckpt-dir", "{run}", "--image-size", "1000", "1000", "--hypo", "1",
              "--out", "{p}"], "folder"),
    ("visualize", ["--input", "{npz}", "--out", "{p}"], "png"),
    ("prepare_data", ["synthetic", "--train-frames", "1", "--test-frames", "1", "--out", "{p}"], "folder"),
    ("prepare_data", ["example", "--out", "{p}"], "folder"),
    ("prepare_data", ["detector-errors", "--split", "test", "--gt", "{pkl}", "--det", "{det}", "--out", "{p}"],
     "data file"),
    ("prepare_data", ["detections", "--table", "{table}", "--train", "{pkl}", "--test", "{pkl}", "--format", "h36m",
                      "--out", "{p}"], "data file"),
    ("prepare_data", ["cmu", "--bvh", "{bvh}", "--pack", "{pack}", "--out", "{p}"], "folder"),
    ("train", [*SMALL_TRAIN[:2], "--name", "n", "--ckpt-root", "{p}"], "folder"),
    ("distill", ["--ckpt-dir", "{run}", "--ckpt-root", "{p}"], "folder"),
    ("benchmark", ["--sections", "sampling", "--batch", "8", "--steps", "2", "--json", "{p}"], "file"),
    ("benchmark", ["--sections", "sampling", "--batch", "8", "--steps", "2", "--json", "{tmp}/b.json", "--markdown",
                   "{p}"], "file"),
]


@pytest.fixture()
def read_only(tmp_path):
    """A folder nobody may write into, root included (chattr +i); skipped where the file system cannot do it."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("this file system cannot make a folder read-only for this user (chattr +i)")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


@pytest.mark.parametrize("case", ["existing file", "read-only folder"])
@pytest.mark.parametrize("entry,argv,kind", OUTPUTS, ids=[f"{e}-{i}" for i, (e, _, _) in enumerate(OUTPUTS)])
def test_probe_every_output_path(entry, argv, kind, case, files, trained_run, data_root, tmp_path, monkeypatch,
                                 capsys, request):
    if case == "existing file":  # the user's own file where an output goes: never replaced, whatever it is named
        path = tmp_path / {"file": "named.json", "png": "named.png"}.get(kind, "named")
        path.write_text("the user's own file\n")
    else:
        path = request.getfixturevalue("read_only") / ("inside.png" if kind == "png" else "inside")
    fields = {k: str(v) for k, v in files.items()} | {"run": str(trained_run), "p": str(path), "tmp": str(tmp_path)}
    argv = [a.format(**fields) for a in argv]
    if entry == "train":
        argv += overrides(tiny_config(data_root))
    _probe(entry, argv, "error", monkeypatch, capsys, (str(path), path.name, str(path.parent)), folder=tmp_path)


@pytest.fixture(scope="module")
def probe_prior(trained_run):
    return PosePrior.from_checkpoint(trained_run, best=False)


Z2, Z3 = np.zeros((3, 17, 2)), np.zeros((3, 17, 3))
NAN2 = np.full((3, 17, 2), np.nan)
API_PROBES = {  # (call, what its one-line error must name)
    "wrong type": [(lambda p: p.estimate("abc"), "keypoints"), (lambda p: p.complete_2d(Z2, missing="x"), "missing"),
                   (lambda p: p.complete_3d(None, [1]), "pose"), (lambda p: p.denoise({"a": 1}), "pose"),
                   (lambda p: p.score(Z3, t="x"), "t must be"), (lambda p: p.lift(12345, format="coco"), "keypoints"),
                   (lambda p: p.generate("5"), "n must be"), (lambda p: PosePrior.from_checkpoint(123), "path"),
                   (lambda p: p.estimate(Z2, reduce=3), "reduce")],
    "wrong shape": [(lambda p: p.estimate(np.zeros((2, 16, 2))), "keypoints"), (lambda p: p.complete_2d(Z3, [1]),
                                                                              "keypoints"),
                    (lambda p: p.complete_3d(Z2, [1]), "pose"), (lambda p: p.denoise(np.zeros(17)), "pose"),
                    (lambda p: p.score(Z3, 0.5, condition=np.zeros((2, 17, 3))), "condition"),
                    (lambda p: p.lift(np.zeros((3, 5, 2)), "coco"), "keypoints"),
                    (lambda p: p.complete_3d(Z3, np.ones((2, 17), bool)), "missing"),
                    (lambda p: p.estimate(Z2, confidence=np.ones((3, 5))), "confidence")],
    "N = 0": [(lambda p: p.lift(np.zeros((0, 17, 2)), "h36m"), "keypoints")],
    "NaN": [(lambda p: p.estimate(NAN2), "keypoints"), (lambda p: p.complete_2d(NAN2, [1]), "keypoints"),
            (lambda p: p.complete_3d(Z3 * np.nan, [1]), "pose"), (lambda p: p.denoise(Z3 * np.nan), "pose"),
            (lambda p: p.score(Z3 * np.nan, 0.5), "pose"),
            (lambda p: p.lift(NAN2, "h36m", image_size=(1000, 1000)), "NaN or inf"),
            (lambda p: p.estimate(Z2, confidence=NAN2[..., 0]), "confidence")],
    "device": [(lambda p: PosePrior(p.model, p.config, device="cuda:7"), "cuda:7"),
               (lambda p: PosePrior(p.model, p.config, device="tpu"), "tpu"),
               (lambda p: PosePrior(p.model, p.config, device=12), "device 12")],
}
API_VALID = {  # (call, the shape of what it returns): empty inputs give empty outputs of the right shape
    "N = 0": [(lambda p: p.estimate(np.zeros((0, 17, 2))), (0, 1, 17, 3)),
              (lambda p: p.complete_2d(np.zeros((0, 17, 2)), [1]), (0, 1, 17, 3)),
              (lambda p: p.complete_3d(np.zeros((0, 17, 3)), [1]), (0, 1, 17, 3)),
              (lambda p: p.denoise(np.zeros((0, 17, 3))), (0, 17, 3)),
              (lambda p: p.score(np.zeros((0, 17, 3)), 0.5), (0, 17, 3)), (lambda p: p.generate(0), (0, 17, 3))],
    "NaN": [(lambda p: p.complete_3d(np.where(np.arange(17)[:, None] == 1, np.nan, Z3), [1], steps=2), (3, 1, 17, 3))],
}


@pytest.mark.parametrize("kind,k", [(kind, k) for kind, calls in API_PROBES.items() for k in range(len(calls))])
def test_probe_the_api_refuses(kind, k, probe_prior):
    call, name = API_PROBES[kind][k]
    with pytest.raises(ToolkitError) as e:
        call(probe_prior)
    assert "\n" not in str(e.value) and name in str(e.value), str(e.value)


@pytest.mark.parametrize("kind,k", [(kind, k) for kind, calls in API_VALID.items() for k in range(len(calls))])
def test_probe_the_api_accepts(kind, k, probe_prior):
    call, shape = API_VALID[kind][k]
    out = np.asarray(call(probe_prior))
    assert out.shape == shape and np.isfinite(out).all()
    if kind == "NaN":  # the seen joints are kept exactly, the NaN one is filled in
        assert np.array_equal(out[:, 0, [0, 2]], Z3[:, [0, 2]]) and np.isfinite(out[:, 0, 1]).all()


BASE_TAIL = {"eval": ["est"], "den": ["den"], "distill": ["--steps", "4", "--minutes", "0.05"],
             "prepare_data": ["synthetic", "--train-frames", "1", "--test-frames", "1"]}


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_every_probe_starts_from_a_command_that_succeeds(entry, files, trained_run, data_root, tmp_path, monkeypatch,
                                                         capsys):
    """The numeric probes change one value of these commands: each succeeds as it is, so a probe's error is the
    value's."""
    argv = _base_argv(entry, files, trained_run, data_root, tmp_path / "out")
    tail = BASE_TAIL.get(entry, [])
    argv = [*tail, *argv] if entry == "prepare_data" else [*argv, *tail]
    _probe(entry, argv, "ok", monkeypatch, capsys)
