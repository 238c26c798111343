"""Human3.6M-Toolbox pickle datasets (DESIGN.md section 3) as flat arrays, and the normalisation."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lib.errors import ToolkitError
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


def normalize(pose_img: np.ndarray | torch.Tensor, image_size: float = 1000.0):
    """Pixels (x, y) and ratio-scaled depth z -> x/s*2-1, y/s*2-1, z/s*2. pose_img: [..., 3]."""
    out = pose_img * (2.0 / image_size)
    out[..., :2] -= 1.0
    return out


def denormalize(pose: np.ndarray | torch.Tensor, image_size: float = 1000.0):
    """Inverse of ``normalize``. pose: [..., 3] (or [..., 2])."""
    out = pose.clone() if isinstance(pose, torch.Tensor) else pose.copy()
    out[..., :2] += 1.0
    return out * (image_size / 2.0)


def box_ratio(box: np.ndarray | torch.Tensor):
    """Pixels per millimetre of depth: (x1 - x0 + 1) / 2000. box: [..., 4]."""
    return (box[..., 2] - box[..., 0] + 1.0) / 2000.0


def image_to_camera(pose_img, cam, box, root_depth):
    """Back to the camera frame in mm: Z = z/ratio + root_depth, X = (x-cx)/fx Z, Y = (y-cy)/fy Z.

    pose_img: [N, ..., J, 3] pixels; cam: [N, 4] (fx, fy, cx, cy); box: [N, 4]; root_depth: [N].
    """
    extra = pose_img.ndim - 2  # leading dims after N, before J
    shape = (cam.shape[0],) + (1,) * extra
    fx, fy, cx, cy = (cam[:, i].reshape(shape) for i in range(4))
    z = pose_img[..., 2] / box_ratio(box).reshape(shape) + root_depth.reshape(shape)
    x = (pose_img[..., 0] - cx) / fx * z
    y = (pose_img[..., 1] - cy) / fy * z
    stack = torch.stack if isinstance(pose_img, torch.Tensor) else np.stack
    return stack([x, y, z], -1)


def project(points_cam: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """Pinhole projection (no distortion). points_cam: [N, ..., 3] mm; cam: [N, 4] -> [N, ..., 2] px."""
    shape = (cam.shape[0],) + (1,) * (points_cam.ndim - 2)
    fx, fy, cx, cy = (cam[:, i].reshape(shape) for i in range(4))
    z = points_cam[..., 2]
    return np.stack([fx * points_cam[..., 0] / z + cx, fy * points_cam[..., 1] / z + cy], -1)


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
    action_name: np.ndarray | None = None  # [N] str: the row's 'action_name', else the Human3.6M name
    det2d: np.ndarray | None = None        # [N, J, 2] detected keypoints (pixels)
    det_conf: np.ndarray | None = None     # [N, J] detector confidences
    source: str = field(default="")

    def __len__(self) -> int:
        return self.pose_img.shape[0]

    def subset(self, idx: np.ndarray | slice) -> PoseData:
        pick = {k: (v[idx] if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}
        return PoseData(**pick)

    def gt3d(self, image_size: float, scale: float) -> torch.Tensor:
        """Network-space 3D poses [N, J, 3]."""
        return torch.from_numpy(normalize(self.pose_img.astype(np.float32), image_size) * scale)

    def cond2d(self, image_size: float, scale: float, use_gt: bool) -> torch.Tensor:
        """Network-space 2D conditions [N, J, 3] with z = 0 (GT 2D or detections)."""
        if use_gt or self.det2d is None:
            xy = self.pose_img[..., :2]
        else:
            xy = self.det2d
        pose = np.concatenate([xy, np.zeros_like(xy[..., :1])], -1).astype(np.float32)
        cond = normalize(pose, image_size) * scale
        cond[..., 2] = 0.0
        return torch.from_numpy(cond)


def _check_finite(name: str, arr: np.ndarray, path: Path) -> None:
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)).ravel()
        raise ToolkitError(f"{path}: field '{name}' has NaN/inf in {len(bad)} rows (first row {bad[0]}); "
                           f"clean or regenerate the file")


def _stack(rows: list[dict], name: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    try:
        arr = np.stack([np.asarray(r[name], dtype=np.float64).reshape(shape) for r in rows])
    except ValueError as e:
        raise ToolkitError(f"{path}: field '{name}' must have shape {shape} in every row ({e})") from e
    _check_finite(name, arr, path)
    return arr


def rows_to_posedata(rows: list[dict], path: Path, num_joints: int = 17) -> PoseData:
    """Validate and stack a list of H36M-Toolbox dicts."""
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
        raise ToolkitError(f"{path}: expected a non-empty list of dicts (one per frame and camera)")
    missing = [f for f in REQUIRED_FIELDS if f not in rows[0]]
    if missing:
        raise ToolkitError(f"{path}: rows lack field(s) {', '.join(missing)}; expected the H36M-Toolbox layout "
                           f"of DESIGN.md section 3")
    try:
        cam = np.array([[r["camera_param"][k] for k in ("fx", "fy", "cx", "cy")] for r in rows], dtype=np.float64)
        cam = cam.reshape(len(rows), 4)
        ints = {k: np.array([int(r[k]) for r in rows]) for k in ("action", "subject", "subaction", "cameraid")}
    except (KeyError, TypeError, ValueError) as e:
        raise ToolkitError(f"{path}: bad camera_param or id fields ({e}); each row needs camera_param "
                           f"with fx, fy, cx, cy and integer action/subject/subaction/cameraid") from e
    _check_finite("camera_param", cam, path)
    pose_cam = _stack(rows, "joint_3d_camera", (num_joints, 3), path)
    root_depth = (np.array([float(r["root_depth"]) for r in rows]) if "root_depth" in rows[0]
                  else pose_cam[:, 0, 2])
    _check_finite("root_depth", root_depth, path)
    names = np.array([str(r.get("action_name") or ACTIONS.get(a, a)) for r, a in zip(rows, ints["action"],
                                                                                      strict=True)])
    return PoseData(pose_img=_stack(rows, "joint_3d_image", (num_joints, 3), path), pose_cam=pose_cam,
                    cam=cam, box=_stack(rows, "box", (4,), path), root_depth=root_depth, source=str(path),
                    action_name=names, **ints)


def attach_detections(data: PoseData, det: dict, split: str, path: Path) -> PoseData:
    """Add detected 2D keypoints from an h36m_sh_dt_ft-style dict, checking row alignment."""
    try:
        part = det[split]
        kps = np.asarray(part["joint3d_image"], dtype=np.float64)
        conf = np.asarray(part["confidence"], dtype=np.float64)
    except (KeyError, TypeError) as e:
        raise ToolkitError(f"{path}: expected {{'{split}': {{'joint3d_image', 'confidence'}}}} ({e})") from e
    n, j = len(data), data.pose_img.shape[1]
    if kps.shape[0] != n or kps.shape[1:2] != (j,) or kps.shape[-1] < 2:
        raise ToolkitError(f"{path}: '{split}' detections have shape {kps.shape}, expected [{n}, {j}, 3] "
                           f"aligned row by row with the ground-truth pickle")
    _check_finite("joint3d_image", kps[..., :2], path)
    data.det2d = kps[..., :2]
    data.det_conf = conf.reshape(n, j)
    return data


def load_split(root: str | Path, file: str, det_file: str | None, split: str, sample: int,
               num_joints: int = 17, needed_by: str = "") -> PoseData:
    """Load one split's pickle (and detections if the file exists), keeping every `sample`-th row."""
    path = Path(root) / file
    if not path.is_file():
        hint = ("python -m run.prepare_data synthetic --out " + str(root) if "synthetic" in str(root)
                else f"put the Human3.6M pickles in {root}/ (README: 'Training on Human3.6M') "
                     f"or make the demo data with python -m run.prepare_data synthetic --out data/synthetic")
        raise ToolkitError(f"data file {path} not found{needed_by}; make it with: {hint}")
    if sample < 1:
        raise ToolkitError(f"sampling step must be >= 1, got {sample}")
    data = rows_to_posedata(load_pickle(path), path, num_joints)
    det_path = Path(root) / det_file if det_file else None
    if det_path is not None and det_path.is_file():
        data = attach_detections(data, load_pickle(det_path), split, det_path)
    return data.subset(slice(None, None, sample))
