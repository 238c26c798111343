"""Embedded default dataset: seeded, anatomically plausible synthetic poses in the H36M-Toolbox layout.

Poses come from forward kinematics with per-subject bone lengths near Human3.6M's, joint-angle limits
and left/right symmetric skeletons; each of the 15 Human3.6M actions mixes a few posture families
(standing, walking, sitting, crouching, bending, reaching, arms raised, hand to head, gesturing).
Every pose is seen by four cameras placed like Human3.6M's, with the official intrinsics.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lib.camera import Camera, look_at, project
from lib.data import ACTIONS, TEST_SUBJECTS, TRAIN_SUBJECTS, camera_rows
from lib.io import check_writable, refuse_existing, staging, write_json
from lib.safe_pickle import save_pickle

# Mean Human3.6M bone lengths in mm (17-joint skeleton).
BONE_MM = {"hip": 132.9, "thigh": 442.9, "shin": 454.2, "spine": 233.4, "thorax": 257.1, "neck": 121.1,
           "head": 115.0, "shoulder": 151.0, "upper_arm": 278.9, "forearm": 251.7}
# Human3.6M intrinsics (fx, fy, cx, cy) of cameras 54138969, 55011271, 58860488, 60457274 and the
# approximate camera centres (mm, world frame, Z up) of subject 1's calibration.
CAMERA_INTRINSICS = np.array([[1145.05, 1143.78, 512.54, 515.45], [1149.68, 1147.59, 508.85, 508.06],
                              [1149.14, 1148.80, 519.82, 501.40], [1145.51, 1144.77, 514.97, 501.88]])
CAMERA_CENTRES = np.array([[1841.1, 4955.3, 1563.4], [1761.3, -5078.0, 1606.3],
                           [-1846.8, 5215.0, 1491.0], [-1794.8, -3722.7, 1574.9]])
ANKLE_HEIGHT = 90.0  # mm above the floor
# Posture families per action id (sampled uniformly per frame).
ACTION_FAMILIES = {
    2: ("stand", "reach"), 3: ("gesture", "stand"), 4: ("sit", "hand_to_head"), 5: ("wave", "stand"),
    6: ("hand_to_head", "walk_slow"), 7: ("arms_up", "wide_stance"), 8: ("bend", "reach"), 9: ("sit",),
    10: ("sit_deep", "crouch"), 11: ("hand_to_head", "stand"), 12: ("photo",), 13: ("stand", "hands_on_hips"),
    14: ("walk",), 15: ("walk", "arm_forward"), 16: ("walk",),
}


def _rot_x(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _rot_y(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rot_z(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _apply(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors: r [N, 3, 3], v [N, 3] or [3] -> [N, 3]."""
    return np.einsum("nij,nj->ni", r, np.broadcast_to(v, (r.shape[0], 3)))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def subject_bones(subject: int, seed: int) -> dict[str, np.ndarray]:
    """Per-subject bone lengths: overall scale U(0.92, 1.08), per-bone jitter 3 %, tiny L/R asymmetry."""
    rng = np.random.default_rng([seed, subject])
    scale = rng.uniform(0.92, 1.08)
    bones = {}
    for name, mm in BONE_MM.items():
        length = mm * scale * rng.normal(1.0, 0.03)
        bones[name] = length * np.array([1.0 + rng.normal(0, 0.005), 1.0])  # [right, left]
    return bones


def _base_params(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Relaxed standing; angles in radians. Legs/arms are [N, 2] = (right, left)."""
    u = rng.uniform
    return {
        "trunk_flex": rng.normal(0.03, 0.05, n), "trunk_lat": rng.normal(0, 0.04, n),
        "trunk_twist": rng.normal(0, 0.08, n), "upper_flex": rng.normal(0.02, 0.04, n),
        "neck_flex": rng.normal(0.1, 0.12, n), "neck_yaw": rng.normal(0, 0.25, n),
        "hip_flex": rng.normal(0, 0.06, (n, 2)), "hip_abd": u(0.0, 0.1, (n, 2)), "knee": u(0.0, 0.15, (n, 2)),
        "arm_elev": u(0.05, 0.35, (n, 2)), "arm_azim": u(-0.2, 0.9, (n, 2)), "elbow": u(0.05, 0.6, (n, 2)),
    }


def _walk(p: dict[str, np.ndarray], i: np.ndarray, rng: np.random.Generator, amp: float) -> None:
    """Legs in a walking cycle of amplitude amp, arms swinging against them."""
    k, u = len(i), rng.uniform
    phase = u(0, 2 * np.pi, k)
    swing = amp * np.stack([np.sin(phase), -np.sin(phase)], -1)  # [k, 2]
    p["hip_flex"][i] = swing
    p["knee"][i] = 0.1 + 0.6 * np.clip(np.stack([np.cos(phase), -np.cos(phase)], -1), 0, None)
    arm = -0.8 * swing  # arms swing against the legs
    p["arm_elev"][i] = np.abs(arm) + 0.05
    p["arm_azim"][i] = np.where(arm >= 0, np.pi / 2, -np.pi / 2)
    p["elbow"][i] = u(0.2, 0.6, (k, 2))
    p["trunk_flex"][i] = u(0.0, 0.12, k)


def _sit(p: dict[str, np.ndarray], i: np.ndarray, rng: np.random.Generator, deep: bool) -> None:
    k, u = len(i), rng.uniform
    p["hip_flex"][i] = u(1.3, 1.7, (k, 2)) + (0.25 if deep else 0.0)
    p["knee"][i] = u(1.2, 1.9, (k, 2))
    p["hip_abd"][i] = u(0.0, 0.3, (k, 2))
    p["trunk_flex"][i] = u(-0.15, 0.3, k) + (0.4 if deep else 0.0)
    p["arm_elev"][i] = u(0.3, 0.8, (k, 2))
    p["arm_azim"][i] = u(1.0, 1.6, (k, 2))
    p["elbow"][i] = u(0.8, 1.7, (k, 2))


def _family(p: dict[str, np.ndarray], name: str, i: np.ndarray, rng: np.random.Generator) -> None:
    """Overwrite the parameters of rows i with a posture family."""
    k, u = len(i), rng.uniform
    side = rng.integers(0, 2, k)  # which arm acts in one-armed families

    def one_arm(elev, azim, elbow):
        p["arm_elev"][i, side] = u(*elev, k)
        p["arm_azim"][i, side] = u(*azim, k)
        p["elbow"][i, side] = u(*elbow, k)

    if name in ("walk", "walk_slow"):
        _walk(p, i, rng, 0.4 if name == "walk" else 0.25)
    elif name in ("sit", "sit_deep"):
        _sit(p, i, rng, name == "sit_deep")
    elif name == "crouch":
        p["hip_flex"][i] = u(1.6, 2.2, (k, 2))
        p["knee"][i] = u(1.8, 2.4, (k, 2))
        p["trunk_flex"][i] = u(0.4, 0.9, k)
        p["arm_elev"][i] = u(0.6, 1.2, (k, 2))
        p["arm_azim"][i] = u(1.2, 1.6, (k, 2))
        p["elbow"][i] = u(0.3, 1.2, (k, 2))
    elif name == "bend":
        p["trunk_flex"][i] = u(0.6, 1.3, k)
        p["hip_flex"][i] = u(0.0, 0.3, (k, 2))
        p["knee"][i] = u(0.0, 0.4, (k, 2))
        p["arm_elev"][i] = p["trunk_flex"][i, None] + rng.normal(0, 0.2, (k, 2))  # arms hang
        p["arm_azim"][i] = u(1.3, 1.7, (k, 2))
    elif name == "reach":
        one_arm((1.1, 2.2), (0.5, 1.6), (0.0, 0.4))
        p["trunk_flex"][i] = u(0.0, 0.5, k)
    elif name == "arms_up":
        p["arm_elev"][i] = u(2.1, 2.9, (k, 2))
        p["arm_azim"][i] = u(-0.3, 0.8, (k, 2))
        p["elbow"][i] = u(0.0, 0.6, (k, 2))
    elif name == "wide_stance":
        p["hip_abd"][i] = u(0.2, 0.45, (k, 2))
        p["knee"][i] = u(0.1, 0.6, (k, 2))
        p["arm_elev"][i] = u(1.2, 1.7, (k, 2))
        p["arm_azim"][i] = u(-0.3, 0.3, (k, 2))
    elif name == "hand_to_head":
        one_arm((0.4, 0.9), (0.9, 1.5), (2.0, 2.45))
    elif name == "wave":
        one_arm((2.0, 2.8), (-0.2, 0.8), (0.3, 1.3))
    elif name == "gesture":
        p["arm_elev"][i] = u(0.2, 0.9, (k, 2))
        p["arm_azim"][i] = u(0.6, 1.6, (k, 2))
        p["elbow"][i] = u(0.6, 1.7, (k, 2))
    elif name == "photo":
        p["arm_elev"][i] = u(0.9, 1.4, (k, 2))
        p["arm_azim"][i] = u(1.2, 1.6, (k, 2))
        p["elbow"][i] = u(1.7, 2.3, (k, 2))
        p["neck_flex"][i] = u(-0.1, 0.1, k)
    elif name == "hands_on_hips":
        p["arm_elev"][i] = u(0.3, 0.6, (k, 2))
        p["arm_azim"][i] = u(-0.9, -0.4, (k, 2))
        p["elbow"][i] = u(1.4, 1.9, (k, 2))
    elif name == "arm_forward":
        one_arm((0.5, 1.0), (1.2, 1.6), (0.1, 0.5))
    elif name != "stand":
        raise ValueError(f"unknown posture family {name}")


def forward_kinematics(p: dict[str, np.ndarray], bones: dict[str, np.ndarray]) -> np.ndarray:
    """Joint positions [N, 17, 3] in a body frame (mm, Z up, facing +Y, subject's right = +X, pelvis at 0)."""
    n = p["trunk_flex"].shape[0]
    pose = np.zeros((n, 17, 3))
    trunk = _rot_z(p["trunk_twist"]) @ _rot_x(-p["trunk_flex"]) @ _rot_y(p["trunk_lat"])
    upper = trunk @ _rot_x(-p["upper_flex"])
    head = upper @ _rot_z(p["neck_yaw"]) @ _rot_x(-p["neck_flex"])
    pose[:, 7] = _apply(trunk, np.array([0, 0, bones["spine"][0]]))
    pose[:, 8] = pose[:, 7] + _apply(upper, np.array([0, 0, bones["thorax"][0]]))
    pose[:, 9] = pose[:, 8] + _apply(head, _unit(np.array([0, 0.35, 0.94])) * bones["neck"][0])
    pose[:, 10] = pose[:, 9] + _apply(head, _unit(np.array([0, -0.25, 0.97])) * bones["head"][0])
    for k, (s, hip, knee, ankle, sho, elb, wri) in enumerate(((1.0, 1, 2, 3, 14, 15, 16),
                                                              (-1.0, 4, 5, 6, 11, 12, 13))):
        flex, abd, kn = p["hip_flex"][:, k], p["hip_abd"][:, k], p["knee"][:, k]
        pose[:, hip] = np.array([s * bones["hip"][k], 0, 0])
        thigh = np.stack([s * np.sin(abd), np.sin(flex) * np.cos(abd), -np.cos(flex) * np.cos(abd)], -1)
        shin = np.stack([s * np.sin(abd), np.sin(flex - kn) * np.cos(abd), -np.cos(flex - kn) * np.cos(abd)], -1)
        pose[:, knee] = pose[:, hip] + thigh * bones["thigh"][k]
        pose[:, ankle] = pose[:, knee] + shin * bones["shin"][k]
        pose[:, sho] = pose[:, 8] + _apply(upper, _unit(np.array([s * 0.97, 0.0, -0.25])) * bones["shoulder"][k])
        e, a, f = p["arm_elev"][:, k], p["arm_azim"][:, k], p["elbow"][:, k]
        u_arm = np.stack([s * np.sin(e) * np.cos(a), np.sin(e) * np.sin(a), -np.cos(e)], -1)  # trunk frame
        target = np.array([-s * 0.3, 0.8, 0.5])  # elbow flexion brings the hand forward, up, inwards
        w = _unit(target - (u_arm @ target)[:, None] * u_arm + 1e-9)
        fore = np.cos(f)[:, None] * u_arm + np.sin(f)[:, None] * w
        pose[:, elb] = pose[:, sho] + _apply(upper, u_arm) * bones["upper_arm"][k]
        pose[:, wri] = pose[:, elb] + _apply(upper, fore) * bones["forearm"][k]
    return pose


def sample_poses(action: int, n: int, bones: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """World-frame poses [N, 17, 3] (mm, Z up) for one action: random heading and position, feet on the floor."""
    p = _base_params(n, rng)
    families = ACTION_FAMILIES[action]
    choice = rng.integers(0, len(families), n)
    for f, name in enumerate(families):
        _family(p, name, np.flatnonzero(choice == f), rng)
    body = forward_kinematics(p, bones)
    yaw = rng.uniform(0, 2 * np.pi, n)
    tilt = _rot_x(rng.normal(0, 0.03, n)) @ _rot_y(rng.normal(0, 0.03, n))
    world = np.einsum("nij,nkj->nki", _rot_z(yaw) @ tilt, body)
    floor = np.minimum(world[:, 3, 2], world[:, 6, 2])
    offset = np.stack([rng.uniform(-1200, 1200, n), rng.uniform(-1200, 1200, n), ANKLE_HEIGHT - floor], -1)
    return world + offset[:, None, :]


def make_rows(world: np.ndarray, action: int, subject: int, subaction: int) -> list[dict]:
    """Camera-frame rows in the H36M-Toolbox layout for every pose and all four cameras."""
    target = np.array([0.0, 0.0, 900.0])
    rows = []
    for cid in range(4):
        cam = Camera(rot=look_at(CAMERA_CENTRES[cid], target), centre=CAMERA_CENTRES[cid],
                     intrinsics=CAMERA_INTRINSICS[cid])
        rows += camera_rows(world, cam, {"action": action, "subject": subject, "subaction": subaction,
                                         "cameraid": cid})
    return rows


def detector_noise(rows: list[dict], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Detector-like 2D: Gaussian noise (worse at limb ends), 4 % outliers, rare left/right swaps."""
    img = np.stack([r["joint_3d_image"] for r in rows])  # [N, 17, 3]
    n = img.shape[0]
    width = np.array([r["box"][2] - r["box"][0] for r in rows])[:, None, None]  # px per 2 m
    sigma = np.full(17, 0.010)
    sigma[[3, 6, 13, 16]] = 0.018  # ankles and wrists
    sigma[[2, 5, 12, 15]] = 0.014  # knees and elbows
    noise = rng.normal(size=(n, 17, 2)) * sigma[None, :, None] * width
    outlier = rng.random((n, 17)) < 0.04
    noise[outlier] += rng.normal(size=(outlier.sum(), 2)) * 0.06 * np.repeat(width[:, :, 0], 17, 1)[outlier][:, None]
    xy = img[..., :2] + noise
    swap = rng.random(n) < 0.01
    for a, b in ((13, 16), (3, 6)):
        xy[swap, a], xy[swap, b] = xy[swap, b].copy(), xy[swap, a].copy()
    err = np.linalg.norm(xy - img[..., :2], axis=-1) / width[:, :, 0]
    conf = np.clip(0.95 - 4.0 * err + rng.normal(0, 0.04, err.shape), 0.05, 1.0)
    return {"joint3d_image": np.concatenate([xy, np.zeros((n, 17, 1))], -1), "confidence": conf[..., None]}


SYNTHETIC_FILES = ("synthetic_train.pkl", "synthetic_test.pkl", "synthetic_dt.pkl")


def generate(out: str | Path, seed: int = 0, train_frames: int = 32, test_frames: int = 16,
             overwrite: bool = False) -> dict[str, int]:
    """Write synthetic_{train,test}.pkl and synthetic_dt.pkl into out (all or nothing; files already there are
    refused unless overwrite); returns row counts per split."""
    out = Path(out)
    refuse_existing([out / f for f in SYNTHETIC_FILES], overwrite)
    splits = {"train": (TRAIN_SUBJECTS, train_frames), "test": (TEST_SUBJECTS, test_frames)}
    dets, counts = {}, {}
    with staging(out) as tmp:
        for split, (subjects, frames) in splits.items():
            rows: list[dict] = []
            for subject in subjects:
                bones = subject_bones(subject, seed)
                for action in ACTIONS:
                    for subaction in (1, 2):
                        rng = np.random.default_rng([seed, subject, action, subaction])
                        rows += make_rows(sample_poses(action, frames, bones, rng), action, subject, subaction)
            dets[split] = detector_noise(rows, np.random.default_rng([seed, len(rows)]))
            save_pickle(rows, tmp / f"synthetic_{split}.pkl")
            counts[split] = len(rows)
        save_pickle(dets, tmp / "synthetic_dt.pkl")
    return counts


def walking_clip(frames: int, bones: dict[str, np.ndarray], rng: np.random.Generator, fps: float = 25.0,
                 start: tuple[float, float] = (0.0, 0.0), heading: float = 0.0, speed: float = 1200.0) -> np.ndarray:
    """A continuous walk [frames, 17, 3] (world mm, Z up) at `speed` mm/s from `start` (x, y) along `heading`
    (radians from +X), one stride in 1.1 s, the lower ankle on the floor (ANKLE_HEIGHT above it)."""
    base = _base_params(1, rng)
    p = {k: np.repeat(v, frames, 0) for k, v in base.items()}
    phase = 2 * np.pi * np.arange(frames) / (1.1 * fps) + rng.uniform(0, 2 * np.pi)
    swing = 0.35 * np.stack([np.sin(phase), -np.sin(phase)], -1)  # [F, 2] as _walk, phase advancing in time
    p["hip_flex"] = swing
    p["knee"] = 0.1 + 0.6 * np.clip(np.stack([np.cos(phase), -np.cos(phase)], -1), 0, None)
    p["arm_elev"] = np.abs(0.8 * swing) + 0.05
    p["arm_azim"] = np.where(-swing >= 0, np.pi / 2, -np.pi / 2)
    body = forward_kinematics(p, bones)  # facing +Y
    yaw = np.full(frames, heading - np.pi / 2)  # +Y turned to the heading
    world = np.einsum("nij,nkj->nki", _rot_z(yaw), body)
    path = np.asarray(start, dtype=np.float64) + speed * np.arange(frames)[:, None] / fps * np.array(
        [np.cos(heading), np.sin(heading)])
    floor = np.minimum(world[:, 3, 2], world[:, 6, 2])
    return world + np.concatenate([path, (ANKLE_HEIGHT - floor)[:, None]], -1)[:, None, :]


def coco_example(out: str | Path, seed: int = 0, images: int = 48, overwrite: bool = False) -> Path:
    """A COCO keypoint results file to try run.lift on: a video of `images` 1920 x 1080 frames at 25 fps (f = 1400 px,
    the camera 2.5 m high and tilted down) in which a synthetic test subject walks across the view and a second one
    walks the other way in the first half, tracked (track_id), as a 2D detector and tracker would write it."""
    from lib.keypoints import coco_from_h36m

    rng = np.random.default_rng(seed)
    cam = Camera(rot=look_at(np.array([0.0, -5000.0, 2500.0]), np.array([0.0, 0.0, 800.0])),
                 centre=np.array([0.0, -5000.0, 2500.0]), intrinsics=np.array([1400.0, 1400.0, 960.0, 540.0]))
    detections = []
    for person, count, start, heading in ((0, images, (-1400.0, 0.0), 0.0), (1, images // 2, (1000.0, 800.0), np.pi)):
        world = walking_clip(count, subject_bones(9 + 2 * person, seed), rng, start=start, heading=heading)
        pix = project(cam.world_to_camera(world), np.broadcast_to(cam.intrinsics, (count, 4)))
        kps = coco_from_h36m(pix)
        for i in range(count):
            vis = np.full((17, 1), 0.9)
            detections.append({"image_id": i, "category_id": 1, "score": 0.95 - 0.1 * person, "track_id": person,
                               "keypoints": np.round(np.concatenate([kps[i], vis], -1), 2).ravel().tolist()})
    path = Path(out) / "coco_keypoints.json"
    refuse_existing([path], overwrite)
    check_writable(path, "--out")
    write_json(path, detections)
    return path
