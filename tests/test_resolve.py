"""One sampler resolver: the command lines and the API resolve equal SamplerConfigs in every mode, recorded where
the sampler runs (lib/sharded.sample_task calls lib/sampling.sample); the label and the precision come with it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lib.sharded
from lib.api import PosePrior
from lib.checkpoint import load_checkpoint, save_checkpoint
from lib.config_utils import config_from_json, config_to_json
from lib.resolve import bf16_supported, resolve_sampler
from run import denoise_fc_adv_3d, eval_fc_mp_adv_3d
from run import lift as lift_cli
from tests.helpers import POSE, run_main


@pytest.fixture()
def recorded(monkeypatch):
    """Every SamplerConfig that reaches the sampler, in order."""
    seen = []
    real = lib.sharded.sample

    def sample(score_fn, sde, task, cfg, *args, **kwargs):
        seen.append(cfg)
        return real(score_fn, sde, task, cfg, *args, **kwargs)

    monkeypatch.setattr(lib.sharded, "sample", sample)
    return seen


@pytest.fixture(scope="module")
def with_student(trained_run, tmp_path_factory):
    """The tiny run with a 'student' of 2 steps that passed its gate (the teacher's own weights, stored as an earlier
    run's bare noise network): --fast then picks it."""
    state = load_checkpoint(trained_run / "checkpoint.pth")
    config = config_from_json(state["config"])
    config.distill.students, config.distill.fast_steps = "2", 2
    config.distill.predict, config.distill.fit_share = "eps", 0.0
    folder = tmp_path_factory.mktemp("with_student")
    save_checkpoint(state | {"config": config_to_json(config), "students": {"2": state["model_state_dict"]}},
                    folder / "checkpoint.pth")
    return folder


def _cli(module, argv, monkeypatch, capsys, recorded, tmp_path):
    code, _, err = run_main(module, ["--out", str(tmp_path), "--sample", "20"] + argv, monkeypatch, capsys)
    assert code == 0, err
    return recorded[0]


# (command-line arguments before the task, the task and its options, the API call with the same request)
EST_MODES = {
    "paper est": ([], lambda p, x: p.estimate(x)),
    "--pflow": (["--pflow"], lambda p, x: p.estimate(x, pflow=True)),
    "--fast": (["--fast"], lambda p, x: p.estimate(x, fast=True)),
    "--fast --pflow": (["--fast", "--pflow"], lambda p, x: p.estimate(x, fast=True, pflow=True)),
    "--sampler dpm2m --steps 7": (["--sampler", "dpm2m", "--steps", "7"],
                                  lambda p, x: p.estimate(x, method="dpm2m", steps=7)),
    "distilled": (["--sampler", "distilled", "--steps", "2"], lambda p, x: p.estimate(x, method="distilled", steps=2)),
}


@pytest.mark.parametrize("mode", list(EST_MODES))
def test_est_command_line_and_api_resolve_the_same_sampler(mode, with_student, trained_run, tmp_path, monkeypatch,
                                                           capsys, recorded):
    flags, call = EST_MODES[mode]
    cli = _cli(eval_fc_mp_adv_3d, ["--ckpt-dir", str(with_student)] + flags + ["est"], monkeypatch, capsys,
               recorded, tmp_path)
    recorded.clear()
    prior = PosePrior.from_checkpoint(with_student, best=False)
    call(prior, np.zeros((3, 17, 2)))
    assert recorded[0] == cli
    # (the tiny run samples 20 steps, not the paper's N: its em and drift are not labelled as the paper's)
    expected = {"paper est": ("em", "em"), "--pflow": ("drift", "drift"), "--fast": ("ddim", "fast"),
                "--fast --pflow": ("distilled", "fast"), "--sampler dpm2m --steps 7": ("dpm2m", "dpm2m"),
                "distilled": ("distilled", "distilled 2")}[mode]
    assert (cli.method, cli.label) == expected


def test_comp3d_imputing_and_den_resolve_the_same_sampler(trained_run, tmp_path, monkeypatch, capsys, recorded):
    cli = _cli(eval_fc_mp_adv_3d, ["--ckpt-dir", str(trained_run), "--config.eval.completion=impute", "--pflow",
                                   "comp3d", "--jlist", "right_leg"], monkeypatch, capsys, recorded, tmp_path)
    recorded.clear()
    prior = PosePrior.from_checkpoint(trained_run, best=False)
    prior.complete_3d(np.zeros((2, 17, 3)), [1, 2, 3], pflow=True, completion="impute")
    assert recorded[0] == cli and cli.method == "drift"
    recorded.clear()
    cli = _cli(denoise_fc_adv_3d, ["--ckpt-dir", str(trained_run), "--fast", "den", "--t", "0.05"], monkeypatch,
               capsys, recorded, tmp_path)
    recorded.clear()
    prior.denoise(np.zeros((2, 17, 3)), t=0.05, fast=True)
    assert recorded[0] == cli and cli.label == "fast" and cli.method == prior.config.fast.deterministic


@pytest.mark.parametrize("hypotheses", [1, 3])
def test_lift_command_line_and_api_resolve_the_same_sampler(hypotheses, trained_run, tmp_path, monkeypatch, capsys,
                                                            recorded):
    kps = POSE[:, [0, 2]] * np.array([0.25, -0.25]) + np.array([600.0, 700.0])  # a standing person in pixels
    np.save(tmp_path / "kps.npy", np.repeat(kps[None], 2, 0))
    code, _, err = run_main(lift_cli, [str(tmp_path / "kps.npy"), "--format", "h36m", "--ckpt-dir", str(trained_run),
                                       "--image-size", "1280", "720", "--hypo", str(hypotheses), "--draw", "none",
                                       "--out", str(tmp_path / "out")], monkeypatch, capsys)
    assert code == 0, err
    cli = recorded[0]
    recorded.clear()
    prior = PosePrior.from_checkpoint(trained_run, best=False)
    prior.config.lift.hypotheses = hypotheses
    prior.lift(tmp_path / "kps.npy", "h36m", image_size=(1280, 720), fast=False)
    assert recorded[0] == cli
    assert cli.method == ("drift" if hypotheses == 1 else "em")  # one pose: the paper's --pflow


def test_resolver_rules(trained_run):
    config = PosePrior.from_checkpoint(trained_run, best=False).config
    given = resolve_sampler(config, given={"method": "ddim", "steps": 9})
    assert (given.method, given.steps, given.eta, given.schedule, given.label) == ("ddim", 9, 0.0, "auto", "ddim")
    assert resolve_sampler(config, deterministic=True).method == "drift"
    assert config.sampling.guidance > 0 and given.guidance == config.sampling.guidance  # the completion extras kept ...
    assert resolve_sampler(config, given={"method": "ddim", "guidance": 0.0}).guidance == 0.0  # ... unless given
    config.sampling.steps = config.model.num_scales  # the paper's N on its grid: labelled as the paper's
    assert [resolve_sampler(config, pflow=p).label for p in (False, True)] == ["paper", "paper"]
    assert resolve_sampler(config, given={"steps": 100}).label == "em"
    assert resolve_sampler(config, deterministic=True, given={"method": "ddim"}).method == "ddim"
    config.sampling.bf16 = True  # asked for: used only where bf16 is native
    assert resolve_sampler(config, "cpu").bf16 == bf16_supported("cpu")
    assert resolve_sampler(config, torch.device("cpu"), fast=True).bf16 == bf16_supported("cpu")
    for bad, message in ((dict(fast=True, given={"steps": 5}), "--fast picks the sampler itself"),
                         (dict(pflow=True, given={"method": "em"}), "--pflow picks the paper's"),
                         (dict(given={"method": "magic"}), "unknown sampler method 'magic'")):
        with pytest.raises(ValueError, match=message):
            resolve_sampler(config, **bad)
