"""A gravity-aligned world frame for a video's poses (README 'Export and the world frame').

One camera films a clip, so one floor lies under every frame. The floor is a plane through the feet where they stand:
 1. A first up direction: the mean direction from pelvis to thorax over the clip.
 2. In each pose the lower ankle along it is the foot that stands, if any does.
 3. A plane is fitted to those points and refitted to the points within `tolerance` of it, several times, so that
    jumps, steps in the air and frames of bad depth leave it. Where the points span too little to fix the plane's
    tilt (a person standing still gives two spots), a prior pulls the normal towards the first up direction: the fit
    minimises n' (C + lambda (I - u u')) n with C the points' scatter, u the first up and lambda `prior_mm` squared.
 4. Up is the plane's normal (towards the head); the floor lies `ankle_height` below the ankles' plane.
 5. Axes: Z up, X the camera's x axis laid on the floor, Y = Z x X (right-handed); the origin is on the floor under
    the first frame's pelvis. The root trajectory is kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.errors import ToolkitError

_ITERATIONS = 6


@dataclass
class WorldFrame:
    rotation: np.ndarray    # [3, 3] camera -> world: world = rotation @ (camera - origin)
    origin: np.ndarray      # [3] camera mm: on the floor under the first frame's pelvis
    up: np.ndarray          # [3] the floor's normal in camera coordinates
    standing: float         # share of the poses whose foot was used for the floor

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Camera mm [..., 3] -> world mm [..., 3]."""
        return (points - self.origin) @ self.rotation.T


def _plane(points: np.ndarray, prior: np.ndarray, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Normal [3] (on prior's side) and centroid [3] of the plane through points [K, 3], tilt regularised."""
    centre = points.mean(0)
    d = points - centre
    scatter = d.T @ d / len(points) + weight * (np.eye(3) - np.outer(prior, prior))
    normal = np.linalg.eigh(scatter)[1][:, 0]
    return normal * np.sign(normal @ prior or 1.0), centre


def check_clip(valid: np.ndarray, min_frames: int) -> None:
    """A clip (valid [T, P]: who is there) long enough to find a floor in, or a one-line error."""
    frames = int(valid.any(1).sum())
    if frames < min_frames:
        raise ToolkitError(f"a world frame needs people in at least {min_frames} frames to find the floor "
                           f"(lift.floor_min_frames), this clip has {frames}; drop --world for camera coordinates")


def world_frame(pose3d: np.ndarray, valid: np.ndarray, ankle_height: float = 80.0, tolerance: float = 60.0,
                prior_mm: float = 50.0, min_frames: int = 10) -> WorldFrame:
    """The world frame of the module docstring for poses [T, P, 17, 3] in camera mm, valid [T, P]."""
    check_clip(valid, min_frames)
    poses = pose3d[valid]  # [M, 17, 3] in time order, then slot
    spine = poses[:, 8] - poses[:, 0]
    up0 = spine.sum(0) / np.linalg.norm(spine.sum(0))
    # the standing foot of each pose: the lower ankle along the first up
    lower = np.where((poses[:, 3] @ up0 < poses[:, 6] @ up0)[:, None], poses[:, 3], poses[:, 6])  # [M, 3]
    heights = lower @ up0
    used = heights <= np.quantile(heights, 0.2) + tolerance
    normal, centre = up0, lower[used].mean(0)
    for _ in range(_ITERATIONS):
        normal, centre = _plane(lower[used], up0, prior_mm ** 2)
        used = np.abs((lower - centre) @ normal) <= tolerance
        if used.sum() < 3:
            raise ToolkitError("the feet of this clip lie on no plane (fewer than 3 within lift.floor_tolerance of "
                               "any fit); drop --world for camera coordinates")
    floor = centre - ankle_height * normal
    x = np.array([1.0, 0.0, 0.0]) - normal[0] * normal  # the camera's x axis on the floor
    if np.linalg.norm(x) < 1e-6:
        x = np.array([0.0, 0.0, 1.0]) - normal[2] * normal
    x /= np.linalg.norm(x)
    rotation = np.stack([x, np.cross(normal, x), normal])
    pelvis = poses[0, 0]
    origin = pelvis - ((pelvis - floor) @ normal) * normal
    return WorldFrame(rotation, origin, normal, float(used.mean()))
