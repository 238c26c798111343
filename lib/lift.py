"""From any 2D detector to 3D in camera millimetres: keypoint readers, skeleton mapping, unknown cameras, video.

Pipeline (README 'Lift your own keypoints'):
 1. Read the detector's file and map its joints to the 17 Human3.6M joints (tables below, docs/design.md, 'Keypoint formats').
    Joints without a counterpart (spine and head top for COCO and OpenPose), below `lift.min_conf`, or dropped by
    the detector are missing: the prior completes them (comp2d semantics) and the output flags them.
 2. Camera: the given intrinsics, else a default from the image size: f = max(W, H) (a 53 degree field of view
    across the long side), principal point at the centre.
 3. Each person is seen by a canonical virtual camera like the training data's: its rays (u - c) / f are centred on
    its root (pelvis) and scaled so its 2D bones have the training set's typical pixel lengths (`pose stats`).
 4. The prior lifts it (S hypotheses, one pose by `eval.reduce`, per-joint uncertainty).
 5. Root depth (never given): the depth at which the lifted skeleton's 3D bone lengths match the training set's
    mean. The pose is placed on its root's ray at that depth. Absolute scale from one view is ambiguous: a person
    10 % larger than the training average comes out 10 % farther away and 10 % larger (P2, which aligns scale,
    is unaffected).
 6. Video (`lift.smooth`): a second pass starts every frame from the average of its neighbours' first-pass poses
    at time `lift.smooth_t` (its mean alpha(t) x, as den starts from the pose itself) and runs the drift-only
    sampler with that frame's 2D, all frames in one batch; the root depth is averaged over `lift.smooth_window`
    frames of the same track.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from lib.camera import Frames, RowCameras, box_around_root, unproject
from lib.errors import ToolkitError
from lib.io import write_json, write_npz
from lib.skeleton import BONES, bone_lengths
from lib.tasks.completion import completion_2d

NUM_JOINTS = 17
Mid = tuple[int, int]  # a joint made as the midpoint of two source joints
Table = dict[int, int | Mid | None]

# Human3.6M joint <- source joint (docs/design.md, 'Skeleton' and 'Keypoint formats'); None: no counterpart (the prior completes it)
COCO17 = {0: (11, 12), 1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 7: None, 8: (5, 6), 9: 0, 10: None, 11: 5, 12: 7,
          13: 9, 14: 6, 15: 8, 16: 10}
BODY25 = {0: 8, 1: 9, 2: 10, 3: 11, 4: 12, 5: 13, 6: 14, 7: None, 8: 1, 9: 0, 10: None, 11: 5, 12: 6, 13: 7, 14: 2,
          15: 3, 16: 4}
COCO18 = {0: (8, 11), 1: 8, 2: 9, 3: 10, 4: 11, 5: 12, 6: 13, 7: None, 8: 1, 9: 0, 10: None, 11: 5, 12: 6, 13: 7,
          14: 2, 15: 3, 16: 4}
H36M = {j: j for j in range(NUM_JOINTS)}

# Typical skeleton of the training data when a checkpoint carries none (Human3.6M-like subjects seen by Human3.6M's
# cameras: the embedded synthetic data): mean 3D bone lengths (mm) and median 2D bone lengths (px), in BONES order.
DEFAULT_POSE_STATS = {
    "bone_mm": [132.3, 425.6, 449.8, 132.0, 426.2, 450.4, 230.5, 260.2, 118.3, 113.9, 152.2, 280.1, 248.1, 152.2,
                280.0, 248.3],
    "bone_px": [21.0, 90.2, 94.9, 20.9, 90.2, 95.0, 50.7, 57.6, 24.8, 25.6, 24.6, 59.5, 50.3, 24.6, 59.5, 50.2]}


def pose_stats(pose_cam: np.ndarray, pose_img: np.ndarray, cam: np.ndarray) -> dict[str, list[float]]:
    """What a checkpoint carries for lifting: the training skeleton's mean 3D bone lengths (mm) and median 2D ones
    (px), and the training cameras' median intrinsics (fx, fy, cx, cy), the virtual camera lifting maps onto."""
    px = np.concatenate([pose_img[..., :2], np.zeros_like(pose_img[..., :1])], -1)
    return {"bone_mm": bone_lengths(torch.from_numpy(pose_cam)).mean(0).tolist(),
            "bone_px": bone_lengths(torch.from_numpy(px)).median(0).values.tolist(),
            "camera": np.median(cam, axis=0).tolist()}


@dataclass
class Keypoints:
    """2D input in Human3.6M order: T frames x P people."""

    xy: np.ndarray                          # [T, P, 17, 2] pixels
    conf: np.ndarray                        # [T, P, 17] confidence, 0 where a joint is absent
    valid: np.ndarray                       # [T, P] bool: a person is there
    track: np.ndarray                       # [T, P] track id from the input, -1 where it carries none
    frames: list[str]                       # frame names or ids
    image_size: tuple[float, float] | None = None   # (W, H) when the file says
    empty_frames: int = 0                   # frames with nobody in them (kept, with no valid person)
    notes: list[str] = field(default_factory=list)


def coco_from_h36m(xy: np.ndarray) -> np.ndarray:
    """Human3.6M 2D joints [..., 17, 2] -> COCO-17 [..., 17, 2] (examples and tests): the mapped joints, and the
    eyes and ears, which Human3.6M lacks, placed around the head (between neck/nose and head top, across by a
    tenth and a fifth of the shoulder width)."""
    out = np.zeros(xy.shape[:-2] + (17, 2))
    for h, src in COCO17.items():
        if isinstance(src, int):
            out[..., src, :] = xy[..., h, :]
    head = 0.5 * (xy[..., 9, :] + xy[..., 10, :])
    across = xy[..., 11, :] - xy[..., 14, :]  # right shoulder to left shoulder
    for c, k in ((1, 0.1), (2, -0.1), (3, 0.2), (4, -0.2)):  # left eye, right eye, left ear, right ear
        out[..., c, :] = head + k * across
    return out


def map_joints(xy: np.ndarray, conf: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray]:
    """Source joints [..., K, 2] / [..., K] -> Human3.6M [..., 17, 2] / [..., 17] (midpoints take the lower
    confidence; joints without a counterpart get confidence 0)."""
    out_xy = np.full(xy.shape[:-2] + (NUM_JOINTS, 2), np.nan)
    out_conf = np.zeros(conf.shape[:-1] + (NUM_JOINTS,))
    for j, src in table.items():
        if src is None:
            continue
        a, b = (src, src) if isinstance(src, int) else src
        out_xy[..., j, :] = 0.5 * (xy[..., a, :] + xy[..., b, :])
        out_conf[..., j] = np.minimum(conf[..., a], conf[..., b])
    return out_xy, out_conf


def _people(rows: list[list[tuple[np.ndarray, np.ndarray, int]]], frames: list[str], table_of: Callable[[int], Table]
            ) -> Keypoints:
    """Frames of (keypoints [K, 2], confidence [K], track) lists -> Keypoints padded to the most people per frame."""
    t, p = len(rows), max([len(r) for r in rows] + [1])
    xy, conf = np.full((t, p, NUM_JOINTS, 2), np.nan), np.zeros((t, p, NUM_JOINTS))
    valid, track = np.zeros((t, p), bool), np.full((t, p), -1)
    for i, people in enumerate(rows):
        for k, (kxy, kconf, tid) in enumerate(people):
            xy[i, k], conf[i, k] = map_joints(kxy, kconf, table_of(len(kconf)))
            valid[i, k], track[i, k] = True, tid
    return Keypoints(xy, conf, valid, track, frames, empty_frames=sum(not r for r in rows))


def _triples(values, where: str, counts: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A flat [x, y, c, ...] list -> ([K, 2], [K]); its length must be 3 K for one of the known K."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ToolkitError(f"{where}: keypoints must be numbers ({e})") from e
    if arr.ndim != 1 or arr.size not in [3 * k for k in counts]:
        raise ToolkitError(f"{where}: {arr.size} keypoint numbers; expected {' or '.join(str(3 * k) for k in counts)} "
                           f"(x, y, confidence for {' or '.join(map(str, counts))} joints)")
    arr = arr.reshape(-1, 3)
    if not np.isfinite(arr).all():
        raise ToolkitError(f"{where}: keypoints contain NaN or inf")
    return arr[:, :2], arr[:, 2]


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ToolkitError(f"{path}: not valid JSON ({e})") from e


def read_coco(path: Path) -> Keypoints:
    """COCO keypoint results (a list of {"image_id", "keypoints": [x, y, v] * 17, "score", optional "track_id"};
    MMPose, ViTPose, Detectron2, YOLO-pose) or a COCO annotation file ({"images", "annotations"}, which also gives
    the image size). Frames are the image ids in order; people per frame by track id, else by score."""
    data = _load_json(path)
    size = None
    if isinstance(data, dict):
        images = {im.get("id"): (im.get("width"), im.get("height")) for im in data.get("images", [])}
        sizes = {s for s in images.values() if None not in s}
        size = next(iter(sizes)) if len(sizes) == 1 else None
        data = data.get("annotations")
    if not isinstance(data, list):
        raise ToolkitError(f"{path}: expected a COCO results list [{{'image_id', 'keypoints', ...}}] or an "
                           f"annotation file with 'annotations'")
    by_image: dict = {}
    for k, det in enumerate(data):
        if not isinstance(det, dict) or "image_id" not in det or "keypoints" not in det:
            raise ToolkitError(f"{path}: entry {k} lacks 'image_id' or 'keypoints'")
        kxy, kconf = _triples(det["keypoints"], f"{path} entry {k}", (17,))
        by_image.setdefault(det["image_id"], []).append((kxy, kconf, int(det.get("track_id", -1)),
                                                        float(det.get("score", 0.0))))
    ids = sorted(by_image, key=lambda i: (isinstance(i, str), i))
    rows = [[p[:3] for p in sorted(by_image[i], key=lambda p: (p[2] if p[2] >= 0 else 0, -p[3]))] for i in ids]
    kps = _people(rows, [str(i) for i in ids], lambda k: COCO17)
    kps.image_size = size
    return kps


def read_openpose(path: Path) -> Keypoints:
    """OpenPose JSON, one file per frame ({"people": [{"pose_keypoints_2d": [x, y, c] * 25 or 18}]}), a folder of
    them in name order or one file. BODY_25 or COCO-18 by the count; a joint not found is (0, 0, 0)."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise ToolkitError(f"{path} holds no .json files (OpenPose writes one per frame)")
    rows = []
    for f in files:
        data = _load_json(f)
        people = data.get("people") if isinstance(data, dict) else None
        if not isinstance(people, list):
            raise ToolkitError(f"{f}: expected {{'people': [{{'pose_keypoints_2d': [...]}}]}}")
        frame = []
        for k, person in enumerate(people):
            if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
                raise ToolkitError(f"{f}: person {k} lacks 'pose_keypoints_2d'")
            kxy, kconf = _triples(person["pose_keypoints_2d"], f"{f} person {k}", (25, 18))
            pid = person.get("person_id", -1)
            frame.append((kxy, kconf, int(pid[0] if isinstance(pid, list) else pid)))
        rows.append(frame)
    return _people(rows, [f.stem for f in files], lambda k: BODY25 if k == 25 else COCO18)


def read_h36m(path: Path) -> Keypoints:
    """An .npy of [T, 17, 2] or [T, 17, 3] (x, y, confidence) in Human3.6M order, one person."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ToolkitError(f"{path}: not a numeric .npy array ({str(e).splitlines()[0]})") from e
    if arr.ndim != 3 or arr.shape[1] != NUM_JOINTS or arr.shape[2] not in (2, 3) or arr.dtype.kind not in "fiu":
        raise ToolkitError(f"{path}: shape {arr.shape} ({arr.dtype}); expected numbers [T, 17, 2] or [T, 17, 3] "
                           f"in Human3.6M joint order")
    conf = arr[..., 2] if arr.shape[2] == 3 else np.ones(arr.shape[:2])
    rows = [[(a[:, :2].astype(np.float64), c, -1)] for a, c in zip(arr, conf, strict=True)]
    return _people(rows, [str(i) for i in range(len(arr))], lambda k: H36M)


READERS: dict[str, Callable[[Path], Keypoints]] = {"coco": read_coco, "openpose": read_openpose, "h36m": read_h36m}


TABLES: dict[str, dict[int, Table]] = {"coco": {17: COCO17}, "openpose": {25: BODY25, 18: COCO18}, "h36m": {17: H36M}}


def keypoints_from(source, fmt: str) -> Keypoints:
    """Keypoints from a file of format `fmt`, a Keypoints, or an array [T, K, 2|3] / [T, P, K, 2|3] (x, y and
    optionally confidence) in that format's joint order."""
    if fmt not in READERS:
        raise ToolkitError(f"unknown format {fmt!r}; choose one of {', '.join(READERS)}")
    if isinstance(source, Keypoints):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ToolkitError(f"{path} not found")
        return READERS[fmt](path)
    arr = np.asarray(source, dtype=np.float64)
    arr = arr[:, None] if arr.ndim == 3 else arr
    if arr.ndim != 4 or arr.shape[-1] not in (2, 3) or arr.shape[2] not in TABLES[fmt]:
        raise ToolkitError(f"keypoints array of shape {tuple(np.shape(source))}: expected [T, K, 2 or 3] or "
                           f"[T, P, K, 2 or 3] with K in {sorted(TABLES[fmt])} for format {fmt}")
    conf = arr[..., 2] if arr.shape[-1] == 3 else np.ones(arr.shape[:-1])
    xy, c = map_joints(arr[..., :2], conf, TABLES[fmt][arr.shape[2]])
    t, p = arr.shape[:2]
    return Keypoints(xy, c, np.ones((t, p), bool), np.full((t, p), -1), [str(i) for i in range(t)])


def default_camera(image_size: tuple[float, float]) -> np.ndarray:
    """fx = fy = max(W, H), principal point at the image centre."""
    w, h = image_size
    if not (w > 0 and h > 0):
        raise ToolkitError(f"image size must be positive, got {w} x {h}")
    f = float(max(w, h))
    return np.array([f, f, w / 2.0, h / 2.0])


def _bone_weights(seen: np.ndarray) -> np.ndarray:
    """[..., 17] seen joints -> [..., 16] 1 where both ends of a bone are seen."""
    parents, children = (np.array([b[i] for b in BONES]) for i in (0, 1))
    return (seen[..., parents] & seen[..., children]).astype(np.float64)


def canonical_scale(rays: np.ndarray, seen: np.ndarray, stats: dict) -> np.ndarray:
    """The virtual focal length [M] that gives each person's 2D bones [M, 17, 2] (in ray units) the training set's
    typical pixel lengths: the median over its seen bones of typical px / ray length."""
    parents, children = (np.array([b[i] for b in BONES]) for i in (0, 1))
    length = np.linalg.norm(rays[:, children] - rays[:, parents], axis=-1)  # [M, 16]
    ratio = np.where(_bone_weights(seen) > 0, np.asarray(stats["bone_px"]) / np.maximum(length, 1e-9), np.nan)
    return np.nanmedian(ratio, axis=1)


def root_of(rays: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Each person's root ray [M, 2]: the pelvis, else the middle of the seen hips, else of all seen joints."""
    hips = seen[:, [1, 4]].all(1)
    mean_seen = np.nansum(np.where(seen[..., None], rays, 0.0), 1) / np.maximum(seen.sum(1), 1)[:, None]
    root = np.where(hips[:, None], 0.5 * (rays[:, 1] + rays[:, 4]), mean_seen)
    return np.where(seen[:, :1], rays[:, 0], root)


def depth_from_bones(pose_px: torch.Tensor, focal: np.ndarray, stats: dict) -> np.ndarray:
    """Root depth [M] (mm) at which the lifted skeleton [M, 17, 3] (virtual pixels, z in the same units) has the
    training set's mean 3D bone lengths: depth = f * sum(L_mm) / sum(L_px) (weak perspective at the root)."""
    px = bone_lengths(pose_px.double()).numpy()  # [M, 16]
    return focal * float(np.sum(stats["bone_mm"])) / np.maximum(px.sum(1), 1e-9)


def jitter(poses: np.ndarray, valid: np.ndarray) -> float:
    """Mean joint acceleration |p[t+1] - 2 p[t] + p[t-1]| (mm / frame^2) of [T, 17, 3] poses where three
    consecutive frames are valid."""
    acc = np.linalg.norm(poses[2:] - 2 * poses[1:-1] + poses[:-2], axis=-1).mean(-1)  # [T-2]
    ok = valid[2:] & valid[1:-1] & valid[:-2]
    return float(acc[ok].mean()) if ok.any() else float("nan")


@dataclass
class LiftResult:
    """3D poses in camera millimetres, T frames x P people (NaN where nobody is)."""

    pose3d: np.ndarray          # [T, P, 17, 3] camera frame, mm
    completed: np.ndarray       # [T, P, 17] bool: joints the prior completed (no usable 2D)
    uncertainty: np.ndarray     # [T, P, 17] mm: spread of the hypotheses (0 with one hypothesis)
    root_depth: np.ndarray      # [T, P] mm, estimated from bone lengths
    keypoints2d: np.ndarray     # [T, P, 17, 2] the 2D input, pixels, Human3.6M order
    valid: np.ndarray           # [T, P] bool
    track: np.ndarray           # [T, P] the input's track ids (-1: none)
    camera: np.ndarray          # [4] fx, fy, cx, cy used
    camera_given: bool
    frames: list[str]
    notes: list[str]

    def save(self, out: Path) -> list[Path]:
        """OUT/poses.npz and OUT/poses.json (per frame and person: 17 x 3 mm, completed joints, uncertainty)."""
        arrays = {k: getattr(self, k) for k in ("pose3d", "completed", "uncertainty", "root_depth", "keypoints2d",
                                                 "valid", "track", "camera")}
        write_npz(out / "poses.npz", **arrays, frames=np.array(self.frames))
        people = [[{"track": int(self.track[t, p]), "pose3d_mm": np.round(self.pose3d[t, p], 1).tolist(),
                    "completed": self.completed[t, p].tolist(), "uncertainty_mm": np.round(self.uncertainty[t, p],
                                                                                            1).tolist(),
                    "root_depth_mm": round(float(self.root_depth[t, p]), 1)}
                   for p in range(self.valid.shape[1]) if self.valid[t, p]] for t in range(len(self.frames))]
        write_json(out / "poses.json", {"camera": {"fx": self.camera[0], "fy": self.camera[1], "cx": self.camera[2],
                                                   "cy": self.camera[3], "given": self.camera_given},
                                        "joints": "Human3.6M 17 (docs/design.md, 'Skeleton')", "notes": self.notes,
                                        "frames": [{"frame": f, "people": ps} for f, ps in zip(self.frames, people,
                                                                                               strict=True)]})
        return [out / "poses.npz", out / "poses.json"]


def lift_keypoints(prior, kps: Keypoints, camera: np.ndarray | None, image_size: tuple[float, float] | None,
                   stats: dict, fast: bool = True, seed: int = 0) -> LiftResult:
    """The pipeline of the module docstring. `prior` is a lib.api.PosePrior (its config's `lift` section)."""
    lc = prior.config.lift
    given = camera is not None
    cam = np.asarray(camera, dtype=np.float64) if given else default_camera(_size(image_size, kps))
    seen = (kps.conf >= lc.min_conf) & np.isfinite(kps.xy).all(-1) & kps.valid[..., None]  # [T, P, 17]
    keep = kps.valid & (seen.sum(-1) >= lc.min_joints)
    notes = list(kps.notes) + ([f"{kps.empty_frames} frames with nobody in them"] if kps.empty_frames else [])
    if (kps.valid & ~keep).any():
        notes.append(f"{int((kps.valid & ~keep).sum())} people with fewer than lift.min_joints ({lc.min_joints}) "
                     f"joints above lift.min_conf ({lc.min_conf}) were skipped")
    if not keep.any():
        raise ToolkitError(f"no person has {lc.min_joints} joints with confidence >= lift.min_conf ({lc.min_conf}); "
                           f"lower --config.lift.min_conf or check the input")
    idx = np.nonzero(keep)
    rays = unproject(np.nan_to_num(kps.xy[idx]), np.ones(kps.xy[idx].shape[:-1]), cam)[..., :2]  # [M, 17, 2] at Z=1
    sn = seen[idx]
    root, focal = root_of(rays, sn), canonical_scale(rays, sn, stats)
    size = prior.frames.image_size
    virtual = size / 2.0 + focal[:, None, None] * (rays - root[:, None])  # [M, 17, 2] virtual pixels
    norm = np.where(sn[..., None], prior.frames.normalise(virtual), 0.0)
    s = int(lc.hypotheses)
    out = prior.complete_2d(norm, ~sn, hypotheses=s, fast=fast, pflow=s == 1, seed=seed,
                            reduce=prior.config.eval.reduce, completion=lc.completion)
    pose, unc = (torch.as_tensor(v) for v in out)
    if lc.smooth:
        pose = _smooth(prior, pose, norm, sn, idx, kps.track, seed)
    depth = estimate_depth(prior, pose, focal, stats)
    if lc.smooth:
        depth = smooth_depth(depth, _tracks(idx, kps.track), lc.smooth_window)
    mm = place(prior, pose, root, focal, depth)
    return _assemble(kps, idx, mm, depth, unc.numpy() * size / 2.0 * depth[:, None] / focal[:, None], sn, keep, cam,
                     given, notes)


def _size(image_size, kps: Keypoints) -> tuple[float, float]:
    size = image_size or kps.image_size
    if size is None:
        raise ToolkitError("no camera and no image size: give --image-size W H (or --camera fx fy cx cy); the "
                           "default intrinsics come from the image size")
    return size


def _virtual_rows(prior, focal: np.ndarray, depth: np.ndarray):
    """The virtual cameras (focal, centred) with each root on the optical axis at `depth` (docs/design.md, 'Data and coordinate frames')."""
    c = np.full_like(focal, prior.frames.image_size / 2.0)
    cam = np.stack([focal, focal, c, c], -1)
    return RowCameras(cam, box_around_root(np.stack([0 * depth, 0 * depth, depth], -1), cam), depth)


def estimate_depth(prior, pose: torch.Tensor, focal: np.ndarray, stats: dict) -> np.ndarray:
    """Root depths [M] at which normalised poses [M, 17, 3] seen by the virtual cameras have the training set's
    mean bone lengths: weak perspective first, then corrected twice with the exact mapping."""
    frames = Frames(prior.frames.image_size, 1.0)
    depth = depth_from_bones(frames.to_image(pose.double()), focal, stats)
    for _ in range(2):
        mm = _virtual_rows(prior, focal, depth).network_to_camera(pose, frames).double()
        depth = depth * float(np.sum(stats["bone_mm"])) / bone_lengths(mm).numpy().sum(1)
    return depth


def place(prior, pose: torch.Tensor, root: np.ndarray, focal: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Normalised poses [M, 17, 3] -> camera mm [M, 17, 3], the root on its ray [M, 2] at `depth`."""
    mm = _virtual_rows(prior, focal, depth).network_to_camera(pose, Frames(prior.frames.image_size, 1.0))
    return mm.double().numpy() + np.concatenate([root * depth[:, None], np.zeros_like(depth[:, None])], -1)[:, None]


def _tracks(idx: tuple, track: np.ndarray) -> dict[tuple[int, int], int]:
    """(frame, track) -> row of the people that can be followed over time: those with a track id, or the only
    person when the input has one slot and no ids."""
    ids = np.where(track[idx] >= 0, track[idx], 0 if track.shape[1] == 1 else -1)
    return {(int(t), int(i)): m for m, (t, i) in enumerate(zip(idx[0], ids, strict=True)) if i >= 0}


def smooth_depth(depth: np.ndarray, where: dict[tuple[int, int], int], window: int) -> np.ndarray:
    """Centred moving average of each track's root depth over `window` frames (what is there of it)."""
    out = depth.copy()
    half = window // 2
    for (t, i), m in where.items():
        near = [where[(t + d, i)] for d in range(-half, half + 1) if (t + d, i) in where]
        out[m] = depth[near].mean()
    return out


def _smooth(prior, pose: torch.Tensor, norm: np.ndarray, seen: np.ndarray, idx: tuple, track: np.ndarray,
            seed: int) -> torch.Tensor:
    """Second pass for video: each person starts from the average of its first-pass poses in the frames before and
    after (the same track id; the only slot when there is one person and no ids), at time lift.smooth_t."""
    lc, sde, scale = prior.config.lift, prior.sde, prior.frames.scale
    where = _tracks(idx, track)
    if not where:
        return pose
    rows = list(where.values())
    near = torch.tensor([[where.get((t + d, i), m) for d in (-1, 0, 1)] for (t, i), m in where.items()])
    avg = pose[near].mean(1)  # [R, 17, 3]: a missing neighbour counts as the frame itself
    x0 = sde.alpha(torch.tensor(lc.smooth_t)) * avg * scale  # the mean of the pose at that time, as den starts
    cond = torch.cat([torch.as_tensor(norm[rows]).float(), torch.zeros(len(rows), NUM_JOINTS, 1)], -1) * scale
    task = replace(completion_2d(cond, torch.as_tensor(~seen[rows]), lc.completion), x_init=x0, t_start=lc.smooth_t)
    pose = pose.clone()
    pose[rows] = prior.run_task(task, 1, method="drift_2m", steps=lc.smooth_steps, seed=seed)[:, 0]
    return pose


def _assemble(kps: Keypoints, idx: tuple, mm: np.ndarray, depth: np.ndarray, unc: np.ndarray, seen: np.ndarray,
              keep: np.ndarray, cam: np.ndarray, given: bool, notes: list[str]) -> LiftResult:
    t, p = kps.valid.shape
    pose3d, completed = np.full((t, p, NUM_JOINTS, 3), np.nan), np.zeros((t, p, NUM_JOINTS), bool)
    uncertainty, root_depth = np.full((t, p, NUM_JOINTS), np.nan), np.full((t, p), np.nan)
    pose3d[idx], completed[idx], uncertainty[idx], root_depth[idx] = mm, ~seen, unc, depth
    return LiftResult(pose3d, completed, uncertainty, root_depth, kps.xy, keep, kps.track, cam, given, kps.frames,
                      notes)
