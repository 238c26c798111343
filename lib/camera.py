"""Coordinate frames, the one home of every conversion (after VideoPose3D's common/camera.py).

Frames (docs/design.md, 'Data and coordinate frames'):
  world     millimetres, Z up (mocap)                        -> camera: `Camera.world_to_camera`
  camera    millimetres, camera frame (`joint_3d_camera`)     <-> image: `camera_to_image` / `image_to_camera`
  image     x, y pinhole pixels; z = ratio * (Z - Z_pelvis)   (`joint_3d_image`), ratio = (box width + 1) / 2000
  network   image / image_size * 2 - 1 (x, y), z / image_size * 2, times the data scale (30)  (`Frames`)

Functions take numpy arrays or torch tensors; per-row camera data broadcast over any axes between the row
axis and the joint axis, e.g. hypotheses [N, S, J, 3] with cameras [N, 4].
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

BOX_MM = 2000.0  # the box is the projection of a 2000 mm square around the pelvis

Array = np.ndarray | torch.Tensor


def _stack(parts: list, like: Array) -> Array:
    return torch.stack(parts, -1) if isinstance(like, torch.Tensor) else np.stack(parts, -1)


def _intrinsics(cam: Array, like: Array) -> tuple[Array, ...]:
    """fx, fy, cx, cy of cam [N, 4] (or [4]) shaped to broadcast against like [N, ..., J]."""
    shape = (cam.shape[0],) + (1,) * (like.ndim - 1) if cam.ndim == 2 else ()
    return tuple(cam[..., i].reshape(shape) for i in range(4))


def project(points: Array, cam: Array) -> Array:
    """Pinhole projection (no distortion): camera-frame mm [N, ..., J, 3] -> pixels [N, ..., J, 2]."""
    fx, fy, cx, cy = _intrinsics(cam, points[..., 0])
    z = points[..., 2]
    return _stack([fx * points[..., 0] / z + cx, fy * points[..., 1] / z + cy], points)


def unproject(uv: Array, depth: Array, cam: Array) -> Array:
    """Pixels [N, ..., J, 2] at camera depths [N, ..., J] (mm) -> camera-frame mm [N, ..., J, 3]."""
    fx, fy, cx, cy = _intrinsics(cam, depth)
    return _stack([(uv[..., 0] - cx) / fx * depth, (uv[..., 1] - cy) / fy * depth, depth], uv)


def box_around_root(root: Array, cam: Array) -> Array:
    """The box [N, 4] (x0, y0, x1, y1): projection of the 2000 mm square around root [N, 3] (camera mm)."""
    half = BOX_MM / 2.0
    offset = root.new_tensor([half, half, 0.0]) if isinstance(root, torch.Tensor) else np.array([half, half, 0.0])
    corners = _stack([root - offset, root + offset], root).swapaxes(-1, -2)  # [N, 2, 3]
    uv = project(corners, cam)  # [N, 2, 2]
    return uv.reshape(uv.shape[0], 4)


def box_ratio(box: Array) -> Array:
    """Pixels per millimetre of depth: (x1 - x0 + 1) / 2000. box: [..., 4] -> [...]."""
    return (box[..., 2] - box[..., 0] + 1.0) / BOX_MM


def camera_to_image(pose_cam: Array, cam: Array, box: Array, root_depth: Array) -> Array:
    """Camera-frame mm [N, ..., J, 3] -> joint_3d_image (pixels, z = ratio * (Z - root depth))."""
    z = pose_cam[..., 2]
    ratio, depth = _rows(box_ratio(box), z), _rows(root_depth, z)
    rel = (z - depth) * ratio
    uv = project(pose_cam, cam)
    return _stack([uv[..., 0], uv[..., 1], rel], pose_cam)


def image_to_camera(pose_img: Array, cam: Array, box: Array, root_depth: Array) -> Array:
    """joint_3d_image [N, ..., J, 3] -> camera-frame mm: Z = z / ratio + root depth, X, Y by unprojection."""
    z = pose_img[..., 2]
    depth = z / _rows(box_ratio(box), z) + _rows(root_depth, z)
    return unproject(pose_img[..., :2], depth, cam)


def _rows(v: Array, like: Array) -> Array:
    """Per-row values [N] shaped [N, 1, ..., 1] to broadcast against like [N, ..., J]."""
    return v.reshape((v.shape[0],) + (1,) * (like.ndim - 1))


@dataclass(frozen=True)
class Frames:
    """Image pixels <-> network space: normalised over an image_size square, times the data scale."""

    image_size: float = 1000.0
    scale: float = 30.0

    def normalise(self, pose_img: Array) -> Array:
        """Pixels [..., 2 or 3] -> x/s*2-1, y/s*2-1 (z/s*2)."""
        out = pose_img * (2.0 / self.image_size)
        out[..., :2] -= 1.0
        return out

    def denormalise(self, pose: Array) -> Array:
        out = pose.clone() if isinstance(pose, torch.Tensor) else pose.copy()
        out[..., :2] += 1.0
        return out * (self.image_size / 2.0)

    def to_network(self, pose_img: Array) -> Array:
        return self.normalise(pose_img) * self.scale

    def to_image(self, pose_net: Array) -> Array:
        return self.denormalise(pose_net / self.scale)


@dataclass
class RowCameras:
    """Per-row camera, box and root depth: what maps a network-space pose of that row to millimetres."""

    cam: np.ndarray          # [N, 4] fx, fy, cx, cy
    box: np.ndarray          # [N, 4]
    root_depth: np.ndarray   # [N] mm

    def __len__(self) -> int:
        return self.cam.shape[0]

    def _t(self) -> tuple[torch.Tensor, ...]:
        return tuple(torch.as_tensor(v, dtype=torch.float64) for v in (self.cam, self.box, self.root_depth))

    def network_to_camera(self, pose: torch.Tensor, frames: Frames) -> torch.Tensor:
        """Network space [N, ..., J, 3] -> camera frame mm (x, y from the pose's own pixels, depth at the
        row's root depth: the paper's mapping)."""
        cam, box, depth = self._t()
        return image_to_camera(frames.to_image(pose.double()), cam, box, depth).float()

    def camera_to_network(self, pose_cam: np.ndarray | torch.Tensor, frames: Frames) -> torch.Tensor:
        """Camera-frame mm [N, J, 3] -> network space, with each row's camera, box and root depth."""
        cam, box, depth = self._t()
        img = camera_to_image(torch.as_tensor(pose_cam, dtype=torch.float64), cam, box, depth)
        return frames.to_network(img).float()


@dataclass
class Camera:
    """A calibrated pinhole camera: world-to-camera rotation, centre (world mm), fx fy cx cy, distortion."""

    rot: np.ndarray                                  # [3, 3] world -> camera
    centre: np.ndarray                               # [3]
    intrinsics: np.ndarray                           # [4] fx, fy, cx, cy
    k: np.ndarray = field(default_factory=lambda: np.zeros(3))
    p: np.ndarray = field(default_factory=lambda: np.zeros(2))
    name: str = ""

    def world_to_camera(self, world: np.ndarray) -> np.ndarray:
        """World mm [..., 3] -> camera frame mm [..., 3]."""
        return np.einsum("ij,...j->...i", self.rot, world - self.centre)


def look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-to-camera rotation [3, 3] (rows: right, down, forward) for a camera at centre, world Z up."""
    fwd = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(fwd, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(fwd, right), fwd])


def quaternion_matrix(q) -> np.ndarray:
    """Rotation matrix [3, 3] of a unit quaternion (w, x, y, z)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(np.asarray(q, dtype=np.float64))
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def retarget(uv: Array, cam: Array, target: Array) -> Array:
    """Pixels [N, ..., J, 2] of cameras cam [N, 4] (or [4]) -> pixels of cameras `target` at the same place and
    orientation: the same rays (u - c) / f, seen with the target's focal length and principal point."""
    fx, fy, cx, cy = _intrinsics(cam, uv[..., 0])
    tx, ty, tcx, tcy = _intrinsics(target, uv[..., 0])
    return _stack([(uv[..., 0] - cx) / fx * tx + tcx, (uv[..., 1] - cy) / fy * ty + tcy], uv)
