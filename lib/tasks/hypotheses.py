"""Scoring of S hypotheses per input, shared by est, comp2d and comp3d: the oracle (min over S, which needs the
ground truth), the mean of per-hypothesis errors, every aggregate (one pose made without the ground truth,
lib/aggregate.py) and the per-joint uncertainty with how well it predicts the error.

Metric ids: 'p1', 'p2', 'p1_root' (oracle), 'p1_hyp_mean', 'p2_hyp_mean', 'p1@NAME', 'p2@NAME', 'p1_root@NAME'
(the aggregate NAME), and 'unc_spread', 'unc_corr', 'unc_err_certain', 'unc_err_uncertain' for the aggregate the
user picked (--reduce, eval.reduce). Completion tasks add the same over the missing joints ('..._missing').
"""
from __future__ import annotations

import numpy as np
import torch

from lib.aggregate import AGGREGATORS, Evidence, aggregate, calibration, uncertainty
from lib.metrics import (
    Table,
    action_labels,
    action_order,
    joint_distances,
    masked_mean,
    per_action,
    procrustes_align,
    root_relative,
)
from lib.tasks.base import EvalInputs

TITLES = {
    "p1": "P1 oracle (min over S)", "p2": "P2 oracle (min over S)", "p1_root": "MPJPE root-aligned, oracle",
    "p1_hyp_mean": "P1 mean of per-hypothesis errors", "p2_hyp_mean": "P2 mean of per-hypothesis errors",
    "unc_spread": "uncertainty: mean spread (mm)", "unc_corr": "uncertainty: rank corr. with error",
    "unc_err_certain": "error of the most certain 25% joints", "unc_err_uncertain": "error of the least certain 25%",
}
TITLES |= {f"{m}@{a}": f"{label} of the {a} pose" for a in AGGREGATORS
           for m, label in (("p1", "P1"), ("p2", "P2"), ("p1_root", "MPJPE root-aligned"))}


def _errors(pred_mm: torch.Tensor, gt_mm: torch.Tensor, joints: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per-joint distances for P1, P2 and the root-aligned MPJPE, averaged over `joints` [.., J] (all if None)."""
    gt = gt_mm.expand_as(pred_mm)
    dist = {"p1": joint_distances(pred_mm, gt), "p2": joint_distances(procrustes_align(pred_mm, gt), gt),
            "p1_root": joint_distances(root_relative(pred_mm), root_relative(gt))}
    if joints is None:
        return {k: v.mean(-1) for k, v in dist.items()}
    return {k: masked_mean(v, joints.expand(v.shape)) for k, v in dist.items()}


def evidence(ctx: EvalInputs, info: dict) -> Evidence:
    """The aggregators' inputs from a built task's info (input2d, seen, refined) and the data's confidences."""
    conf = None
    if info.get("input2d") is not None and ctx.test.det_conf is not None:
        conf = torch.from_numpy(ctx.test.det_conf).float()
    sigma = ctx.reproj_sigma / ctx.frames.image_size * 2.0 * ctx.frames.scale  # px -> network units
    detected = ctx.test is not None and ctx.test.det2d is not None  # the detector's model fits its own keypoints
    return Evidence(info.get("input2d"), info.get("seen"), conf, sigma, refined=info.get("refined"),
                    noise=ctx.detector if detected else None, temper=ctx.reproj_temper)


def score_hypotheses(pred: torch.Tensor, ctx: EvalInputs, ev: Evidence, missing: torch.Tensor | None = None) -> Table:
    """pred: network-space hypotheses [N, S, J, 3]; ev: what the aggregators use (the 2D input of est and comp2d);
    missing: [N, J] joints to score separately (completion)."""
    pred_mm = ctx.test.rows.network_to_camera(pred, ctx.frames)  # [N, S, J, 3]
    gt = torch.from_numpy(ctx.test.pose_cam).float()
    subsets = {"": None} | ({"_missing": missing} if missing is not None else {})
    single = pred.shape[1] == 1  # one hypothesis: its own error; no mean of errors, aggregate or spread
    rows: dict[str, torch.Tensor] = {}
    for suffix, joints in subsets.items():
        hyp = _errors(pred_mm, gt[:, None], None if joints is None else joints[:, None])  # [N, S] each
        rows |= {f"{k}{suffix}": v.min(1).values for k, v in hyp.items()}
        if not single:
            rows |= {f"{k}_hyp_mean{suffix}": hyp[k].mean(1) for k in ("p1", "p2")}
    if single:
        return per_action({k: v.numpy() for k, v in rows.items()}, ctx.test.action_name)
    poses = {name: aggregate(pred, name, ev) for name in AGGREGATORS}
    for name, pose in poses.items():
        mm = ctx.test.rows.network_to_camera(pose, ctx.frames)
        for suffix, joints in subsets.items():
            rows |= {f"{k}@{name}{suffix}": v for k, v in _errors(mm, gt, joints).items()}
    table = per_action({k: v.numpy() for k, v in rows.items()}, ctx.test.action_name)
    chosen = ctx.test.rows.network_to_camera(poses[ctx.reduce], ctx.frames)
    return table | _calibration(uncertainty(pred_mm).numpy(), joint_distances(chosen, gt).numpy(),
                                ctx.test.action_name)


def _calibration(spread: np.ndarray, error: np.ndarray, actions: np.ndarray) -> Table:
    """Per action: mean spread, its rank correlation with the chosen pose's per-joint error, and the error of the
    most / least certain quarter of joints; 'Average' over actions."""
    labels = action_labels(actions)
    table: Table = {k: {} for k in ("unc_spread", "unc_corr", "unc_err_certain", "unc_err_uncertain")}
    for a in action_order(labels):
        idx = labels == a
        cal = calibration(spread[idx], error[idx])
        table["unc_spread"][a] = float(spread[idx].mean())
        for k in ("corr", "err_certain", "err_uncertain"):
            table[f"unc_{k}"][a] = cal[k]
    for row in table.values():
        row["Average"] = float(np.mean(list(row.values())))
    return table


def outputs(pred: torch.Tensor, ctx: EvalInputs, ev: Evidence) -> dict[str, np.ndarray]:
    """results.npz fields: every aggregate [A, N, J, 3] (normalised), their names, the uncertainty [N, J]."""
    names = list(AGGREGATORS)
    agg = torch.stack([aggregate(pred, n, ev) for n in names])
    return {"aggregates": (agg / ctx.frames.scale).numpy(), "aggregate_names": np.array(names),
            "uncertainty": (uncertainty(pred) / ctx.frames.scale).numpy()}
