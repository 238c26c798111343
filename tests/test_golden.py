"""The paper's own sampler and metrics, reproduced: outputs of Embracing/GFPose on a small prior (tests/golden).

The cases go through `sample_task` (deterministic) and `sample` (Euler-Maruyama with a given generator), the
functions the command lines and the API sample with. Tolerances are those tests/golden/README.md states.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lib.builders import build_score_fn, build_sde, frames_of
from lib.camera import RowCameras
from lib.loader import load_prior
from lib.metrics import mpjpe, pa_mpjpe
from lib.resolve import paper_sampler
from lib.sampling import sample
from lib.sharded import sample_task
from lib.tasks.den import denoising
from lib.tasks.est import estimation
from lib.tasks.gen import generation
from tests.helpers import GOLDEN

TOLERANCE = 2e-5  # network units; float32 round-off of a different arithmetic order (tests/golden/README.md)
# Euler-Maruyama's noise makes 1000 steps amplify round-off more: 7.6e-6 with this CPU's AVX-512 kernels and 2.3e-5
# with ATEN_CPU_CAPABILITY=default (the generic ones); the bound leaves 4x on the latter, and a noise stream one draw
# off lands > 0.1 away (asserted below)
EM_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def golden():
    prior = load_prior(GOLDEN / "prior_small.pth")
    model, config = prior.model, prior.config
    sde = build_sde(config)
    inputs = dict(np.load(GOLDEN / "inputs.npz"))
    return config, sde, build_score_fn(model, sde, config), inputs, dict(np.load(GOLDEN / "reference_outputs.npz"))


def _task(case: str, inputs: dict):
    x_t = torch.from_numpy(inputs["x_T"])
    if case.startswith("est"):
        return dataclasses.replace(estimation(torch.from_numpy(inputs["cond2d"])), x_init=x_t)
    if case.startswith("gen"):
        return dataclasses.replace(generation(len(x_t)), x_init=x_t)
    return denoising(torch.from_numpy(inputs["den_noisy"]), 0.05)


@pytest.mark.parametrize("case,steps", [("est_pflow_100", 100), ("est_pflow_1000", 1000), ("gen_pflow_100", 100),
                                        ("den_pflow_t0.05", 1000)])
def test_pflow_reproduces_the_papers_sampler(golden, case, steps):
    config, sde, score_fn, inputs, ref = golden
    assert config.sampling.eps == 1e-3 and config.model.num_scales == 1000
    cfg = dataclasses.replace(paper_sampler(config, deterministic=True), steps=steps)
    out, _, _ = sample_task(score_fn, sde, _task(case, inputs), cfg, 1, 1000, 0, torch.device("cpu"), progress=False)
    assert np.abs(out[:, 0].numpy() - ref[case]).max() < TOLERANCE


@pytest.mark.parametrize("steps", [100, 1000])
def test_em_reproduces_the_papers_euler_maruyama_with_its_noise(golden, steps):
    """The paper's EM after torch.manual_seed(0): one randn_like(x) per step from the default CPU generator, the last
    step's mean returned. A generator seeded with 0 draws the same stream; a stream one draw later is far off."""
    config, sde, score_fn, inputs, ref = golden
    cfg = dataclasses.replace(paper_sampler(config, deterministic=False), steps=steps)
    task = _task("est", inputs)
    out, _ = sample(score_fn, sde, task, cfg, torch.Generator().manual_seed(0))
    assert np.abs(out.numpy() - ref[f"est_em_{steps}"]).max() < EM_TOLERANCE
    shifted = torch.Generator().manual_seed(0)
    torch.randn(task.condition.shape, generator=shifted)
    out, _ = sample(score_fn, sde, task, cfg, shifted)
    assert np.abs(out.numpy() - ref[f"est_em_{steps}"]).max() > 0.1


def test_paper_metrics_match_the_papers_rows(golden):
    """P1 (not root-aligned, prediction mapped with its own pixels and the true root depth) and P2 (Procrustes,
    reflection allowed), row by row against the paper's evaluation of est_pflow_100."""
    config, _, _, _, ref = golden
    rows = dict(np.load(GOLDEN / "metric_rows.npz"))
    cams = RowCameras(rows["cam"], rows["box"], rows["root_depth"])
    pred = cams.network_to_camera(torch.from_numpy(ref["est_pflow_100"]), frames_of(config))
    gt = torch.from_numpy(rows["joint_3d_camera"]).float()
    assert np.abs(mpjpe(pred, gt).numpy() - rows["p1_paper"]).max() < 0.01
    assert np.abs(pa_mpjpe(pred, gt).numpy() - rows["p2_paper"]).max() < 0.01
