"""Answers made by looking up training poses: the yardsticks of completion and the warm start of the prior.

Given the joints an input sees, the training pose that fits them best after a similarity transform:
  nearest_3d  a partial 3D pose: scale and translation (the training set covers the orientations)
  nearest_2d  2D keypoints: in-plane rotation, scale and translation of the training pose's x, y (depth scaled with
              it): a 2D-to-3D lookup
Both are vectorised over [chunk, R, J] and return the fitted training pose for every input, in the input's frame.
"""
from __future__ import annotations

import torch


def _mean_over(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted mean over the joint axis -2 of v [..., J, C] with weights w [..., J, 1]."""
    return (v * w).sum(-2, keepdim=True) / w.sum(-2, keepdim=True).clamp_min(1.0)


def nearest_3d(bank: torch.Tensor, target: torch.Tensor, seen: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """bank [R, J, 3] training poses, target [N, J, 3] with seen [N, J] joints -> [N, J, 3]: per target, the bank
    pose s p + t with the least squared error on the seen joints (s > 0, t fitted)."""
    out = []
    for i in range(0, len(target), chunk):
        w = seen[i:i + chunk, None, :, None].float()  # [n, 1, J, 1]
        y = target[i:i + chunk, None]  # [n, 1, J, 3]
        p = bank[None]  # [1, R, J, 3]
        pc, yc = p - _mean_over(p, w), y - _mean_over(y, w)
        s = ((pc * yc * w).sum((-1, -2)) / (pc.square() * w).sum((-1, -2)).clamp_min(1e-9)).clamp_min(1e-3)  # [n, R]
        fit = s[..., None, None] * pc + _mean_over(y, w)  # [n, R, J, 3]
        err = ((fit - y).square() * w).sum((-1, -2))  # [n, R]
        out.append(fit[torch.arange(len(w)), err.argmin(1)])
    return torch.cat(out) if out else target.clone()


def nearest_2d(bank: torch.Tensor, target2d: torch.Tensor, seen: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """bank [R, J, 3] training poses, target2d [N, J, 2] with seen [N, J] joints -> [N, J, 3]: per target, the bank
    pose whose x, y fit the seen joints best after a rotation in the image plane, a scale and a translation
    (least squares, closed form with complex numbers: s e^{i theta} = sum conj(p) y / sum |p|^2); its depth is
    scaled by s."""
    out = []
    for i in range(0, len(target2d), chunk):
        w = seen[i:i + chunk, None, :, None].float()  # [n, 1, J, 1]
        y = target2d[i:i + chunk, None]  # [n, 1, J, 2]
        p = bank[None, ..., :2]  # [1, R, J, 2]
        pc, yc = p - _mean_over(p, w), y - _mean_over(y, w)
        pz, yz = torch.complex(pc[..., 0], pc[..., 1]), torch.complex(yc[..., 0], yc[..., 1])  # [., ., J]
        wj = w[..., 0]
        a = (pz.conj() * yz * wj).sum(-1) / (pz.abs().square() * wj).sum(-1).clamp_min(1e-9)  # [n, R]
        fit = a[..., None] * pz  # [n, R, J] complex, centred
        err = ((fit - yz).abs().square() * wj).sum(-1)  # [n, R]
        best = err.argmin(1)
        rows = torch.arange(len(w))
        xy = torch.stack([fit[rows, best].real, fit[rows, best].imag], -1) + _mean_over(y, w)[:, 0]  # [n, J, 2]
        z = bank[best, :, 2:] * a[rows, best].abs()[:, None, None]  # [n, J, 1]
        out.append(torch.cat([xy, z], -1))
    return torch.cat(out) if out else torch.cat([target2d, torch.zeros_like(target2d[..., :1])], -1)
