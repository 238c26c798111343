"""Lifting keypoints of 2D detectors to 3D millimetres: readers and joint mapping on real CMU poses filmed by a
known camera, the unknown-camera path, video smoothing, the command line and its bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lib.api import PosePrior
from lib.errors import ToolkitError
from lib.lift import BODY25, COCO18, jitter, keypoints_from
from lib.lift import coco_from_h36m as to_coco
from lib.metrics import pa_mpjpe
from run import lift as lift_cli
from tests.helpers import GOLDEN, POSE, cmu_clip, coco_from_h36m, film, needs_cmu, run_main

KNOWN = [0, 1, 2, 3, 4, 5, 6, 9, 11, 12, 13, 14, 15, 16]  # counterparts in every format (8 is the neck / mid-shoulders)


def _coco_json(kps: np.ndarray, path, conf: np.ndarray | None = None, track: bool = False) -> None:
    conf = np.ones(kps.shape[:2]) if conf is None else conf
    dets = [{"image_id": t, "category_id": 1, "score": 0.9, **({"track_id": 7} if track else {}),
             "keypoints": np.concatenate([kps[t], conf[t][:, None]], -1).ravel().tolist()} for t in range(len(kps))]
    path.write_text(json.dumps(dets))


def _openpose(px: np.ndarray, layout: dict, folder, empty_frame: int | None = None) -> None:
    """One JSON per frame with the Human3.6M pixels written into the layout's joints (the rest not found)."""
    folder.mkdir()
    k = 25 if layout is BODY25 else 18
    for t in range(len(px)):
        kp = np.zeros((k, 3))
        for h, src in layout.items():
            if isinstance(src, int):
                kp[src] = [*px[t, h], 0.9]
        if layout is COCO18:  # the hips carry the pelvis as their midpoint
            kp[8], kp[11] = [*px[t, 1], 0.9], [*px[t, 4], 0.9]
        people = [] if t == empty_frame else [{"pose_keypoints_2d": kp.ravel().tolist()}]
        (folder / f"frame_{t:04d}_keypoints.json").write_text(json.dumps({"people": people}))


@needs_cmu
def test_every_format_maps_joints_to_the_right_side(tmp_path):
    world = cmu_clip("walking", 12)
    pose, px, intr = film(world)
    _coco_json(coco_from_h36m(pose, intr), tmp_path / "coco.json", track=True)
    np.save(tmp_path / "kps.npy", np.concatenate([px, np.ones(px.shape[:2] + (1,))], -1))
    _openpose(px, BODY25, tmp_path / "body25", empty_frame=3)
    _openpose(px, COCO18, tmp_path / "coco18")
    for fmt, path in (("coco", "coco.json"), ("h36m", "kps.npy"), ("openpose", "body25"), ("openpose", "coco18")):
        kps = keypoints_from(tmp_path / path, fmt)
        ok = kps.valid[:, 0]
        # (0.5 px: a midpoint of projections is not quite the projection of the midpoint)
        assert np.allclose(kps.xy[ok, 0][:, KNOWN], px[ok][:, KNOWN], atol=0.5), (fmt, path)
        if fmt != "h36m":
            assert (kps.conf[:, 0, [7, 10]] == 0).all()  # spine and head top have no counterpart
        # left joints on the subject's left: the left shoulder is further along the shoulder line than the right
        assert (kps.xy[ok, 0, 11, 0] - kps.xy[ok, 0, 14, 0]) @ (px[ok, 11, 0] - px[ok, 14, 0]) > 0
    assert keypoints_from(tmp_path / "coco.json", "coco").track[0, 0] == 7
    body25 = keypoints_from(tmp_path / "body25", "openpose")
    assert body25.empty_frames == 1 and not body25.valid[3].any() and body25.frames[0] == "frame_0000_keypoints"


@needs_cmu
def test_unknown_camera_and_video_smoothing_on_a_walking_clip(tmp_path):
    """P2 without intrinsics within 15 % of P2 with them; smoothing lowers the jitter without raising P2 > 5 %."""
    prior = PosePrior.from_checkpoint(GOLDEN / "prior_small.pth")
    pose, px, intr = film(cmu_clip("walking", 40))
    _coco_json(coco_from_h36m(pose, intr), tmp_path / "walk.json")
    gt = torch.from_numpy(pose).float()

    def p2(result) -> float:
        return float(pa_mpjpe(torch.from_numpy(result.pose3d[:, 0]).float(), gt).mean())

    known = prior.lift(tmp_path / "walk.json", "coco", camera=intr, fast=True)
    unknown = prior.lift(tmp_path / "walk.json", "coco", image_size=(1920, 1080), fast=True)
    assert not unknown.camera_given and unknown.camera[0] == 1920.0
    assert p2(unknown) < 1.15 * p2(known) and np.isfinite(known.pose3d).all()
    assert known.completed[:, 0, [7, 10]].all() and not known.completed[:, 0, KNOWN].any()
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
    coco = to_coco(kps)
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
    assert (z["uncertainty"] >= 0).all() and z["camera"][0] == 1280.0 and (z["root_depth"] > 0).all()
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
     ("--format", "coco"), "no person has 6 joints with confidence >= lift.min_conf"),
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
