"""Distilled students: the step they learn is exact for a known data prediction, a tiny student trains, saves, loads
and samples through every task, --fast picks it, and bad requests are one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lib.api import PosePrior
from lib.checkpoint import load_checkpoint
from lib.distill import fast_student, step_coefficients, teacher_pairs
from lib.errors import ToolkitError
from lib.model import ScoreFn
from lib.sampling import SamplerConfig
from lib.sde import SubVPSDE
from run import distill as distill_cli
from run import eval_fc_mp_adv_3d
from tests.helpers import GaussianEps, run_main, run_module


def test_one_student_step_with_the_target_data_prediction_lands_where_the_teacher_does():
    """D* = (x'' - A x) / B, put back into x'' = A x + B D*, is the teacher's state two steps on, for every pair of
    a trajectory (here of an exact Gaussian score), with the coefficients of the student's grid."""
    sde = SubVPSDE()
    teacher = ScoreFn(GaussianEps(sde, torch.zeros(17, 3), 0.5), sde)
    cfg = SamplerConfig(method="drift_ddim", steps=8, schedule="logsnr")
    cond = torch.zeros(5, 17, 3)
    x, k, end = teacher_pairs(teacher, sde, cfg, cond, cond.clone(), torch.Generator().manual_seed(0))
    t, a, b = step_coefficients(sde, "logsnr", 4, 1e-3, torch.device("cpu"))
    assert x.shape == (20, 17, 3) and k.tolist() == [i for i in range(4) for _ in range(5)]
    target = (end - a[k][:, None, None] * x) / b[k][:, None, None]
    assert torch.allclose(a[k][:, None, None] * x + b[k][:, None, None] * target, end, atol=1e-5)
    # the Gaussian's true data prediction at the student's own start times is close to it (2 vs 1 steps)
    sig, alp = sde.sigma(t[k])[:, None, None], sde.alpha(t[k])[:, None, None]
    d_true = (x - sig * teacher.eps(x, t[k], cond.repeat(4, 1, 1), None)) / alp
    assert (target - d_true).abs().mean() < 0.5 * target.abs().mean()


def test_fast_takes_the_fewest_steps_within_the_tolerance_or_none():
    p1 = {8: 27.5, 4: 27.9, 2: 40.0, 1: 900.0}  # validation P1 of each student; the teacher's fast sampler 27.0
    assert fast_student(p1, 27.0, 0.03) == 8      # within 27.81 mm: only the student of 8 steps
    assert fast_student(p1, 27.0, 0.05) == 4      # within 28.35 mm: 8 and 4, the fewer steps win
    assert fast_student(p1, 27.0, 0.5) == 2
    assert fast_student(p1, 27.0, 0.01) == 0      # none within 27.27 mm: --fast keeps the teacher's sampler


@pytest.fixture(scope="module")
def distilled(trained_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("distilled")
    res = run_module("run.distill", "--ckpt-dir", str(trained_run), "--steps", "1", "--minutes", "0.15",
                     "--ckpt-root", str(root), "--name", "student", "--config.distill.first_steps=4",
                     "--config.distill.pool=128", "--config.distill.batch_size=64",
                     "--config.distill.fast_tolerance=1000")  # a tiny teacher: let --fast take the student
    assert res.returncode == 0, res.stderr[-3000:]
    assert "students of 4,2,1 steps" in res.stdout
    return root / "student"


def test_a_tiny_student_trains_saves_and_loads(distilled, trained_run):
    state = load_checkpoint(distilled / "best_model.pth")
    assert sorted(state["students"]) == ["1", "2", "4"] and "optimizer_state_dict" not in state
    assert json.loads(state["config"])["distill"]["students"] == "4,2,1"
    rounds = state["distill"]["rounds"]
    assert [r["steps"] for r in rounds] == [4, 2, 1] and all(r["updates"] > 0 for r in rounds)
    teacher = load_checkpoint(trained_run / "checkpoint.pth")
    for key, value in teacher["model_state_dict"].items():  # the teacher's own weights travel unchanged
        assert torch.equal(state["model_state_dict"][key], value)
    moved = [k for k, v in state["students"]["4"].items() if not torch.equal(v, teacher["model_state_dict"][k])]
    assert moved  # the student learnt something of its own


@pytest.mark.parametrize("task", [["est"], ["comp2d", "--randj", "2"], ["comp3d", "--jlist", "right_leg"], ["gen"]])
def test_every_task_samples_with_a_student(distilled, task, tmp_path, monkeypatch, capsys):
    code, out, err = run_main(eval_fc_mp_adv_3d, ["--ckpt-dir", str(distilled), "--best", "--sampler", "distilled",
                                                  "--steps", "2", "--out", str(tmp_path), *task], monkeypatch, capsys)
    assert code == 0, err
    # the completion tasks add the budget recipe's reconstruction guidance: one more evaluation per step
    nfe = 4 if task[0].startswith("comp") else 2
    assert "distilled, 2 steps" in out and f"{nfe} network evaluations per sample" in out
    assert np.isfinite(np.load(tmp_path / "results.npz")["pred3d"]).all()


def test_fast_picks_the_student_and_the_api_too(distilled, tmp_path, monkeypatch, capsys):
    code, out, err = run_main(eval_fc_mp_adv_3d, ["--ckpt-dir", str(distilled), "--best", "--pflow", "--fast",
                                                  "--out", str(tmp_path), "est"], monkeypatch, capsys)
    assert code == 0 and "fast: distilled, 1 steps" in out, (out, err)  # the fewest steps within the tolerance
    prior = PosePrior.from_checkpoint(distilled)
    prior.config.fast.bf16 = False  # (--fast adds bf16 where it is native: the same numbers only in fp32)
    kps = np.random.default_rng(0).normal(0, 0.2, (5, 17, 2))
    one = prior.estimate(kps, pflow=True, fast=True)
    assert one.shape == (5, 1, 17, 3) and np.isfinite(one).all()
    assert np.allclose(one, prior.estimate(kps, method="distilled", steps=1))
    den = prior.denoise(np.zeros((3, 17, 3)), method="distilled", steps=1)
    assert den.shape == (3, 17, 3)


def test_distillation_refuses_what_it_cannot_do(distilled, trained_run, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(distill_cli, ["--ckpt-dir", str(distilled), "--ckpt-root", str(tmp_path)], monkeypatch,
                            capsys)
    assert code == 2 and "already distilled" in err and err.count("\n") == 1
    code, _, err = run_main(distill_cli, ["--ckpt-dir", str(trained_run), "--steps", "3", "--ckpt-root",
                                          str(tmp_path)], monkeypatch, capsys)
    assert code == 2 and "--steps must divide distill.first_steps" in err
    code, _, err = run_main(eval_fc_mp_adv_3d, ["--ckpt-dir", str(trained_run), "--sampler", "distilled", "--steps",
                                                "4", "--out", str(tmp_path), "est"], monkeypatch, capsys)
    assert code == 2 and "carries no student for 4 steps" in err
    with pytest.raises(ToolkitError, match="no student for 8 steps"):
        PosePrior.from_checkpoint(distilled).estimate(np.zeros((1, 17, 2)), method="distilled", steps=8)
