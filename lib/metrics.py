"""Pose errors as the paper computes them, and per-action tables keyed by stable metric ids.

Protocol 1 (`mpjpe`, docs/design.md, 'Metrics'): the mean joint distance in mm between the prediction mapped to the
camera frame and `joint_3d_camera`, **without** root alignment. Protocol 2 (`pa_mpjpe`): the same after a
MATLAB-style Procrustes alignment (scale, rotation, translation, `reflection='best'`). `mpjpe_root` is the
root-aligned MPJPE that most other papers call Protocol 1; the tables show it as a separate row.
"""
from __future__ import annotations

import numpy as np
import torch
from prettytable import PrettyTable

from lib.data import ACTIONS

Table = dict[str, dict[str, float]]  # metric id -> column (action or set) -> value


def joint_distances(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Euclidean distance per joint. pred, gt: [..., J, 3] -> [..., J]."""
    return (pred - gt).norm(dim=-1)


def mpjpe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean per-joint position error, no alignment (the paper's Protocol 1). [..., J, 3] -> [...]."""
    return joint_distances(pred, gt).mean(-1)


def root_relative(pose: torch.Tensor, root: int = 0) -> torch.Tensor:
    return pose - pose[..., root:root + 1, :]


def mpjpe_root(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """MPJPE after aligning the roots (joint 0). [..., J, 3] -> [...]."""
    return mpjpe(root_relative(pred), root_relative(gt))


def procrustes_align(pred: torch.Tensor, gt: torch.Tensor, reflection: bool = True) -> torch.Tensor:
    """Similarity-align pred to gt, batched: MATLAB's procrustes(gt, pred) with scaling. [..., J, 3].

    reflection=True is MATLAB's 'best' (the paper's choice): the orthogonal part may be a reflection when that
    fits better. reflection=False forces a proper rotation (Kabsch/Umeyama).
    """
    pred, gt = pred.double(), gt.double()
    mu_p, mu_g = pred.mean(-2, keepdim=True), gt.mean(-2, keepdim=True)
    p0, g0 = pred - mu_p, gt - mu_g
    # H = P^T G = U S V^T; the best orthogonal map is R = V U^T; a proper rotation flips the last axis if det < 0
    u, s, vt = torch.linalg.svd(p0.transpose(-1, -2) @ g0)
    fix = torch.ones_like(s)
    if not reflection:
        fix[..., -1] = torch.sign(torch.linalg.det(vt.transpose(-1, -2) @ u.transpose(-1, -2)))
    rot = vt.transpose(-1, -2) @ (fix[..., :, None] * u.transpose(-1, -2))
    scale = (s * fix).sum(-1) / p0.square().sum((-1, -2)).clamp_min(1e-12)
    return (scale[..., None, None] * p0 @ rot.transpose(-1, -2) + mu_g).float()


def pa_mpjpe(pred: torch.Tensor, gt: torch.Tensor, reflection: bool = True) -> torch.Tensor:
    """MPJPE after Procrustes alignment (the paper's Protocol 2). [..., J, 3] -> [...]."""
    return mpjpe(procrustes_align(pred, gt, reflection), gt.float())


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the last axis where mask [..., J] is 1 (0 where the mask is empty)."""
    mask = mask.float()
    return (values * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)


def action_order(labels: np.ndarray) -> list[str]:
    """Human3.6M actions first in the paper's order (ids 2..16), other names (CMU, your own) sorted after."""
    found = set(labels.tolist())
    return [a for a in ACTIONS.values() if a in found] + sorted(found - set(ACTIONS.values()))


def action_labels(actions: np.ndarray) -> np.ndarray:
    """Action names of rows given as names or Human3.6M ids."""
    return np.array([ACTIONS.get(a, str(a)) for a in actions.tolist()])


def per_action(errors: dict[str, np.ndarray], actions: np.ndarray) -> Table:
    """Mean of each per-row error per action, then over actions ('Average', as the paper averages)."""
    labels = action_labels(actions)
    order = action_order(labels)
    table: Table = {}
    for metric, err in errors.items():
        err = np.asarray(err, dtype=np.float64)
        row = {a: float(err[labels == a].mean()) for a in order}
        row["Average"] = float(np.mean(list(row.values())))
        table[metric] = row
    return table


def format_table(table: Table, titles: dict[str, str] | None = None, title: str = "") -> str:
    """prettytable with one column per action (or set) and one row per metric, titled for display only."""
    titles = titles or {}
    columns = list(next(iter(table.values())).keys())
    pt = PrettyTable(["metric"] + columns)
    for metric, row in table.items():
        pt.add_row([titles.get(metric, metric)] + [f"{row[c]:.1f}" for c in columns])
    pt.title = title or None
    return pt.get_string()
