"""Export of lifted poses (BVH, CSV) and the gravity-aligned world frame, checked against poses whose geometry is
known: synthetic walks with constant bone lengths filmed by a tilted camera, a T-pose, hand-computed medians. The
BVH files are read back by the project's reader (lib/bvh.py) and, where Blender's Python module is installed, by
Blender itself."""
from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest

from lib.bvh import CAMERA_TO_BVH, WORLD_TO_BVH, bvh_text, h36m_positions, parse_bvh
from lib.camera import Camera, look_at, project
from lib.errors import ToolkitError
from lib.lift import LiftResult
from lib.synthetic import ANKLE_HEIGHT, subject_bones, walking_clip
from lib.world import world_frame
from run import lift as lift_cli
from tests.helpers import run_main

BONES = ((0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (0, 7), (7, 8), (8, 9), (9, 10), (8, 11), (11, 12), (12, 13),
         (8, 14), (14, 15), (15, 16))  # docs/design.md, 'Skeleton'
NAMES = ("pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "spine", "thorax",
         "neck_nose", "head", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
         "right_wrist")


def _tilted_camera(pitch_deg: float = 25.0) -> Camera:
    """A camera 5 m from the scene's centre, looking down at pitch_deg."""
    height = 1000.0 + 5000.0 * np.tan(np.radians(pitch_deg))
    centre = np.array([0.0, -5000.0, height])
    return Camera(rot=look_at(centre, np.array([0.0, 0.0, 1000.0])), centre=centre,
                  intrinsics=np.array([1400.0, 1400.0, 960.0, 540.0]))


def _result(camera_poses: np.ndarray, track: np.ndarray | None = None) -> LiftResult:
    """A LiftResult holding poses [T, P, 17, 3] (camera mm) as a lift would, every person valid."""
    t, p = camera_poses.shape[:2]
    return LiftResult(camera_poses, np.zeros((t, p, 17), bool), np.full((t, p, 17), 5.0), camera_poses[..., 0, 2],
                      np.zeros((t, p, 17, 2)), np.ones((t, p), bool),
                      np.broadcast_to(np.arange(p), (t, p)).copy() if track is None else track,
                      np.array([1400.0, 1400.0, 960.0, 540.0]), True, [str(i) for i in range(t)], [])


def _walk(frames: int = 40, seed: int = 0) -> np.ndarray:
    return walking_clip(frames, subject_bones(9, seed), np.random.default_rng(seed), start=(-1000.0, 0.0))


def test_bvh_round_trip_gives_back_poses_of_constant_bone_lengths(tmp_path):
    """A synthetic walk has the same bones in every frame, so the BVH (median bones) must give back its joints."""
    cam = _tilted_camera()
    poses = cam.world_to_camera(_walk())[:, None]  # [T, 1, 17, 3]
    paths = _result(poses).save_bvh(tmp_path, fps=25.0)
    assert [p.name for p in paths] == ["track_0.bvh"]
    bvh = parse_bvh(paths[0])
    assert bvh.frame_time == pytest.approx(1 / 25.0) and bvh.names[0] == "Hips"
    back = h36m_positions(bvh) @ CAMERA_TO_BVH  # BVH (x, -y, -z) back to camera coordinates
    assert np.abs(back - poses[:, 0]).max() < 1.0  # mm


def test_bvh_rest_pose_has_zero_rotations_and_the_documented_axes():
    """The documented rest pose (T-pose facing +Z, Y up, the subject's left along +X) gives zero rotations, and the
    hip joint of the left leg lies at +X."""
    pose = np.zeros((2, 17, 3))
    up, left, down = np.array([0, 1.0, 0]), np.array([1.0, 0, 0]), np.array([0, -1.0, 0])
    steps = {1: -100 * left, 2: 400 * down, 3: 400 * down, 4: 100 * left, 5: 400 * down, 6: 400 * down, 7: 200 * up,
             8: 200 * up, 9: 150 * up, 10: 100 * up, 11: 150 * left, 12: 250 * left, 13: 200 * left,
             14: -150 * left, 15: -250 * left, 16: -200 * left}
    for p, c in BONES:
        pose[:, c] = pose[:, p] + steps[c]
    pose += np.array([10.0, 900.0, -20.0])
    text = bvh_text(pose, fps=30.0)
    motion = np.array(text.split("Frame Time:")[1].split()[1:], dtype=float).reshape(2, -1)
    assert np.allclose(motion[:, :3], [10.0, 900.0, -20.0]) and np.abs(motion[:, 3:]).max() < 1e-6
    assert "OFFSET 100.000000 0.000000 0.000000" in text  # LeftHip from LHipJoint: the left side is +X


def test_bvh_keeps_bone_directions_and_uses_median_lengths(tmp_path):
    """Bones whose lengths change from frame to frame: the file's bones have the median length (numpy's, here) and
    point where the input's point."""
    rng = np.random.default_rng(3)
    poses = _walk(30)
    stretched = poses.copy()
    for p, c in BONES:  # each bone scaled by its own factor per frame, children carried along
        scale = rng.uniform(0.9, 1.1, (30, 1))
        stretched[:, c] = stretched[:, p] + scale * (poses[:, c] - poses[:, p])
        poses[:, c] = stretched[:, c] - (stretched[:, p] - poses[:, p])  # keep the unscaled copy aligned
    src = stretched @ WORLD_TO_BVH.T
    (tmp_path / "s.bvh").write_text(bvh_text(src, fps=30.0))
    back = h36m_positions(parse_bvh(tmp_path / "s.bvh"))
    for p, c in BONES:
        d_in, d_out = src[:, c] - src[:, p], back[:, c] - back[:, p]
        median = np.median(np.linalg.norm(d_in, axis=-1))
        assert np.allclose(np.linalg.norm(d_out, axis=-1), median, atol=1e-3)
        cos = (d_in * d_out).sum(-1) / np.linalg.norm(d_in, axis=-1) / np.linalg.norm(d_out, axis=-1)
        assert cos.min() > 1 - 1e-9


def test_bvh_holds_a_missing_frame_and_refuses_one_frame_tracks(tmp_path):
    poses = _tilted_camera().world_to_camera(_walk(12))[:, None]
    res = _result(poses)
    res.valid[5] = False
    back = h36m_positions(parse_bvh(res.save_bvh(tmp_path, 30.0)[0])) @ CAMERA_TO_BVH
    assert len(back) == 12 and np.abs(back[5] - poses[4, 0]).max() < 1.0  # frame 5 repeats frame 4
    res.valid[1:] = False
    with pytest.raises(ToolkitError, match="track 0 has one frame"):
        res.save_bvh(tmp_path / "one", 30.0)
    assert not (tmp_path / "one").exists()


def test_csv_has_named_joint_columns_and_the_poses(tmp_path):
    poses = _tilted_camera().world_to_camera(np.stack([_walk(6), _walk(6, seed=1)], 1))  # [6, 2, 17, 3]
    res = _result(poses)
    res.valid[2, 1] = False
    path = res.save_csv(tmp_path / "poses.csv")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    expected = ["frame", "track"] + [f"{n}_{c}" for n in NAMES for c in ("x", "y", "z", "uncertainty")]
    assert rows[0] == expected and len(rows) == 1 + 11
    by_key = {(r[0], r[1]): np.array(r[2:], dtype=float).reshape(17, 4) for r in rows[1:]}
    assert ("2", "1") not in by_key and len(by_key) == 11
    for (t, p), values in by_key.items():  # every value of every row, to the file's 0.01 mm
        assert np.abs(values[:, :3] - poses[int(t), int(p)]).max() <= 0.005 and (values[:, 3] == 5).all()
    if importlib.util.find_spec("pandas"):
        import pandas as pd

        table = pd.read_csv(path)
        assert list(table.columns) == expected and np.allclose(table["left_wrist_z"][0], poses[0, 0, 13, 2], atol=5e-3)


@pytest.mark.parametrize("pitch", [10.0, 35.0])
def test_world_frame_recovers_up_floor_and_trajectory_despite_jumps(pitch):
    """A walk filmed from above: the floor's normal is the world's Z seen by the camera, heights above the floor are
    the true ones, and the origin lies under the first pelvis; 8 frames in the air do not tilt it."""
    world = _walk(60)
    world[20:28] += np.array([0.0, 0.0, 350.0])  # a jump
    cam = _tilted_camera(pitch)
    poses = cam.world_to_camera(world)[:, None]
    frame = world_frame(poses, np.ones((60, 1), bool), ankle_height=ANKLE_HEIGHT)
    true_up = cam.rot @ np.array([0.0, 0.0, 1.0])
    assert np.degrees(np.arccos(frame.up @ true_up)) < 0.5
    out = frame.apply(poses[:, 0])
    assert np.abs(out[..., 2] - world[..., 2]).max() < 3.0  # heights above the floor (mm)
    assert np.abs(out[0, 0, :2]).max() < 1e-6  # the origin under the first pelvis
    step = np.linalg.norm(np.diff(out[:, 0, :2], axis=0), axis=-1)  # the root trajectory, kept
    assert np.allclose(step, np.linalg.norm(np.diff(world[:, 0, :2], axis=0), axis=-1), atol=0.5)
    assert frame.standing < 0.9  # the jump's frames are not on the floor


def test_world_frame_of_a_person_standing_still_follows_the_body():
    """Feet on two spots fix no plane: the prior keeps up near the body's axis (tilt of the synthetic stance < 5
    degrees)."""
    world = np.repeat(_walk(1), 20, 0) + np.random.default_rng(0).normal(0, 2.0, (20, 17, 3))
    cam = _tilted_camera(20.0)
    frame = world_frame(cam.world_to_camera(world)[:, None], np.ones((20, 1), bool), ankle_height=ANKLE_HEIGHT)
    assert np.degrees(np.arccos(frame.up @ (cam.rot @ np.array([0.0, 0.0, 1.0])))) < 5.0


def test_world_frame_refuses_a_clip_too_short():
    poses = _tilted_camera().world_to_camera(_walk(5))[:, None]
    with pytest.raises(ToolkitError, match="at least 10 frames"):
        world_frame(poses, np.ones((5, 1), bool))


def _coco_video(path, frames: int = 24) -> np.ndarray:
    """A COCO results file of a tracked walk (pixels of COCO's 17 keypoints from the Human3.6M joints by name); returns
    the camera-frame poses."""
    cam = _tilted_camera(20.0)
    pose = cam.world_to_camera(_walk(frames))
    px = project(pose, np.broadcast_to(cam.intrinsics, (frames, 4)))
    coco = [NAMES.index(n) for n in ("neck_nose", "neck_nose", "neck_nose", "neck_nose", "neck_nose",
                                     "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
                                     "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
                                     "right_ankle")]
    dets = [{"image_id": i, "category_id": 1, "score": 0.9, "track_id": 3,
             "keypoints": np.concatenate([px[i, coco], np.ones((17, 1))], -1).ravel().round(2).tolist()}
            for i in range(frames)]
    path.write_text(json.dumps(dets))
    return pose


def test_lift_command_exports_bvh_and_csv_in_the_world_frame(tmp_path, monkeypatch, capsys):
    """run.lift --export bvh,csv --world with the shipped prior (no --ckpt-dir): the BVH and the CSV, each read back,
    agree with poses.npz."""
    _coco_video(tmp_path / "walk.json")
    out = tmp_path / "out"
    code, stdout, err = run_main(lift_cli, [str(tmp_path / "walk.json"), "--format", "coco", "--camera",
                                            "1400", "1400", "960", "540", "--hypo", "1", "--fast", "--export",
                                            "bvh,csv", "--world", "--fps", "25", "--draw", "none", "--out", str(out)],
                                 monkeypatch, capsys)
    assert code == 0, err
    z = np.load(out / "poses.npz")
    world = z["pose3d_world"][:, 0]
    assert np.allclose(world, (z["pose3d"][:, 0] - z["world_origin"]) @ z["world_rotation"].T)
    bvh = parse_bvh(out / "track_3.bvh")
    back = h36m_positions(bvh) @ WORLD_TO_BVH  # BVH (x, z, -y) back to the world frame
    assert np.abs(back[:, 0] - world[:, 0]).max() < 1e-3  # the root trajectory
    lengths = np.median(np.linalg.norm(world[:, [c for _, c in BONES]] - world[:, [p for p, _ in BONES]], axis=-1), 0)
    for k, (p, c) in enumerate(BONES):  # rigid bones of the median length, pointing where the lifted ones point
        d_in, d_out = world[:, c] - world[:, p], back[:, c] - back[:, p]
        assert np.allclose(np.linalg.norm(d_out, axis=-1), lengths[k], atol=1e-3)
        assert ((d_in * d_out).sum(-1) / np.linalg.norm(d_in, axis=-1) / lengths[k]).min() > 1 - 1e-6
    with (out / "poses.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 and {r["track"] for r in rows} == {"3"} and [r["frame"] for r in rows] == list(map(str,
                                                                                                          range(24)))
    table = np.array([[float(r[f"{n}_{c}"]) for n in NAMES for c in "xyz"] for r in rows]).reshape(24, 17, 3)
    assert np.abs(table - world).max() <= 0.005  # every joint of every frame, to the CSV's 0.01 mm
    assert "world frame: up is" in stdout and json.loads((out / "poses.json").read_text())["world"]["axes"]


def test_lift_without_out_writes_beside_its_input(trained_run, tmp_path, monkeypatch, capsys):
    _coco_video(tmp_path / "walk.json", frames=12)
    code, _, err = run_main(lift_cli, [str(tmp_path / "walk.json"), "--format", "coco", "--ckpt-dir", str(trained_run),
                                       "--image-size", "1920", "1080", "--hypo", "1", "--fast", "--draw", "none"],
                            monkeypatch, capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "walk_lifted").iterdir()) == ["poses.json", "poses.npz"]


@pytest.mark.parametrize("extra,message", [
    (["--world"], "at least 10 frames"),
    (["--export", "bvh,fbx"], "--export takes a comma-separated list of bvh, csv"),
    (["--export", "bvh"], "track 3 has one frame"),
    (["--export", "csv", "--fps", "0"], "--fps must be a number > 0 and <= 1000"),
    (["--best"], "--best needs --ckpt-dir"),
])
def test_export_bad_input(extra, message, trained_run, tmp_path, monkeypatch, capsys):
    """One line, exit 2, nothing written, the input unchanged."""
    _coco_video(tmp_path / "walk.json", frames=24)
    dets = json.loads((tmp_path / "walk.json").read_text())
    if message.startswith("at least 10"):
        (tmp_path / "walk.json").write_text(json.dumps(dets[:5]))
    if message.startswith("track 3"):
        (tmp_path / "walk.json").write_text(json.dumps(dets[:1]))
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    ckpt = [] if "--best" in extra else ["--ckpt-dir", str(trained_run)]
    code, _, err = run_main(lift_cli, [str(tmp_path / "walk.json"), "--format", "coco", *ckpt, "--image-size",
                                       "1920", "1080", "--hypo", "1", "--fast", "--draw", "none", "--out",
                                       str(tmp_path / "out"), *extra], monkeypatch, capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not any((tmp_path / "out").glob("*")) and {p: p.read_bytes() for p in before} == before


def test_an_unwritable_export_path_is_refused_before_lifting(trained_run, tmp_path, monkeypatch, capsys):
    _coco_video(tmp_path / "walk.json", frames=12)
    (tmp_path / "out" / "poses.csv").mkdir(parents=True)  # a folder where the CSV file goes
    code, _, err = run_main(lift_cli, [str(tmp_path / "walk.json"), "--format", "coco", "--ckpt-dir",
                                       str(trained_run), "--image-size", "1920", "1080", "--hypo", "1", "--fast",
                                       "--export", "csv", "--out", str(tmp_path / "out")], monkeypatch, capsys)
    assert code == 2 and "poses.csv is a folder" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["poses.csv"]


@pytest.mark.skipif(importlib.util.find_spec("bpy") is None,
                    reason="Blender's Python module is not installed (pip install bpy; Python 3.11)")
def test_blender_imports_the_bvh_with_the_same_joint_positions(tmp_path):
    """Blender's own BVH importer (Y up in the file, Z up in Blender, metres) puts every joint of a walk of constant
    bone lengths where the walk has it, within 1 mm."""
    import bpy

    from lib.bvh import BVH_OF_H36M

    world = _walk(20)  # world frame, Z up, mm
    (tmp_path / "walk.bvh").write_text(bvh_text(world @ WORLD_TO_BVH.T, fps=25.0))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=str(tmp_path / "walk.bvh"), global_scale=0.001, axis_forward="-Z", axis_up="Y",
                            update_scene_fps=False, use_fps_scale=False)
    arm = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
    for f in (0, 7, 19):
        bpy.context.scene.frame_set(f + 1)
        for j, name in BVH_OF_H36M.items():
            head = np.array(arm.matrix_world @ arm.pose.bones[name].head)  # metres, Blender's Z up
            assert np.abs(head * 1000.0 - world[f, j]).max() < 1.0, (f, name)
