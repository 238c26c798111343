from __future__ import annotations

import math

import numpy as np
import torch

from lib.metrics import mpjpe, pa_mpjpe, per_action


def test_mpjpe_hand_computed():
    gt = torch.zeros(1, 17, 3)
    pred = torch.zeros(1, 17, 3)
    pred[0, 5] = torch.tensor([3.0, 4.0, 0.0])  # one joint 5 mm off
    assert math.isclose(float(mpjpe(pred, gt)), 5.0 / 17, rel_tol=1e-6)
    assert float(mpjpe(pred + 100.0, gt)) == float(mpjpe(pred, gt))  # root-aligned


def test_pa_mpjpe_removes_similarity_transform_but_not_reflection():
    torch.manual_seed(0)
    gt = torch.randn(8, 17, 3) * 100
    a = 0.9
    rot = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    pred = 1.7 * gt @ rot.T + torch.tensor([10.0, -5.0, 300.0])
    assert pa_mpjpe(pred, gt).max() < 1e-3
    mirrored = gt * torch.tensor([-1.0, 1.0, 1.0])
    assert pa_mpjpe(mirrored, gt).min() > 1.0


def test_per_action_averages_over_actions_not_frames():
    err = np.array([10.0, 10.0, 10.0, 40.0])
    actions = np.array([2, 2, 2, 3])
    table = per_action({"P1": err}, actions)["P1"]
    assert table["Directions"] == 10.0 and table["Discussion"] == 40.0 and table["Average"] == 25.0
