"""The paper's own sampler, reproduced: golden outputs of Embracing/GFPose on a small prior (../shared/golden).

The cases go through `sample_task`, the function the command lines and the API sample with.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lib.builders import build_score_fn, build_sde, frames_of, load_model, paper_sampler
from lib.camera import RowCameras
from lib.evaluate import sample_task
from lib.metrics import mpjpe, pa_mpjpe
from lib.tasks.den import denoising
from lib.tasks.est import estimation
from lib.tasks.gen import generation
from tests.helpers import GOLDEN, needs_golden

pytestmark = needs_golden


@pytest.fixture(scope="module")
def golden():
    model, config = load_model(GOLDEN / "prior_small.pth")
    sde = build_sde(config)
    inputs = dict(np.load(GOLDEN / "inputs.npz"))
    return config, sde, build_score_fn(model, sde, config), inputs, dict(np.load(GOLDEN / "reference_outputs.npz"))


def _paper(config, task, steps: int, sde, score_fn) -> np.ndarray:
    cfg = dataclasses.replace(paper_sampler(config, deterministic=True), steps=steps)
    out, _, _ = sample_task(score_fn, sde, task, cfg, 1, 1000, 0, torch.device("cpu"), progress=False)
    return out[:, 0].numpy()


@pytest.mark.parametrize("case,steps", [("est_pflow_100", 100), ("est_pflow_1000", 1000), ("gen_pflow_100", 100),
                                        ("den_pflow_t0.05", 1000)])
def test_pflow_reproduces_the_papers_sampler(golden, case, steps):
    config, sde, score_fn, inputs, ref = golden
    x_t = torch.from_numpy(inputs["x_T"])
    if case.startswith("est"):
        task = dataclasses.replace(estimation(torch.from_numpy(inputs["cond2d"])), x_init=x_t)
    elif case.startswith("gen"):
        task = dataclasses.replace(generation(len(x_t)), x_init=x_t)
    else:
        task = denoising(torch.from_numpy(inputs["den_noisy"]), 0.05)
    assert config.sampling.eps == 1e-3 and config.model.num_scales == 1000
    assert np.abs(_paper(config, task, steps, sde, score_fn) - ref[case]).max() < 1e-3


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
    assert abs(rows["p1_paper"].mean() - 173.2) < 0.1 and abs(rows["p2_paper"].mean() - 31.4) < 0.1
