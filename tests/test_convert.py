"""Data converters on small fixtures built in each source's exact layout, and on the real CMU pack."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from lib.bvh import bvh_positions, parse_bvh
from lib.camera import image_to_camera, project
from lib.convert import (
    H36M_17_OF_32,
    SH_CAMERAS,
    SH_FILE,
    Collector,
    bvh_to_h36m,
    convert_cmu,
    convert_h36m_h5,
    convert_videopose3d,
    h36m_cameras,
)
from lib.data import load_split
from lib.errors import ToolkitError
from lib.safe_pickle import load_pickle
from lib.skeleton import BONES
from tests.helpers import CMU_PACK, POSE, cmu_bvh_text, needs_cmu, run_module


def _sequence(n: int, shift: float = 0.0) -> np.ndarray:
    """n frames [n, 17, 3] walking along -Y."""
    return POSE[None] + np.arange(n)[:, None, None] * np.array([0.0, -20.0, 0.0]) + shift


def _as_32(world17: np.ndarray) -> np.ndarray:
    out = np.full((world17.shape[0], 32, 3), 9e4)  # joints that must not be picked are far away
    out[:, H36M_17_OF_32] = world17
    return out


def _check_rows(rows: list[dict]) -> None:
    """Round trip image -> camera frame, the box definition and the rows' own world poses."""
    img = np.stack([r["joint_3d_image"] for r in rows])
    cam_pose = np.stack([r["joint_3d_camera"] for r in rows])
    intr = np.array([[r["camera_param"][k] for k in ("fx", "fy", "cx", "cy")] for r in rows])
    box = np.stack([r["box"] for r in rows])
    depth = np.array([r["root_depth"] for r in rows])
    assert np.abs(image_to_camera(img, intr, box, depth) - cam_pose).max() < 1e-3
    root = cam_pose[:, 0]
    corners = project(np.stack([root - [1000, 1000, 0], root + [1000, 1000, 0]], 1), intr).reshape(-1, 4)
    assert np.allclose(box, corners)
    for r in rows[:8]:
        p = r["camera_param"]
        assert np.allclose(p["R"] @ (r["joints_3d"] - p["T"].ravel()).T, r["joint_3d_camera"].T)


def _camera_h5(path: Path, subjects: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """cameras.h5 in the 3d-pose-baseline layout; returns (world-to-camera R, centre) per camera."""
    cams = []
    with h5py.File(path, "w") as f:
        for s in subjects:
            for k in range(1, 5):
                azim = np.pi / 2 * k + 0.3
                centre = np.array([4000 * np.cos(azim), 4000 * np.sin(azim), 1500.0])
                fwd = -centre / np.linalg.norm(centre)
                right = np.cross(fwd, [0, 0, 1.0])
                right /= np.linalg.norm(right)
                rot = np.stack([right, np.cross(fwd, right), fwd])
                g = f.create_group(f"subject{s}/camera{k}")
                g["R"] = rot.T  # the stored R is the transpose of world-to-camera
                g["T"] = centre.reshape(3, 1)
                g["f"] = np.array([[1145.0], [1144.0]])
                g["c"] = np.array([[512.0], [515.0]])
                g["k"] = np.zeros((3, 1))
                g["p"] = np.zeros((2, 1))
                # the real file's dtypes: the camera id as float64 character codes [8, 1]
                g["Name"] = np.array([float(ord(ch)) for ch in SH_CAMERAS[k - 1]]).reshape(8, 1)
                cams.append((rot, centre))
    return cams


H36M_TO_SH = [3, 2, 1, 4, 5, 6, 0, 7, 8, 10, 16, 15, 14, 11, 12, 13]  # SH order: RFoot RKnee RHip LHip ... LWrist


def _h36m_h5(root: Path, detections: bool = False) -> list:
    """The 3d-pose-baseline layout; with detections, S*/StackedHourglass/<Action>[_k].<camera id>.h5 holding the
    exact projections in SH order (float64 [N, 16, 2]), S9's TakingPhoto missing for camera 1 (as S11 Directions)."""
    root.mkdir(parents=True)
    cams = _camera_h5(root / "cameras.h5", [1, 9])
    files = {1: {"Walking": 6, "Walking 1": 5, "Photo": 4}, 9: {"TakingPhoto 1": 3, "TakingPhoto": 4}}
    for s, seqs in files.items():
        folder = root / f"S{s}" / "MyPoses" / "3D_positions"
        folder.mkdir(parents=True)
        for name, n in seqs.items():
            with h5py.File(folder / f"{name}.h5", "w") as f:
                f["3D_positions"] = _as_32(_sequence(n)).reshape(n, 96).T  # (96, N)
            if not detections:
                continue
            (root / f"S{s}" / "StackedHourglass").mkdir(exist_ok=True)
            for k, cam_id in enumerate(SH_CAMERAS):
                if (s, name, k) == (9, "TakingPhoto", 0):
                    continue
                rot, centre = cams[(0 if s == 1 else 4) + k]
                uv = project(np.einsum("ij,nkj->nki", rot, _sequence(n) - centre), np.array([[1145.0, 1144.0, 512.0,
                                                                                              515.0]]))
                with h5py.File(root / f"S{s}" / "StackedHourglass" / f"{name.replace(' ', '_')}.{cam_id}.h5",
                               "w") as f:
                    f["poses"] = uv[:, H36M_TO_SH].astype(np.float64)
    return cams


def test_h36m_h5_converter(tmp_path):
    _h36m_h5(tmp_path / "src")
    col = Collector([1], [9])
    convert_h36m_h5(tmp_path / "src", col)
    files = col.write(tmp_path / "out", "h36m")
    train = load_pickle(files["train"])
    assert len(train) == (6 + 5 + 4) * 4 and len(load_pickle(files["test"])) == (3 + 4) * 4
    _check_rows(train)
    ids = {(r["action"], r["subaction"]) for r in train}
    assert ids == {(14, 1), (14, 2), (12, 1)}  # Walking < Walking 1; Photo
    first = train[0]
    assert first["cameraid"] == 0 and first["subject"] == 1
    assert np.allclose(first["joints_3d"], POSE) and first["joints_3d"][4, 0] > first["joints_3d"][1, 0]  # left: +X
    assert first["camera_param"]["name"] == "54138969"
    assert sorted({r["cameraid"] for r in train}) == [0, 1, 2, 3]
    data = load_split(tmp_path / "out", "h36m_train.pkl", "", "train", 1, use_gt_2d=True)
    assert len(data) == len(train) and set(data.action_name) == {"Walking", "Photo"}


def test_h36m_h5_stacked_hourglass_detections_are_row_aligned(tmp_path):
    _h36m_h5(tmp_path / "src", detections=True)
    col = Collector([1], [9])
    convert_h36m_h5(tmp_path / "src", col)
    files = col.write(tmp_path / "out", "h36m", SH_FILE)
    assert any("TakingPhoto" in n and "54138969" in n and "kept with confidence 0" in n for n in col.notes)
    gt = load_split(tmp_path / "out", "h36m_test.pkl", "", "test", 1, use_gt_2d=True)
    assert len(gt) == (3 * 4 + 4 * 4)  # ground-truth rows of the camera without a detections file are kept
    test = load_split(tmp_path / "out", "h36m_test.pkl", SH_FILE, "test", 1, use_gt_2d=False)
    assert len(test) == (3 * 4 + 4 * 3) and set(test.cameraid[test.subaction == 1]) == {1, 2, 3}  # left out ...
    assert test.note == "4 rows without detections left out"  # ... and said
    train = load_split(tmp_path / "out", "h36m_train.pkl", SH_FILE, "train", 1, use_gt_2d=False)
    for data in (train, test):
        proj = project(data.pose_cam, data.cam)
        keep = np.arange(17) != 9
        assert np.abs(data.det2d[:, keep] - proj[:, keep]).max() < 1e-6  # each row's own camera and frame
        assert np.allclose(data.det2d[:, 9], 0.5 * (proj[:, 8] + proj[:, 10]))
        assert (data.det_conf[:, 9] == 0).all() and (data.det_conf[:, keep] == 1).all()
    assert files["detections"].name == "h36m_sh_dt_ft.pkl"  # the one name, the paper's


def test_h36m_h5_bad_input(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ToolkitError, match="cameras.h5.*3D_positions"):
        convert_h36m_h5(empty, Collector([1], [9]))
    _h36m_h5(tmp_path / "src")
    bad = tmp_path / "src" / "S1" / "MyPoses" / "3D_positions"
    (bad / "Juggling.h5").write_bytes(b"")
    with pytest.raises(ToolkitError, match="unknown Human3.6M action 'Juggling'"):
        convert_h36m_h5(tmp_path / "src", Collector([1], [9]))
    (bad / "Juggling.h5").unlink()
    (bad / "Eating.h5").write_bytes(b"not an h5 file")
    with pytest.raises(ToolkitError, match="Eating.h5: cannot read"):
        convert_h36m_h5(tmp_path / "src", Collector([1], [9]))
    (bad / "Eating.h5").unlink()
    (tmp_path / "src" / "cameras.h5").unlink()
    with pytest.raises(ToolkitError, match="cameras file .* not found"):
        convert_h36m_h5(tmp_path / "src", Collector([1], [9]))


def test_prepare_data_cli_leaves_nothing_behind_on_failure(tmp_path):
    _h36m_h5(tmp_path / "src")
    (tmp_path / "src" / "S9" / "MyPoses" / "3D_positions" / "Sitting.h5").write_bytes(b"corrupt")
    res = run_module("run.prepare_data", "h36m-h5", "--root", str(tmp_path / "src"), "--out", str(tmp_path / "out"))
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2 and last.startswith("error:") and "Sitting.h5" in last
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*partial"))
    (tmp_path / "src" / "S9" / "MyPoses" / "3D_positions" / "Sitting.h5").unlink()
    res = run_module("run.prepare_data", "h36m-h5", "--root", str(tmp_path / "src"), "--out", str(tmp_path / "out"),
                     "--train-every", "2")
    assert res.returncode == 0, res.stderr
    assert "Walking" in res.stdout and "use_gt_2d=true" in res.stdout
    assert len(load_pickle(tmp_path / "out" / "h36m_train.pkl")) == (3 + 3 + 2) * 4


def _videopose3d(tmp_path: Path, joints_2d: int = 17, frames_2d: int = 5) -> tuple[Path, Path]:
    pos3d = {"S1": {"Walking": _as_32(_sequence(6)) / 1000.0, "Directions 1": _as_32(_sequence(4)) / 1000.0},
             "S9": {"WalkDog": _as_32(_sequence(3)) / 1000.0}}
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d=np.array(pos3d, dtype=object))
    pos2d = {}
    for s, acts in pos3d.items():
        pos2d[s] = {}
        for a, arr in acts.items():
            n = min(len(arr), frames_2d)
            pos2d[s][a] = [np.full((n, joints_2d, 2), 100.0 + c) for c in range(4)]
    np.savez(tmp_path / "data_2d_h36m_cpn.npz", positions_2d=np.array(pos2d, dtype=object),
             metadata=np.array({"num_joints": joints_2d}, dtype=object))
    return tmp_path / "data_3d_h36m.npz", tmp_path / "data_2d_h36m_cpn.npz"


def test_published_cameras_look_at_the_capture_area():
    """With the embedded calibration, a person at the centre of the room is in front of and inside every view."""
    for s in (1, 5, 6, 7, 8, 9, 11):
        for cam in h36m_cameras(s):
            p = cam.rot @ (np.array([0.0, 0.0, 900.0]) - cam.centre)
            uv = project(p[None, None], cam.intrinsics[None])[0, 0]
            assert 3000 < p[2] < 8000 and (0 < uv).all() and (uv < 1000).all()


def test_videopose3d_converter_with_detections(tmp_path):
    p3, p2 = _videopose3d(tmp_path)
    col = Collector([1], [9])
    convert_videopose3d(p3, col, p2)
    files = col.write(tmp_path / "out", "h36m", "h36m_cpn_dt.pkl")
    train = load_pickle(files["train"])
    assert len(train) == (5 + 4) * 4  # Walking: 6 frames of 3D, 5 of 2D -> 5
    assert any("truncated to 5" in n for n in col.notes)
    _check_rows(train)
    assert np.allclose(train[0]["joints_3d"], POSE, atol=1e-6)  # metres -> mm, the 17 joints in order
    assert {(r["action"], r["subaction"]) for r in train} == {(14, 1), (2, 1)}
    data = load_split(tmp_path / "out", "h36m_train.pkl", "h36m_cpn_dt.pkl", "train", 1, use_gt_2d=False)
    cams = [r["cameraid"] for r in train]
    assert np.allclose(data.det2d[:, 0, 0], 100.0 + np.array(cams))  # row-aligned with the camera views


def test_videopose3d_16_joint_detections_and_bad_input(tmp_path):
    p3, p2 = _videopose3d(tmp_path, joints_2d=16)
    col = Collector([1], [9])
    convert_videopose3d(p3, col, p2)
    det = col.splits["train"].det[0]
    assert det.shape[1:] == (17, 2) and (col.splits["train"].conf[0][:, 9] == 0).all()
    p3, p2 = _videopose3d(tmp_path, joints_2d=15)
    with pytest.raises(ToolkitError, match="15 joints"):
        convert_videopose3d(p3, Collector([1], [9]), p2)
    (tmp_path / "broken.npz").write_bytes(b"PK garbage")
    with pytest.raises(ToolkitError, match="broken.npz"):
        convert_videopose3d(tmp_path / "broken.npz", Collector([1], [9]))
    np.savez(tmp_path / "evil.npz", positions_3d=np.array({"S1": {"Walking": Path("x")}}, dtype=object))
    with pytest.raises(ToolkitError, match="refusing to unpickle"):
        convert_videopose3d(tmp_path / "evil.npz", Collector([1], [9]))





def test_bvh_forward_kinematics_and_joint_mapping(tmp_path):
    path = tmp_path / "131_02.bvh"
    path.write_text(cmu_bvh_text())
    bvh = parse_bvh(path)
    assert bvh.motion.shape == (2, 60) and bvh.channels[bvh.names.index("LeftShoulder")][1] == "Xrotation"
    pos = bvh_positions(bvh)
    elbow, shoulder = (pos[:, bvh.names.index(n)] for n in ("LeftElbow", "LeftShoulder"))
    # frame 1: R_root = Ry(90) maps the offset (3, 0, 0) to (0, 0, -3); the shoulder's R = Rz(90) Rx(90) sends
    # its child offset (0, -4, 0) to (0, 0, -4) in the shoulder's parent frame, then Ry(90) to (-4, 0, 0).
    assert np.allclose(shoulder[1] - pos[1, bvh.names.index("Chest2")], [0, 0, -3])
    assert np.allclose(elbow[1] - shoulder[1], [-4, 0, 0])
    world = bvh_to_h36m(path, step=1)  # mm, Z up
    unit = 25.4 / 0.45
    rest = world[0]
    assert np.allclose(rest[0], [0, 0, 16 * unit])  # pelvis: midpoint of the hip joints
    assert np.allclose(rest[4] - rest[1], [4 * unit, 0, 0])  # left hip at +x: CMU's left, facing +z (-Y here)
    assert np.allclose(rest[10], [0, 0, (17 + 10) * unit])  # head top: end site of Head
    assert rest[3, 2] < rest[2, 2] < rest[1, 2]  # ankle below knee below hip
    for a, b in BONES:
        assert np.linalg.norm(rest[a] - rest[b]) > 0


def test_bvh_bad_input(tmp_path):
    (tmp_path / "bad.bvh").write_text("HIERARCHY\nROOT Hips\n{ OFFSET 0 0")
    with pytest.raises(ToolkitError, match="bad.bvh: not a valid BVH"):
        parse_bvh(tmp_path / "bad.bvh")
    (tmp_path / "other.bvh").write_text(cmu_bvh_text().replace("LeftKnee", "LKnee"))
    with pytest.raises(ToolkitError, match="lacks joint.*LeftKnee"):
        bvh_to_h36m(tmp_path / "other.bvh")


def test_cmu_bvh_with_virtual_cameras(tmp_path):
    for name in ("131_01", "132_01"):
        (tmp_path / f"{name}.bvh").write_text(cmu_bvh_text())
    col = Collector([], [])
    convert_cmu(col, sorted(tmp_path.glob("*.bvh")), None, seed=0, bvh_step=1, test_subjects=[132])
    files = col.write(tmp_path / "out", "cmu")
    train, test = load_pickle(files["train"]), load_pickle(files["test"])
    assert len(train) == len(test) == 2 * 4
    _check_rows(train + test)
    assert {r["subject"] for r in test} == {132} and train[0]["action_name"] == "cmu 131_01"
    depth = np.array([r["root_depth"] for r in train])
    assert (depth > 3500).all() and (depth < 6000).all()


@needs_cmu
def test_real_cmu_pack_and_bvh(tmp_path):
    col = Collector([], [])
    convert_cmu(col, sorted((CMU_PACK.parent / "bvh").glob("*.bvh")), CMU_PACK, seed=0)
    rows = col.splits["train"].rows
    pack = [r for r in rows if r["subject"] == 0]
    bvh = [r for r in rows if r["subject"] == 131]
    assert len(pack) == 13452 * 4 and len(col.splits["test"].rows) == 3528 * 4
    _check_rows(pack[::97] + bvh[::31])
    cam = np.stack([r["joint_3d_camera"] for r in pack[::50]])
    thigh = np.linalg.norm(cam[:, 2] - cam[:, 1], axis=-1)
    assert np.allclose(thigh, 428.3, atol=1.0)  # the pack README's right hip-knee length
    # BVH subject 131: knees point forward, so "forward" is the knee's offset from the hip-ankle line and
    # left = up x forward (Z up); the labelled left hip must be on that side.
    world = np.stack([r["joints_3d"] for r in bvh if r["cameraid"] == 0])
    fwd = sum(world[:, k] - 0.5 * (world[:, h] + world[:, a]) for h, k, a in ((1, 2, 3), (4, 5, 6)))
    fwd[:, 2] = 0.0
    bent = np.linalg.norm(fwd, axis=-1) > 30.0
    side = ((world[:, 4] - world[:, 1]) * np.cross([0.0, 0.0, 1.0], fwd)).sum(-1)
    assert bent.mean() > 0.9 and (side[bent] > 0).mean() > 0.99
    heights = world[:, 10, 2] - world[:, [3, 6], 2].min(-1)
    assert 1200 < np.median(heights) < 1800  # standing height, ankle to head top (CMU subjects ~1.4 m)
