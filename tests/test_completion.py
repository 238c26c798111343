"""Completion beyond imputation: RePaint resampling and reconstruction guidance on a Gaussian whose conditional
mean is known, lookups of training poses that recover a transformed pose exactly, warm starts, the completion
masking schedule, and the completion rows of the command line."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from lib.api import PosePrior
from lib.lookup import nearest_2d, nearest_3d
from lib.losses import mask_rates
from lib.model import ScoreFn
from lib.refine import warm_start
from lib.sampling import SamplerConfig, make_grid, sample
from lib.sde import SubVPSDE
from lib.tasks.observe import observe_3d
from tests.helpers import CorrelatedGaussianEps, run_module

RHO = 0.9


def _completion_error(cfg: SamplerConfig, n: int = 2000) -> tuple[float, int]:
    """Hide the second half of each correlated pair, observe the first: the exact conditional mean of a hidden
    coordinate is RHO times its partner. Mean squared distance of the completed means over 8 draws each to it."""
    sde = SubVPSDE()
    fn = ScoreFn(CorrelatedGaussianEps(sde, RHO), sde)
    y = torch.randn(n, 17, 3, generator=torch.Generator().manual_seed(0))
    missing = torch.zeros(n, 17, 3, dtype=torch.bool)
    missing.view(n, 51)[:, 25:50] = True
    task = observe_3d(y, missing.all(-1), "impute")
    task = dataclasses.replace(task, observed_mask=(~missing).float(), observed=y * (~missing))
    draws = torch.stack([sample(fn, sde, task, cfg, torch.Generator().manual_seed(s))[0] for s in range(8)])
    got = draws.mean(0).view(n, 51)[:, 25:50]
    want = RHO * y.view(n, 51)[:, :25]
    return float((got - want).square().mean()), fn.nfe


def test_repaint_resampling_and_guidance_harmonise_the_hidden_coordinates():
    """Plain imputation leaves the hidden coordinates short of their conditional mean (they only see the imputed
    ones for the few steps where the noise is low); resampling and guidance bring them closer. NFE grows by the
    resampled steps."""
    base = SamplerConfig(method="ddim", steps=20, eta=1.0)
    plain, nfe = _completion_error(base)
    repaint, nfe_r = _completion_error(dataclasses.replace(base, resample=4, resample_t=0.3))
    guided, _ = _completion_error(dataclasses.replace(base, guidance=0.5))
    resampled_steps = int((make_grid(SubVPSDE(), "logsnr", 20, 1.0, 1e-3).t >= 0.3).sum())
    assert nfe == 8 * 20 and nfe_r == 8 * (20 + 4 * resampled_steps)
    assert repaint < 0.7 * plain and guided < plain, (plain, repaint, guided)


def _bank(n: int = 50) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 17, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5])


def test_nearest_3d_recovers_a_scaled_and_shifted_training_pose_from_its_seen_joints():
    bank = _bank()
    target = 1.7 * bank[[7, 21]] + torch.tensor([0.3, -2.0, 0.1])
    seen = torch.ones(2, 17, dtype=torch.bool)
    seen[:, [2, 3, 13]] = False
    target_hidden = target.clone()
    target[~seen] = 99.0  # the hidden joints' values are never looked at
    assert torch.allclose(nearest_3d(bank, target, seen), target_hidden, atol=1e-5)


def test_nearest_2d_recovers_a_rotated_scaled_shifted_training_pose_and_scales_its_depth():
    bank = _bank()
    c, s = math.cos(0.4), math.sin(0.4)
    rot = torch.tensor([[c, -s], [s, c]])
    pose = bank[33]
    xy = 0.6 * pose[:, :2] @ rot.T + torch.tensor([5.0, -1.0])
    seen = torch.ones(1, 17, dtype=torch.bool)
    seen[0, [12, 16]] = False
    out = nearest_2d(bank, xy[None], seen)[0]
    assert torch.allclose(out[:, :2], xy, atol=1e-4) and torch.allclose(out[:, 2], 0.6 * pose[:, 2], atol=1e-5)


def test_a_nearest_warm_start_starts_from_the_lookup_with_the_observation_in_place():
    bank = _bank()
    target = bank[[4]] * 2.0
    missing = torch.zeros(1, 17, dtype=torch.bool)
    missing[0, [5, 6]] = True
    task = observe_3d(target, missing, "impute")
    sde = SubVPSDE()
    warm, answer = warm_start(ScoreFn(CorrelatedGaussianEps(sde), sde), sde, task, "nearest", 0.4, bank, 2, 3, 100,
                              torch.device("cpu"))
    assert torch.allclose(answer, target, atol=1e-5) and warm.t_start == 0.4 and warm.noised_start
    x, _ = sample(ScoreFn(CorrelatedGaussianEps(sde), sde), sde, warm, SamplerConfig(method="drift_ddim", steps=4))
    assert torch.equal(x[0, :5], target[0, :5])  # observed joints exactly kept
    none, answer = warm_start(None, sde, task, "none", 0.4, None, 2, 3, 100, torch.device("cpu"))
    assert none is task and answer is None


def test_the_completion_schedule_switches_the_masking_rates():
    from tests.helpers import tiny_config

    t = tiny_config("x").training
    t.completion_from, t.completion_part_p, t.completion_joint_p, t.completion_3d_p = 0.5, 0.3, 0.4, 0.2
    assert mask_rates(t, 0.49) == (t.mask_whole_p, t.mask_part_p, t.mask_joint_p, t.cond_3d_p)
    assert mask_rates(t, 0.5) == (t.mask_whole_p, 0.3, 0.4, 0.2)


@pytest.fixture(scope="module")
def prior(trained_run):
    return PosePrior.from_checkpoint(trained_run, best=False)


def test_api_completion_methods_keep_the_observation(prior):
    pose = np.random.default_rng(0).normal(0, 0.2, (6, 17, 3)).astype(np.float32)
    pose[:, [13, 16]] = np.nan  # missing joints may be NaN
    for kw in ({"warm_start": "nearest"}, {"warm_start": "mean"}, {"completion": "condition"}):
        out = prior.complete_3d(pose, [13, 16], hypotheses=2, steps=3, **kw)
        assert np.allclose(out[:, :, :13], pose[:, None, :13], atol=1e-5) and np.isfinite(out).all(), kw
    prior.config.sampling.resample, prior.config.sampling.guidance = 1, 0.1
    try:
        out = prior.complete_3d(pose, [13, 16], fast=True, pflow=True)
    finally:
        prior.config.sampling.resample, prior.config.sampling.guidance = 0, 0.0
    assert np.isfinite(out).all()


def test_completion_command_rows_and_nfe(trained_run, tmp_path):
    out = tmp_path / "c.json"
    res = run_module("run.eval_fc_mp_adv_3d", "--ckpt-dir", str(trained_run), "--steps", "4", "--hypo", "2",
                     "--config.eval.warm_start=mean", "--config.eval.warm_t=0.4", "--config.sampling.resample=1",
                     "--config.sampling.resample_t=0.3", "--config.sampling.guidance=0.5", "--json", str(out), "--out",
                     str(tmp_path), "comp2d", "--randj", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    assert {"baseline_lookup_missing", "baseline_lookup", "warm_missing", "p1_missing"} <= set(report["table"])
    # the warm start begins at t = 0.4: the paper's grid of 4 steps starts them at 0.4, 0.27, 0.13, 0.001, so one is
    # resampled; guidance evaluates the network once more at every step; and the warm start's 4 quick hypotheses of
    # 10 evaluations are shared by the 2 hypotheses
    assert report["nfe"] == 4 + 1 + 4 + 4 * 10 / 2 and "N = 240 poses" in report["title"]
    assert "RePaint 1x from t 0.3, guidance 0.5" in " ".join(report["samplers"].values())
