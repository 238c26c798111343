"""Training augmentations that change the people and the views, with the 2D projected again (config data.rotate,
data.bone_scale, data.augment_p; README 'Robust conditioning and the regression baseline' has the measurements).

A training pose in camera millimetres is changed about its root (pelvis), then projected through its own camera
into network space exactly as the data were (lib/camera.py), so that its 2D condition is its new projection:
  rotate      a turn about the data's up axis (the mean pelvis-to-thorax direction of the training rows in camera
              coordinates, close to the cameras' vertical) by an angle uniform in +-rotate degrees: the person
              seen from another direction, as by a virtual camera moved around them
  bone_scale  every bone's length times exp(N(0, bone_scale^2)), mirrored bones alike, the joints placed again
              along the skeleton from the root: another person's proportions
"""
from __future__ import annotations

import math

import torch

from lib.camera import Frames, camera_to_image
from lib.skeleton import BONES, SYMMETRIC_BONES

_MIRROR = {right: left for left, right in SYMMETRIC_BONES}  # a right bone takes its left twin's factor


def up_axis(pose_cam: torch.Tensor) -> torch.Tensor:
    """The data's up axis [3]: the mean unit direction from the pelvis (0) to the thorax (8); pose_cam [N, J, 3]."""
    d = pose_cam[:, 8] - pose_cam[:, 0]
    mean = (d / d.norm(dim=-1, keepdim=True).clamp_min(1e-9)).mean(0)
    return mean / mean.norm().clamp_min(1e-9)


def rotate_about(rel: torch.Tensor, axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' rotation of root-relative poses rel [B, J, 3] about a unit axis [3] by angle [B] (radians)."""
    c, s = angle.cos()[:, None, None], angle.sin()[:, None, None]
    k = axis.to(rel)
    return rel * c + torch.cross(k.expand_as(rel), rel, dim=-1) * s + k * (rel @ k)[..., None] * (1 - c)


def scale_bones(rel: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Root-relative poses rel [B, J, 3] with bone b's length times factor [B, len(BONES)], joints placed again
    from the root along BONES (parents first)."""
    out = rel.clone()
    for b, (parent, child) in enumerate(BONES):
        out[:, child] = out[:, parent] + factor[:, b, None] * (rel[:, child] - rel[:, parent])
    return out


def new_people_and_views(pose_cam: torch.Tensor, cam: torch.Tensor, box: torch.Tensor, root_depth: torch.Tensor,
                         frames: Frames, axis: torch.Tensor, rotate: float, bone_scale: float
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Changed poses in network space [B, J, 3] and their 2D conditions [B, J, 3] (z = 0) from camera-frame
    poses pose_cam [B, J, 3] (mm) seen by intrinsics cam [B, 4] with their rows' boxes [B, 4] and root depths [B]
    (the root does not move, so they still hold); draws from torch's global generator."""
    b = pose_cam.shape[0]
    root = pose_cam[:, :1]
    rel = pose_cam - root
    if bone_scale > 0:
        factor = torch.exp(bone_scale * torch.randn(b, len(BONES), device=rel.device, dtype=rel.dtype))
        factor[:, list(_MIRROR)] = factor[:, list(_MIRROR.values())]
        rel = scale_bones(rel, factor)
    if rotate > 0:
        angle = (torch.rand(b, device=rel.device, dtype=rel.dtype) * 2 - 1) * math.radians(rotate)
        rel = rotate_about(rel, axis, angle)
    pose = root + rel
    img = camera_to_image(pose, cam, box, root_depth)
    net = frames.to_network(img).float()
    return net, torch.cat([net[..., :2], torch.zeros_like(net[..., :1])], -1)
