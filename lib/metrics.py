"""Pose errors: MPJPE (Protocol 1), PA-MPJPE (Protocol 2, batched Procrustes), per-action tables."""
from __future__ import annotations

import numpy as np
import torch
from prettytable import PrettyTable

from lib.data import ACTIONS


def mpjpe(pred: torch.Tensor, gt: torch.Tensor, root: int | None = 0) -> torch.Tensor:
    """Mean per-joint position error per pose. pred, gt: [..., J, 3] -> [...]. Root-aligned unless root=None."""
    if root is not None:
        pred = pred - pred[..., root:root + 1, :]
        gt = gt - gt[..., root:root + 1, :]
    return (pred - gt).norm(dim=-1).mean(dim=-1)


def procrustes_align(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Similarity-align pred to gt (scale, rotation, translation), batched. pred, gt: [..., J, 3]."""
    pred, gt = pred.double(), gt.double()
    mu_p, mu_g = pred.mean(-2, keepdim=True), gt.mean(-2, keepdim=True)
    p0, g0 = pred - mu_p, gt - mu_g
    # Kabsch/Umeyama: H = P^T G, R = V diag(1, 1, det) U^T, s = trace(S D) / ||P||^2
    u, s, vt = torch.linalg.svd(p0.transpose(-1, -2) @ g0)
    d = torch.sign(torch.linalg.det(vt.transpose(-1, -2) @ u.transpose(-1, -2)))
    fix = torch.ones_like(s)
    fix[..., -1] = d
    rot = vt.transpose(-1, -2) @ (fix[..., :, None] * u.transpose(-1, -2))
    scale = (s * fix).sum(-1) / p0.square().sum((-1, -2)).clamp_min(1e-12)
    return (scale[..., None, None] * p0 @ rot.transpose(-1, -2) + mu_g).to(torch.float32)


def pa_mpjpe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """MPJPE after Procrustes alignment. [..., J, 3] -> [...]."""
    return mpjpe(procrustes_align(pred, gt), gt.float(), root=None)


def joint_errors(pred: torch.Tensor, gt: torch.Tensor, joints: torch.Tensor | None = None,
                 procrustes: bool = False) -> torch.Tensor:
    """Per-pose error over a subset of joints (mask [.., J] of 0/1) or all joints."""
    if procrustes:
        pred = procrustes_align(pred, gt)
    else:
        pred = pred - pred[..., :1, :]
        gt = gt - gt[..., :1, :]
    err = (pred - gt).norm(dim=-1)  # [..., J]
    if joints is None:
        return err.mean(-1)
    return (err * joints).sum(-1) / joints.sum(-1).clamp_min(1)


def per_action(errors: dict[str, np.ndarray], actions: np.ndarray) -> dict[str, dict[str, float]]:
    """Average each error column per action (ids or names) and over actions (the paper averages over actions).

    Human3.6M actions come first in the paper's order; other names (CMU, your own data) follow sorted.
    """
    table: dict[str, dict[str, float]] = {}
    labels = np.array([ACTIONS.get(a, str(a)) for a in actions.tolist()])
    found = set(labels.tolist())
    present = [a for a in ACTIONS.values() if a in found] + sorted(found - set(ACTIONS.values()))
    for name, err in errors.items():
        row = {a: float(err[labels == a].mean()) for a in present}
        row["Average"] = float(np.mean(list(row.values())))
        table[name] = row
    return table


def format_table(table: dict[str, dict[str, float]], title: str = "") -> str:
    """prettytable with one column per action and one row per metric."""
    columns = list(next(iter(table.values())).keys())
    pt = PrettyTable(["metric"] + columns)
    for name, row in table.items():
        pt.add_row([name] + [f"{row[c]:.1f}" for c in columns])
    pt.title = title or None
    return pt.get_string()
