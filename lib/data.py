"""Human3.6M-Toolbox pickle datasets (docs/design.md, 'Data and coordinate frames') as flat arrays.

Every source (Human3.6M, the synthetic default, CMU, your own) is brought into this layout, so one loader and
one evaluator serve all. Coordinate conversions live in lib/camera.py.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import ml_collections
import numpy as np
import torch

from lib.camera import Camera, Frames, RowCameras, box_around_root, camera_to_image
from lib.errors import ToolkitError
from lib.io import not_found
from lib.keypoints import FORMATS, H36M, USED
from lib.safe_pickle import load_pickle

ACTIONS = {
    2: "Directions", 3: "Discussion", 4: "Eating", 5: "Greeting", 6: "Phoning", 7: "Posing",
    8: "Purchases", 9: "Sitting", 10: "SittingDown", 11: "Smoking", 12: "Photo", 13: "Waiting",
    14: "Walking", 15: "WalkDog", 16: "WalkTogether",
}
TRAIN_SUBJECTS = (1, 5, 6, 7, 8)
TEST_SUBJECTS = (9, 11)
REQUIRED_FIELDS = ("joint_3d_camera", "joint_3d_image", "camera_param", "box", "action", "subject",
                   "subaction", "cameraid")
GT_2D = "ground-truth 2D"


@dataclass
class PoseData:
    """One split as arrays. N rows (frame, camera); J joints."""

    pose_img: np.ndarray                   # [N, J, 3] joint_3d_image (pixels, ratio-scaled depth)
    pose_cam: np.ndarray                   # [N, J, 3] joint_3d_camera, mm
    cam: np.ndarray                        # [N, 4] fx, fy, cx, cy
    box: np.ndarray                        # [N, 4] x0, y0, x1, y1
    root_depth: np.ndarray                 # [N]
    action: np.ndarray                     # [N] int
    subject: np.ndarray                    # [N] int
    subaction: np.ndarray                  # [N] int
    cameraid: np.ndarray                   # [N] int
    action_name: np.ndarray                # [N] str: the row's 'action_name', else the Human3.6M name
    det2d: np.ndarray | None = None        # [N, J, 2] detected keypoints (pixels; 0 where the detector gave none)
    det_conf: np.ndarray | None = None     # [N, J] detector confidences (0 where it gave none)
    det_kinds: tuple[str, ...] | None = None   # per joint, what the detector's point is (lib/keypoints.py)
    source: str = ""                       # the ground-truth file
    source_2d: str = GT_2D                 # where the 2D conditions come from (GT_2D or the detections file)
    note: str = ""                         # what a table built on these rows should say (rows left out)

    def __len__(self) -> int:
        return self.pose_img.shape[0]

    def subset(self, idx: np.ndarray | slice) -> PoseData:
        return PoseData(**{f.name: (v[idx] if isinstance(v := getattr(self, f.name), np.ndarray) else v)
                           for f in fields(self)})

    @property
    def rows(self) -> RowCameras:
        """Camera, box and root depth of each row (what maps network space to millimetres)."""
        return RowCameras(self.cam, self.box, self.root_depth)

    def gt3d(self, frames: Frames) -> torch.Tensor:
        """Network-space 3D poses [N, J, 3]."""
        return torch.from_numpy(frames.to_network(self.pose_img.astype(np.float32)))

    def seen2d(self, min_conf: float = 0.0) -> torch.Tensor:
        """[N, J] bool: the joints whose 2D is given to the network: all for ground-truth 2D; for detections those of
        a kind the network can use (lib/keypoints.py) with confidence >= min_conf (lib/tasks/observe.py)."""
        if self.det2d is None:
            return torch.ones(self.pose_img.shape[:2], dtype=torch.bool)
        used = np.array([k in USED for k in self.det_kinds])
        return torch.from_numpy(used & (self.det_conf >= min_conf) & (self.det_conf > 0))

    def cond2d(self, frames: Frames) -> torch.Tensor:
        """Network-space 2D conditions [N, J, 3] with z = 0, from `source_2d`."""
        xy = self.pose_img[..., :2] if self.det2d is None else self.det2d
        pose = np.concatenate([xy, np.zeros_like(xy[..., :1])], -1).astype(np.float32)
        cond = frames.to_network(pose)
        cond[..., 2] = 0.0
        return torch.from_numpy(cond)


def camera_rows(world: np.ndarray, cam: Camera, meta: dict, frames: np.ndarray | None = None) -> list[dict]:
    """Rows in the H36M-Toolbox layout for poses world [N, J, 3] (mm) seen by one camera.

    meta holds action, subject, subaction, cameraid (and optionally action_name); frames the frame numbers.
    joint_3d_image and box follow docs/design.md, 'Data and coordinate frames' (lib/camera.py).
    """
    n = world.shape[0]
    intr = np.broadcast_to(cam.intrinsics, (n, 4))
    pose_cam = cam.world_to_camera(world)  # [N, J, 3]
    box = box_around_root(pose_cam[:, 0], intr)
    img = camera_to_image(pose_cam, intr, box, pose_cam[:, 0, 2])
    fx, fy, cx, cy = (float(v) for v in cam.intrinsics)
    param = {"R": cam.rot, "T": cam.centre.reshape(3, 1), "fx": fx, "fy": fy, "cx": cx, "cy": cy,
             "k": cam.k.reshape(-1, 1), "p": cam.p.reshape(-1, 1), "name": cam.name}
    frames = np.arange(n) if frames is None else frames
    s, a, sa, c = meta["subject"], meta["action"], meta["subaction"], meta["cameraid"]
    return [{"joint_3d_camera": pose_cam[i], "joint_3d_image": img[i], "joints_3d": world[i], "camera_param": param,
             "box": box[i], "root_depth": float(pose_cam[i, 0, 2]), "action": a, "subject": s, "subaction": sa,
             "cameraid": c, "action_name": meta.get("action_name", ACTIONS.get(a, str(a))),
             "image": f"s_{s:02d}_act_{a:02d}_subact_{sa:02d}_ca_{c + 1:02d}_{int(frames[i]) + 1:06d}.jpg"}
            for i in range(n)]


def detector_kinds(det_format: str) -> tuple[str, ...]:
    """What each joint of a detections file in Human3.6M order is, by the detector's keypoint format
    (data.det_format: a format of lib/keypoints.py whose 17 joints are in Human3.6M order, e.g. h36m or sh)."""
    spec = FORMATS.get(det_format)
    if spec is None or spec.tables.get(17) != H36M:
        names = [f.name for f in FORMATS.values() if f.tables.get(17) == H36M]
        raise ToolkitError(f"data.det_format {det_format!r} is not a detector in Human3.6M order; choose one of "
                           f"{', '.join(names)}")
    return spec.kinds[17]


def _check_finite(name: str, arr: np.ndarray, path: Path) -> None:
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)).ravel()
        raise ToolkitError(f"{path}: field '{name}' has NaN/inf in {len(bad)} rows (first row {bad[0]}); "
                           f"drop or repair those rows (python -m run.prepare_data writes none)")


def _stack(rows: list[dict], name: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    try:
        arr = np.stack([np.asarray(r[name], dtype=np.float64).reshape(shape) for r in rows])
    except (ValueError, TypeError) as e:
        raise ToolkitError(f"{path}: field '{name}' must be numbers of shape {shape} in every row ({e})") from e
    _check_finite(name, arr, path)
    return arr


def _ids(rows: list[dict], path: Path) -> dict[str, np.ndarray]:
    try:
        return {k: np.array([int(np.asarray(r[k]).item()) for r in rows])
                for k in ("action", "subject", "subaction", "cameraid")}
    except (KeyError, TypeError, ValueError) as e:
        raise ToolkitError(f"{path}: action/subject/subaction/cameraid must be one integer per row ({e})") from e


def rows_to_posedata(rows: list[dict], path: Path, num_joints: int = 17) -> PoseData:
    """Validate and stack a list of H36M-Toolbox dicts."""
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
        raise ToolkitError(f"{path}: expected a non-empty list of dicts (one per frame and camera)")
    missing = [f for f in REQUIRED_FIELDS if f not in rows[0]]
    if missing:
        raise ToolkitError(f"{path}: rows lack field(s) {', '.join(missing)}; expected the H36M-Toolbox layout "
                           f"of docs/design.md, 'Data and coordinate frames'")
    try:
        cam = np.array([[np.asarray(r["camera_param"][k], dtype=np.float64).item() for k in ("fx", "fy", "cx", "cy")]
                        for r in rows], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise ToolkitError(f"{path}: each row needs camera_param with one number each for fx, fy, cx, cy "
                           f"({e})") from e
    _check_finite("camera_param", cam, path)
    pose_cam = _stack(rows, "joint_3d_camera", (num_joints, 3), path)
    root_depth = _stack(rows, "root_depth", (), path) if "root_depth" in rows[0] else pose_cam[:, 0, 2]
    ids = _ids(rows, path)
    names = np.array([str(r.get("action_name") or ACTIONS.get(a, a)) for r, a in zip(rows, ids["action"],
                                                                                      strict=True)])
    return PoseData(pose_img=_stack(rows, "joint_3d_image", (num_joints, 3), path), pose_cam=pose_cam,
                    cam=cam, box=_stack(rows, "box", (4,), path), root_depth=root_depth, source=str(path),
                    action_name=names, **ids)


def attach_detections(data: PoseData, det: dict, split: str, path: Path, kinds: tuple[str, ...]) -> PoseData:
    """Add detected 2D keypoints from an h36m_sh_dt_ft-style dict, checking row alignment. A joint the detector did
    not give may be NaN if its confidence is 0; `kinds` says what each detected joint is (lib/keypoints.py)."""
    try:
        part = det[split]
        kps = np.asarray(part["joint3d_image"], dtype=np.float64)
        conf = np.asarray(part["confidence"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise ToolkitError(f"{path}: expected {{'{split}': {{'joint3d_image', 'confidence'}}}} of numbers "
                           f"({e})") from e
    n, j = len(data), data.pose_img.shape[1]
    if kps.ndim != 3 or kps.shape[0] != n or kps.shape[1] != j or kps.shape[-1] < 2:
        raise ToolkitError(f"{path}: '{split}' detections have shape {kps.shape}, expected [{n}, {j}, 3] "
                           f"aligned row by row with the ground-truth pickle")
    if conf.size != n * j:
        raise ToolkitError(f"{path}: '{split}' confidences have shape {conf.shape}, expected [{n}, {j}, 1]")
    conf = conf.reshape(n, j)
    if not np.isfinite(conf).all():
        raise ToolkitError(f"{path}: '{split}' confidences hold NaN or inf; use 0 for joints the detector did not give")
    given = conf > 0
    _check_finite("joint3d_image", np.where(given[..., None], kps[..., :2], 0.0), path)
    data.det2d = np.where(np.isfinite(kps[..., :2]), kps[..., :2], 0.0)  # NaN only where the detector gave nothing
    data.det_conf, data.det_kinds, data.source_2d = conf, kinds, path.name
    return data


def load_split(root: str | Path, file: str, det_file: str, split: str, sample: int, use_gt_2d: bool,
               num_joints: int = 17, det_format: str = "h36m") -> PoseData:
    """Load one split's pickle (and, unless use_gt_2d, its detections in the joints of `det_format`), keeping every
    `sample`-th row.

    A configured detections file that is missing is an error: the toolkit never falls back to GT 2D silently.
    """
    path = Path(root) / file
    if not path.is_file():
        hint = ("make it with python -m run.prepare_data synthetic --out " + str(root) if "synthetic" in str(root)
                else f"point --config.data.root at the folder that holds it, or put the pickles in {root}/ "
                     f"(README 'Preparing data from the forms you have')")
        raise ToolkitError(f"{not_found(path, 'data file')}; {hint}")
    if sample < 1:
        raise ToolkitError(f"sampling step must be >= 1, got {sample}")
    data = rows_to_posedata(load_pickle(path), path, num_joints)
    if not use_gt_2d:
        if not det_file:
            raise ToolkitError(f"no detections file is configured (data.det_file) for {path}; give one, or "
                               f"condition on ground-truth 2D with --gt (data.use_gt_2d=true)")
        det_path = Path(root) / det_file
        if not det_path.is_file():
            raise ToolkitError(f"detections file {det_path} (data.det_file) not found; make it (python -m "
                               f"run.prepare_data), or condition on ground-truth 2D with --gt (data.use_gt_2d=true)")
        data = attach_detections(data, load_pickle(det_path), split, det_path, detector_kinds(det_format))
        none = (data.det_conf <= 0).all(1)  # a camera without a detections file: its rows have none
        if none.any():
            data = data.subset(np.flatnonzero(~none))
            data.note = f"{int(none.sum())} rows without detections left out"
    return data.subset(slice(None, None, sample))


def sequence_ids(data: PoseData) -> np.ndarray:
    """[N] one id per run of consecutive rows of one sequence (subject, action, subaction, camera): the
    H36M-Toolbox layout keeps a sequence's frames together and in time order."""
    key = np.stack([data.subject, data.action, data.subaction, data.cameraid], 1)
    change = np.r_[True, (key[1:] != key[:-1]).any(1)]
    return np.cumsum(change) - 1


def validation_mask(data: PoseData, fraction: float, subjects: tuple[int, ...]) -> np.ndarray:
    """[N] bool: the training rows held out for validation (model selection), never test rows.

    With `subjects`, every row of those subjects; else `fraction` of the sequences (subject, action, subaction), the
    first ones of a fixed random order of them, so that the held-out sequences spread over subjects and actions and
    do not change with the run's seed."""
    if subjects:
        return np.isin(data.subject, subjects)
    seq = np.stack([data.subject, data.action, data.subaction], 1)
    unique, inverse = np.unique(seq, axis=0, return_inverse=True)
    order = np.random.default_rng(0).permutation(len(unique))
    held = np.zeros(len(unique), bool)
    held[order[:max(int(round(fraction * len(unique))), 1)]] = True
    return held[inverse.reshape(-1)]


def parse_subjects(text: str) -> tuple[int, ...]:
    """'9,11' or 'S9, S11' -> (9, 11); '' -> ()."""
    try:
        return tuple(int(s.strip().upper().lstrip("S")) for s in text.split(",") if s.strip())
    except ValueError as e:
        raise ToolkitError(f"subject list '{text}' should look like 1,5,6,7,8") from e


def load_data(config: ml_collections.ConfigDict, split: str) -> PoseData:
    """The 'train' or 'test' rows of a config (the training rows without the validation rows, see load_train_val)."""
    if split == "train":
        return load_train_val(config)[0]
    d = config.data
    return load_split(d.root, d.test_file, d.det_file, "test", d.test_sample, d.use_gt_2d, d.num_joints, d.det_format)


def load_train_val(config: ml_collections.ConfigDict) -> tuple[PoseData, PoseData | None]:
    """Training rows and the validation rows held out of them for model selection: with training.select_on = 'val'
    data.val_fraction of the training sequences, or every row of data.val_subjects; with 'test' (the paper's) all
    training rows and no validation rows (the monitor then scores the test split)."""
    d = config.data
    rows = load_split(d.root, d.train_file, d.det_file, "train", 1, d.use_gt_2d, d.num_joints, d.det_format)
    if config.training.select_on == "test":
        return rows.subset(slice(None, None, d.train_sample)), None
    held = validation_mask(rows, d.val_fraction, parse_subjects(d.val_subjects))
    if not held.any() or held.all():
        raise ToolkitError(f"data.val_subjects ({d.val_subjects or 'none'}) / data.val_fraction ({d.val_fraction}) "
                           f"hold out {'no' if not held.any() else 'every'} row of {d.root}/{d.train_file}; choose "
                           f"other validation subjects or a fraction, or select on the test rows (--select-on test)")
    return rows.subset(np.flatnonzero(~held)[::d.train_sample]), rows.subset(np.flatnonzero(held))
