"""Synthetic generator, H36M-Toolbox layout, normalisation round trips, restricted unpickling."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from lib.camera import Frames, image_to_camera, project
from lib.data import load_split
from lib.errors import ToolkitError
from lib.safe_pickle import load_pickle, save_pickle
from lib.skeleton import LEFT_JOINTS, RIGHT_JOINTS, bone_lengths, flip_pose, parse_joint_list
from lib.synthetic import BONE_MM


def test_layout_and_round_trip(data_root):
    rows = load_pickle(data_root / "synthetic_train.pkl")
    r = rows[0]
    for field in ("joint_3d_camera", "joint_3d_image", "camera_param", "box", "action", "subject", "subaction",
                  "cameraid", "root_depth"):
        assert field in r
    assert {row["subject"] for row in rows} == {1, 5, 6, 7, 8}
    assert {row["action"] for row in rows} == set(range(2, 17))
    data = load_split(data_root, "synthetic_test.pkl", "synthetic_dt.pkl", "test", 1, use_gt_2d=False)
    assert {int(s) for s in data.subject} == {9, 11} and data.det2d.shape == (len(data), 17, 2)
    assert data.source_2d == "synthetic_dt.pkl"
    back = image_to_camera(data.pose_img, data.cam, data.box, data.root_depth)
    assert np.abs(back - data.pose_cam).max() < 1e-3  # mm
    # box = projection of a 2 m square around the pelvis
    root = data.pose_cam[:, 0]
    corners = project(np.stack([root - [1000, 1000, 0], root + [1000, 1000, 0]], 1), data.cam).reshape(-1, 4)
    assert np.allclose(corners, data.box)
    # network-space representation is the normalised image pose times the scale
    net = data.gt3d(Frames(1000.0, 30.0))
    assert torch.allclose(net[..., :2], torch.from_numpy((data.pose_img[..., :2] / 500.0 - 1.0) * 30).float(),
                          atol=1e-4)
    assert torch.allclose(net[..., 2], torch.from_numpy(data.pose_img[..., 2] / 500.0 * 30).float(), atol=1e-4)


def test_poses_are_plausible(data_root):
    data = load_split(data_root, "synthetic_train.pkl", "", "train", 1, use_gt_2d=True)
    bones = bone_lengths(torch.from_numpy(data.pose_cam))  # [N, 16]
    want = torch.tensor([BONE_MM[k] for k in ("hip", "thigh", "shin", "hip", "thigh", "shin", "spine", "thorax",
                                               "neck", "head", "shoulder", "upper_arm", "forearm", "shoulder",
                                               "upper_arm", "forearm")], dtype=torch.float64)
    assert ((bones.mean(0) - want).abs() / want).max() < 0.12
    # left and right limbs of one subject have (nearly) the same length
    left = bones[:, [3, 4, 5, 10, 11, 12]]
    right = bones[:, [0, 1, 2, 13, 14, 15]]
    assert ((left - right).abs() / right).max() < 0.03
    # left joints are on the subject's left: forward is where the face points (the neck/nose sits in front of the
    # thorax), up is world Z (the rows' world poses), left = up x forward (right-handed)
    world = np.stack([r["joints_3d"] for r in load_pickle(data_root / "synthetic_train.pkl")])  # [N, 17, 3]
    forward = world[:, 9] - world[:, 8]
    forward[:, 2] = 0.0
    left = np.cross(np.array([0.0, 0.0, 1.0]), forward)
    for lj, rj in ((4, 1), (11, 14), (5, 2), (12, 15)):  # hips, shoulders, knees, elbows
        assert np.mean(np.einsum("nk,nk->n", world[:, lj] - world[:, rj], left) > 0) > 0.97, (lj, rj)


def test_flip_swaps_sides_and_negates_x():
    pose = torch.randn(2, 17, 3)
    flipped = flip_pose(pose)
    assert torch.equal(flipped[:, LEFT_JOINTS[0], 0], -pose[:, RIGHT_JOINTS[0], 0])
    assert torch.equal(flip_pose(flipped), pose)


def test_joint_list_parsing():
    assert parse_joint_list("right_leg,13") == [1, 2, 3, 13]
    for bad in ("17", "-1", "elbow", ""):
        with pytest.raises(ValueError):
            parse_joint_list(bad)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([{"x": _Evil()}]))
    with pytest.raises(ToolkitError, match="refusing"):
        load_pickle(path)
    save_pickle([{"a": np.arange(3.0), "b": "s", "c": 1}], tmp_path / "ok.pkl")
    assert load_pickle(tmp_path / "ok.pkl")[0]["b"] == "s"


def test_bad_pickles_give_clear_errors(data_root, tmp_path):
    rows = load_pickle(data_root / "synthetic_test.pkl")[:8]
    with pytest.raises(ToolkitError, match="not found.*prepare_data synthetic"):
        load_split(tmp_path / "synthetic", "synthetic_test.pkl", "", "test", 1, use_gt_2d=True)
    save_pickle([{k: v for k, v in r.items() if k != "box"} for r in rows], tmp_path / "a.pkl")
    with pytest.raises(ToolkitError, match="lack field.*box"):
        load_split(tmp_path, "a.pkl", "", "test", 1, use_gt_2d=True)
    bad = [dict(r) for r in rows]
    bad[3]["joint_3d_image"] = np.full((17, 3), np.nan)
    save_pickle(bad, tmp_path / "b.pkl")
    with pytest.raises(ToolkitError, match="NaN"):
        load_split(tmp_path, "b.pkl", "", "test", 1, use_gt_2d=True)
    bad = [dict(r) for r in rows]
    bad[2]["joint_3d_camera"] = np.zeros((16, 3))
    save_pickle(bad, tmp_path / "c.pkl")
    with pytest.raises(ToolkitError, match="shape"):
        load_split(tmp_path, "c.pkl", "", "test", 1, use_gt_2d=True)
    save_pickle(rows, tmp_path / "d.pkl")
    save_pickle({"test": {"joint3d_image": np.zeros((5, 17, 3)), "confidence": np.zeros((5, 17, 1))}},
                tmp_path / "det.pkl")
    with pytest.raises(ToolkitError, match="aligned row by row"):
        load_split(tmp_path, "d.pkl", "det.pkl", "test", 1, use_gt_2d=False)
    with pytest.raises(ToolkitError, match="detections file .*nothere.pkl.* not found.*--gt"):
        load_split(tmp_path, "d.pkl", "nothere.pkl", "test", 1, use_gt_2d=False)  # never a silent GT fallback
    with pytest.raises(ToolkitError, match="no detections file is configured"):
        load_split(tmp_path, "d.pkl", "", "test", 1, use_gt_2d=False)
    assert load_split(tmp_path, "d.pkl", "nothere.pkl", "test", 1, use_gt_2d=True).source_2d == "ground-truth 2D"
