"""Lifting keypoints of 2D detectors to 3D millimetres: readers and joint mapping checked against the formats'
documented joint names, lifting against estimation on the same rows, the unknown-camera path, video smoothing, the
command line and its bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lib.api import PosePrior
from lib.builders import frames_of
from lib.data import load_data
from lib.errors import ToolkitError
from lib.keypoints import keypoints_from
from lib.metrics import mpjpe, pa_mpjpe
from lib.video import jitter
from run import lift as lift_cli
from tests.helpers import GOLDEN, POSE, cmu_clip, film, needs_cmu, run_main

# The formats' joints as their documentation names them (COCO keypoints; OpenPose's output doc for BODY_25 and
# COCO-18), and Human3.6M's 17 (docs/design.md, 'Skeleton'). The expected mapping is written by name here, not
# taken from the library.
COCO = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
        "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
        "right_ankle"]
BODY_25 = ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
           "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "right_eye",
           "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe", "left_heel", "right_big_toe",
           "right_small_toe", "right_heel"]
COCO_18 = ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
           "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye",
           "right_ear", "left_ear"]
H36M = ["pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "spine", "thorax",
        "neck_nose", "head_top", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
        "right_wrist"]
SAME_NAME = {j: j for j in ("right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
                            "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
                            "right_wrist")}
# Human3.6M joint <- source joint names (a pair: their midpoint); missing: no counterpart
EXPECTED = {
    "coco": SAME_NAME | {"pelvis": ("left_hip", "right_hip"), "thorax": ("left_shoulder", "right_shoulder"),
                         "neck_nose": "nose"},
    "body25": SAME_NAME | {"pelvis": "mid_hip", "thorax": "neck", "neck_nose": "nose"},
    "coco18": SAME_NAME | {"pelvis": ("left_hip", "right_hip"), "thorax": "neck", "neck_nose": "nose"},
}


def _to_coco(h36m_px: np.ndarray) -> np.ndarray:
    """COCO-17 pixels [T, 17, 2] from Human3.6M ones, by name; the eyes and ears around the nose."""
    out = np.zeros(h36m_px.shape[:-2] + (17, 2))
    for k, name in enumerate(COCO):
        if name in SAME_NAME:
            out[..., k, :] = h36m_px[..., H36M.index(name), :]
        else:  # nose, and the eyes and ears a little to its sides
            side = {"left_eye": 8, "right_eye": -8, "left_ear": 16, "right_ear": -16}.get(name, 0)
            out[..., k, :] = h36m_px[..., H36M.index("neck_nose"), :] + np.array([side, -5.0 * bool(side)])
    return out


def _coco_json(kps: np.ndarray, path, conf: np.ndarray | None = None, track: bool = False) -> None:
    conf = np.ones(kps.shape[:2]) if conf is None else conf
    dets = [{"image_id": t, "category_id": 1, "score": 0.9, **({"track_id": 7} if track else {}),
             "keypoints": np.concatenate([kps[t], conf[t][:, None]], -1).ravel().tolist()} for t in range(len(kps))]
    path.write_text(json.dumps(dets))


def _distinct_pixels(names: list[str]) -> np.ndarray:
    """A different pixel for every source joint [K, 2]."""
    return np.stack([100.0 + 37.0 * np.arange(len(names)), 900.0 - 23.0 * np.arange(len(names))], -1)


def _expected(names: list[str], layout: str) -> tuple[np.ndarray, np.ndarray]:
    """Human3.6M pixels [17, 2] (NaN where missing) and which joints exist, from the names alone."""
    px = _distinct_pixels(names)
    out, has = np.full((17, 2), np.nan), np.zeros(17, bool)
    for j, name in enumerate(H36M):
        src = EXPECTED[layout].get(name)
        if src is not None:
            pair = (src, src) if isinstance(src, str) else src
            out[j], has[j] = 0.5 * (px[names.index(pair[0])] + px[names.index(pair[1])]), True
    return out, has


def test_formats_map_joints_by_their_documented_names(tmp_path):
    triples = lambda px: np.concatenate([px, np.full((len(px), 1), 0.9)], -1).ravel().tolist()  # noqa: E731
    coco = [{"image_id": 3, "category_id": 1, "score": 0.9, "track_id": "7",
             "keypoints": triples(_distinct_pixels(COCO))}]
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    for layout, names in (("body25", BODY_25), ("coco18", COCO_18)):
        (tmp_path / layout).mkdir()
        people = {"people": [{"pose_keypoints_2d": triples(_distinct_pixels(names))}]}
        (tmp_path / layout / "f_0000_keypoints.json").write_text(json.dumps(people))
        (tmp_path / layout / "f_0001_keypoints.json").write_text(json.dumps({"people": []}))
    for path, fmt, layout, names in (("coco.json", "coco", "coco", COCO), ("body25", "openpose", "body25", BODY_25),
                                     ("coco18", "openpose", "coco18", COCO_18)):
        kps = keypoints_from(tmp_path / path, fmt)
        want, has = _expected(names, layout)
        assert np.allclose(kps.xy[0, 0][has], want[has]), layout
        assert (kps.conf[0, 0][~has] == 0).all() and (kps.conf[0, 0][has] == 0.9).all(), layout
        assert [H36M[j] for j in np.flatnonzero(~has)] == ["spine", "head_top"]
        assert kps.kinds[7] == kps.kinds[10] == "absent" and kps.kinds[2] == "same", layout
    assert keypoints_from(tmp_path / "coco.json", "coco").track[0, 0] == 7  # a track id written as a string
    body25 = keypoints_from(tmp_path / "body25", "openpose")
    assert body25.empty_frames == 1 and not body25.valid[1].any() and body25.frames[0] == "f_0000_keypoints"


def test_stacked_hourglass_spine_and_neck_are_not_given_to_the_network():
    """The declared kinds decide what the network sees: Stacked Hourglass's spine is another point and its
    neck/nose made up; both are unseen however confident, like a joint below the confidence threshold."""
    kps = keypoints_from(np.concatenate([_frames(2), np.ones((2, 17, 1))], -1), "sh")
    kps.conf[1, 0, 13] = 0.1
    seen = kps.usable(0.3)[:, 0]
    assert [H36M[j] for j in np.flatnonzero(~seen[0])] == ["spine", "neck_nose"]
    assert not seen[1, 13] and seen[1].sum() == 14


@pytest.fixture(scope="module")
def golden_prior():
    prior = PosePrior.from_checkpoint(GOLDEN / "prior_small.pth")
    prior.config.lift.hypotheses = 1
    return prior


def test_lifting_equals_estimation_on_the_same_rows(golden_prior, data_root):
    """The embedded test split's 2D lifted with each camera's own intrinsics gives est's 3D (same sampler, same
    initial states): P1 within 1 % with the true root depth; without a camera (default intrinsics of a 1000 x 1000
    image), P2 within 2 %."""
    prior = golden_prior
    config = prior.config.copy_and_resolve_references()
    config.data.root, config.data.use_gt_2d = str(data_root), True
    config.data.test_file = "synthetic_test.pkl"
    data, frames = load_data(config, "test"), frames_of(config)
    res = {"est": [], "lift": [], "est_p2": [], "lift_p2": []}
    for cid in np.unique(data.cameraid):
        sub = data.subset(np.flatnonzero(data.cameraid == cid))
        gt = torch.from_numpy(sub.pose_cam).float()
        est = prior.estimate(frames.normalise(sub.pose_img[..., :2].copy()), pflow=True, fast=True)[:, 0]
        est_mm = sub.rows.network_to_camera(torch.from_numpy(est) * frames.scale, frames)
        kps = sub.pose_img[:, None, :, :2]
        lifted = prior.lift(kps, "h36m", camera=sub.cam[0], root_depth=sub.root_depth).pose3d[:, 0]
        blind = prior.lift(kps, "h36m", image_size=(1000, 1000)).pose3d[:, 0]
        res["est"].append(float(mpjpe(est_mm, gt).mean()))
        res["lift"].append(float(mpjpe(torch.from_numpy(lifted).float(), gt).mean()))
        res["est_p2"].append(float(pa_mpjpe(est_mm, gt).mean()))
        res["lift_p2"].append(float(pa_mpjpe(torch.from_numpy(blind).float(), gt).mean()))
    m = {k: np.mean(v) for k, v in res.items()}
    assert abs(m["lift"] / m["est"] - 1) < 0.01 and abs(m["lift_p2"] / m["est_p2"] - 1) < 0.02, m


def test_lifting_equals_estimation_pose_by_pose_for_any_intrinsics_and_finds_the_depth(golden_prior, data_root):
    """Pose by pose: with the true camera and root depth, the lifted poses lie within a tenth of est's own error of
    est's poses on average (measured 5.5 %) and each within 0.35 of it (measured at most 0.19): the network sees
    the rays through the training cameras' median intrinsics, 0.4 % from each row's. Filmed by a camera far from
    the training median (focal length x 2, principal point 200 px off), the same 3D gives the same rays, so the
    lift must not move (1e-6 mm). Without the depth, the one found from bone lengths is within 5 % of the true
    one in the median row (measured 2.7 %) and 15 % in the worst (8.8 %; the synthetic subjects' sizes vary by
    +-8 %)."""
    from lib.camera import project

    prior = golden_prior
    config = prior.config.copy_and_resolve_references()
    config.data.root, config.data.use_gt_2d = str(data_root), True
    config.data.test_file = "synthetic_test.pkl"
    data, frames = load_data(config, "test"), frames_of(config)
    sub = data.subset(np.flatnonzero(data.cameraid == data.cameraid[0]))
    est = prior.estimate(frames.normalise(sub.pose_img[..., :2].copy()), pflow=True, fast=True)[:, 0]
    est_mm = sub.rows.network_to_camera(torch.from_numpy(est) * frames.scale, frames).numpy()
    lifted = prior.lift(sub.pose_img[:, None, :, :2], "h36m", camera=sub.cam[0], root_depth=sub.root_depth).pose3d
    own_error = np.linalg.norm(est_mm - sub.pose_cam, axis=-1).mean()
    assert np.linalg.norm(lifted[:, 0] - est_mm, axis=-1).mean(1).max() < 0.35 * own_error  # every pose
    assert np.linalg.norm(lifted[:, 0] - est_mm, axis=-1).mean() < 0.1 * own_error
    far = sub.cam[0] * np.array([2.0, 2.0, 1.0, 1.0]) + np.array([0.0, 0.0, 200.0, 200.0])
    px = project(sub.pose_cam, np.broadcast_to(far, (len(sub.pose_cam), 4)))
    moved = prior.lift(px[:, None], "h36m", camera=far, root_depth=sub.root_depth).pose3d
    assert np.abs(moved - lifted).max() < 1e-6
    depth = prior.lift(sub.pose_img[:, None, :, :2], "h36m", camera=sub.cam[0]).root_depth[:, 0]
    rel = np.abs(depth / sub.root_depth - 1)
    assert np.median(rel) < 0.05 and rel.max() < 0.15, (np.median(rel), rel.max())


@needs_cmu
def test_unknown_camera_and_video_smoothing_on_a_walking_clip(tmp_path):
    """P2 without intrinsics within 15 % of P2 with them; smoothing lowers the jitter without raising P2 > 5 %."""
    prior = PosePrior.from_checkpoint(GOLDEN / "prior_small.pth")
    known_joints = [0, 1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 15, 16]
    pose, px, intr = film(cmu_clip("walking", 40))
    _coco_json(_to_coco(px), tmp_path / "walk.json")
    gt = torch.from_numpy(pose).float()

    def p2(result) -> float:
        return float(pa_mpjpe(torch.from_numpy(result.pose3d[:, 0]).float(), gt).mean())

    known = prior.lift(tmp_path / "walk.json", "coco", camera=intr, fast=True)
    unknown = prior.lift(tmp_path / "walk.json", "coco", image_size=(1920, 1080), fast=True)
    assert not unknown.camera_given and unknown.camera[0] == 1920.0
    assert p2(unknown) < 1.15 * p2(known) and np.isfinite(known.pose3d).all()
    assert known.completed[:, 0, [7, 10]].all() and not known.completed[:, 0, known_joints].any()
    assert 0.8 * pose[:, 0, 2].mean() < np.nanmedian(known.root_depth) < 1.3 * pose[:, 0, 2].mean()
    prior.config.lift.smooth = True
    smooth = prior.lift(tmp_path / "walk.json", "coco", camera=intr, fast=True)
    assert jitter(smooth.pose3d[:, 0], smooth.valid[:, 0]) < 0.5 * jitter(known.pose3d[:, 0], known.valid[:, 0])
    assert p2(smooth) < 1.05 * p2(known)


def _frames(n: int = 5) -> np.ndarray:
    """A standing person [n, 17, 2] in pixels, walking to the right."""
    uv = POSE[:, [0, 2]] * np.array([0.25, -0.25]) + np.array([600.0, 700.0])
    return uv[None] + np.arange(n)[:, None, None] * np.array([5.0, 0.0])


def _lift(argv, monkeypatch, capsys) -> tuple[int, str, str]:
    return run_main(lift_cli, argv, monkeypatch, capsys)


def test_lift_command_writes_poses_and_a_picture(trained_run, tmp_path, monkeypatch, capsys):
    kps = _frames()
    kps[2, 13] = 0.0  # a wrist the detector lost: (0, 0, 0)
    conf = np.ones(kps.shape[:2])
    conf[2, 13] = 0.0
    coco = _to_coco(kps)
    coco_conf = np.ones((5, 17))
    coco_conf[2, 9] = 0.0  # COCO left wrist (Human3.6M 13)
    _coco_json(coco, tmp_path / "det.json", coco_conf)
    out = tmp_path / "lifted"
    code, stdout, err = _lift([str(tmp_path / "det.json"), "--format", "coco", "--ckpt-dir", str(trained_run),
                               "--image-size", "1280", "720", "--hypo", "2", "--fast", "--out", str(out)],
                              monkeypatch, capsys)
    assert code == 0, err
    z = np.load(out / "poses.npz")
    assert z["pose3d"].shape == (5, 1, 17, 3) and np.isfinite(z["pose3d"]).all()
    assert z["completed"][2, 0, 13] and not z["completed"][1, 0, 13] and z["completed"][:, 0, 7].all()
    assert np.isfinite(z["uncertainty"]).all() and z["camera"][0] == 1280.0 and (z["root_depth"] > 0).all()
    report = json.loads((out / "poses.json").read_text())
    assert len(report["frames"]) == 5 and len(report["frames"][0]["people"][0]["pose3d_mm"]) == 17
    assert (out / "poses.png").is_file() and "5 people in 5 frames" in stdout
    from run import visualize

    code, stdout, err = run_main(visualize, ["--input", str(out / "poses.npz"), "--out", str(out / "video.gif")],
                                 monkeypatch, capsys)
    assert code == 0 and "5 frames" in stdout, err  # the video frames, the 2D input beside the 3D


@pytest.mark.parametrize("write,args,message", [
    (lambda p: p.write_text("[{"), ("--format", "coco"), "not valid JSON"),
    (lambda p: p.write_text(json.dumps([{"image_id": 1, "keypoints": [1, 2, 3]}])), ("--format", "coco"),
     "3 keypoint numbers; expected 51"),
    (lambda p: p.write_text(json.dumps({"people": [{"pose_keypoints_2d": [0] * 30}]})), ("--format", "openpose"),
     "30 keypoint numbers; expected 75 or 54"),
    (lambda p: p.write_text(json.dumps([{"image_id": 1, "keypoints": [100, 100, 0.01] * 17}])),
     ("--format", "coco"), "no person has 6 usable joints"),
    (lambda p: p.write_text("[]"), ("--format", "magic"), "argument --format: invalid choice"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros((3, 16, 2))), ("--format", "h36m"),
     "expected numbers [T, 17, 2]"),
    (lambda p: p.write_text(json.dumps([{"image_id": 1, "keypoints": [100, 100, 1] * 17}])), ("--format", "coco"),
     "no camera and no image size"),
])
def test_lift_bad_input(write, args, message, trained_run, tmp_path, monkeypatch, capsys):
    path = tmp_path / "input.json"
    write(path)
    if "h36m" in args:
        path = path.with_suffix(".npy")
    out = tmp_path / "out"
    extra = [] if message.startswith("no camera") else ["--image-size", "1000", "1000"]
    code, _, err = _lift([str(path), *args, "--ckpt-dir", str(trained_run), "--out", str(out), *extra], monkeypatch,
                         capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (out / "poses.npz").exists()


def test_api_lift_from_an_array_and_bad_camera(trained_run):
    prior = PosePrior.from_checkpoint(trained_run, best=False)
    prior.config.lift.hypotheses = 1
    res = prior.lift(_frames(3), "h36m", camera=(1000.0, 1000.0, 640.0, 360.0), fast=True)
    assert res.pose3d.shape == (3, 1, 17, 3) and res.camera_given and (res.uncertainty == 0).all()
    with pytest.raises(ToolkitError, match="camera must be"):
        prior.lift(_frames(3), "h36m", camera=(0.0, 1000.0, 640.0, 360.0))
    with pytest.raises(ToolkitError, match="keypoints array of shape"):
        prior.lift(np.zeros((3, 5, 2)), "coco")
