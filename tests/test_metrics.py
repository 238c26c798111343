"""Every metric that produces a reported number, against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lib.camera import Frames, RowCameras, box_around_root, camera_to_image, image_to_camera, project, unproject
from lib.metrics import (
    format_table,
    joint_distances,
    masked_mean,
    mpjpe,
    mpjpe_root,
    pa_mpjpe,
    per_action,
    procrustes_align,
)
from lib.tasks.est import diversity
from lib.tasks.gen import approx_mm, generation_metrics, within_limits


def test_mpjpe_is_not_root_aligned_and_mpjpe_root_is():
    gt = torch.zeros(1, 17, 3)
    pred = torch.zeros(1, 17, 3)
    pred[0, 5] = torch.tensor([3.0, 4.0, 0.0])  # one joint 5 mm off
    assert math.isclose(float(mpjpe(pred, gt)), 5.0 / 17, rel_tol=1e-6)
    assert math.isclose(float(mpjpe(pred + 100.0, gt)), 100.0 * math.sqrt(3) * 16 / 17 + float(
        joint_distances(pred[0, 5] + 100.0, gt[0, 5])) / 17, rel_tol=1e-5)
    assert math.isclose(float(mpjpe_root(pred + 100.0, gt)), 5.0 / 17, rel_tol=1e-5)  # a shift is removed


def test_procrustes_removes_a_similarity_and_allows_a_reflection_like_matlab():
    torch.manual_seed(0)
    gt = torch.randn(8, 17, 3) * 100
    a = 0.9
    rot = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    pred = 1.7 * gt @ rot.T + torch.tensor([10.0, -5.0, 300.0])
    assert pa_mpjpe(pred, gt).max() < 1e-3
    mirrored = gt * torch.tensor([-1.0, 1.0, 1.0])
    assert pa_mpjpe(mirrored, gt).max() < 1e-3  # reflection='best': a mirror image aligns exactly
    assert pa_mpjpe(mirrored, gt, reflection=False).min() > 1.0  # a proper rotation cannot


def test_procrustes_hand_computed_scale_and_translation():
    gt = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]]])
    pred = gt * 0.5 + 7.0  # half size, shifted
    assert torch.allclose(procrustes_align(pred, gt), gt, atol=1e-5)


def test_masked_mean_and_diversity():
    v = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert float(masked_mean(v, torch.tensor([[0, 1, 0, 1]]))) == 3.0
    assert float(masked_mean(v, torch.zeros(1, 4))) == 0.0
    poses = torch.zeros(1, 2, 17, 3)
    poses[0, 1, 1:, 0] = 2.0  # the second hypothesis: every non-root joint 2 mm off
    # per non-root joint the two hypotheses are 2 apart: RMS pairwise distance 2, averaged with the root's 0
    assert math.isclose(float(diversity(poses)), 2.0 * 16 / 17, rel_tol=1e-6)


def test_per_action_averages_over_actions_not_frames():
    err = np.array([10.0, 10.0, 10.0, 40.0])
    table = per_action({"p1": err}, np.array([2, 2, 2, 3]))["p1"]
    assert table["Directions"] == 10.0 and table["Discussion"] == 40.0 and table["Average"] == 25.0
    named = per_action({"p1": err}, np.array(["walking", "walking", "jumping", "Directions"]))["p1"]
    assert list(named) == ["Directions", "jumping", "walking", "Average"]  # Human3.6M first, others sorted
    text = format_table({"p1": table}, {"p1": "P1 (mm)"}, "title")
    assert "P1 (mm)" in text and "25.0" in text and "title" in text


def test_camera_round_trips_and_the_box():
    cam = np.array([[1000.0, 1100.0, 500.0, 480.0]])
    pose = np.array([[[100.0, -200.0, 4000.0], [400.0, 50.0, 4300.0]]])
    uv = project(pose, cam)
    assert np.allclose(uv[0, 0], [1000 * 100 / 4000 + 500, 1100 * -200 / 4000 + 480])
    assert np.allclose(unproject(uv, pose[..., 2], cam), pose)
    box = box_around_root(pose[:, 0], cam)
    assert np.allclose(box[0], [1000 * -900 / 4000 + 500, 1100 * -1200 / 4000 + 480,
                                1000 * 1100 / 4000 + 500, 1100 * 800 / 4000 + 480])
    img = camera_to_image(pose, cam, box, pose[:, 0, 2])
    ratio = (box[0, 2] - box[0, 0] + 1) / 2000
    assert np.isclose(img[0, 1, 2], ratio * 300.0) and img[0, 0, 2] == 0.0
    assert np.allclose(image_to_camera(img, cam, box, pose[:, 0, 2]), pose)
    frames = Frames(1000.0, 30.0)
    assert np.allclose(frames.normalise(np.array([0.0, 1000.0, 500.0])), [-1.0, 1.0, 1.0])
    rows = RowCameras(cam, box, pose[:, 0, 2])
    net = rows.camera_to_network(pose, frames)
    assert torch.allclose(rows.network_to_camera(net, frames), torch.tensor(pose).float(), atol=1e-2)
    assert torch.allclose(rows.network_to_camera(net[:, None], frames)[:, 0], rows.network_to_camera(net, frames))


def test_generation_figures_hand_computed():
    pose = torch.zeros(1, 17, 3)
    pose[0, 1], pose[0, 4] = torch.tensor([-100.0, 0, 0]), torch.tensor([100.0, 0, 0])  # hips
    pose[0, 2], pose[0, 5] = torch.tensor([-100.0, 400, 0]), torch.tensor([100.0, 400, 0])  # knees below
    pose[0, 3], pose[0, 6] = torch.tensor([-100.0, 800, 50]), torch.tensor([100.0, 800, 50])  # ankles
    pose[0, 7:11] = torch.tensor([[0.0, -250, 0], [0, -500, 0], [0, -600, 0], [0, -700, 0]])
    pose[0, 11:14] = torch.tensor([[150.0, -500, 0], [150, -250, 50], [150, -50, 100]])
    pose[0, 14:17] = torch.tensor([[-150.0, -500, 0], [-150, -250, 50], [-150, -50, 100]])
    up = pose.clone()
    up[..., 1] = -up[..., 1]  # y up: head above thorax
    assert within_limits(up).all()
    table = generation_metrics({"a": up, "b": up.repeat(2, 1, 1)}, up.repeat(3, 1, 1))
    assert table["bone_error"]["a"] == 0.0 and table["asymmetry"]["a"] == 0.0
    assert table["nearest_train"]["b"] == 0.0 and table["within_limits"]["a"] == 100.0
    assert torch.allclose(approx_mm(torch.ones(1, 2, 3) * 30, Frames(), 0.5)[0, 1], torch.zeros(3))


def test_completion_baselines_hand_computed():
    from lib.tasks.completion import completion_baselines

    a = torch.zeros(17, 3)
    a[3] = torch.tensor([0.0, 100.0, 0.0])
    b = torch.zeros(17, 3)
    b[:, 0] = 10.0 * torch.arange(17)
    missing = torch.zeros(1, 17, dtype=torch.bool)
    missing[0, 3] = True
    base = completion_baselines((b + torch.tensor([500.0, -20.0, 7.0]))[None], torch.stack([a, b]), missing)
    assert base["nearest"].item() == pytest.approx(0.0, abs=1e-4)  # b, translated onto the seen joints
    # the mean pose (a + b) / 2 centred on the seen joints: its joint 3 is off by (a3 - b3) / 2 + c / 2, with c the
    # centroid of b's 16 seen joints, (10 * (136 - 3) / 16, 0, 0)
    c = 10.0 * (136 - 3) / 16
    assert base["mean"].item() == pytest.approx(math.hypot(-15.0 + c / 2, 50.0), rel=1e-5)


def test_jitter_hand_computed():
    from lib.video import jitter

    t = np.arange(6, dtype=float)
    poses = np.zeros((6, 17, 3))
    poses[..., 0] = 3.0 * t[:, None] ** 2  # constant acceleration: second difference 6 mm / frame^2
    assert jitter(poses, np.ones(6, bool)) == pytest.approx(6.0)
    poses[..., 1] = 10.0 * t[:, None]  # a constant velocity adds nothing
    assert jitter(poses, np.ones(6, bool)) == pytest.approx(6.0)
    valid = np.ones(6, bool)
    valid[2] = False  # only triples of valid frames count: (3, 4, 5)
    assert jitter(poses, valid) == pytest.approx(6.0) and np.isnan(jitter(poses, np.zeros(6, bool)))
