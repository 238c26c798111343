"""est: 3D pose estimation from 2D keypoints, S hypotheses per input (DESIGN.md section 5)."""
from __future__ import annotations

import torch

from lib.metrics import Table, mpjpe, mpjpe_root, pa_mpjpe, per_action
from lib.tasks.base import Context, NoOptions, Prepared, Task, TaskUnit, register_task, xyz_mask, zero_z


def estimation(cond2d: torch.Tensor) -> Task:
    """Condition on x, y of every joint; depth is free; start from the prior. cond2d: [B, J, 3]."""
    keep = torch.ones(cond2d.shape[:2], device=cond2d.device)
    return Task(condition=zero_z(cond2d), mask=xyz_mask(keep, (0, 1)))


def hypothesis_errors(pred_mm: torch.Tensor, gt_mm: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-hypothesis P1, P2 and root-aligned MPJPE [N, S] of camera-frame poses pred [N, S, J, 3], gt [N, J, 3]."""
    gt = gt_mm[:, None].expand_as(pred_mm)
    return {"p1": mpjpe(pred_mm, gt), "p2": pa_mpjpe(pred_mm, gt), "p1_root": mpjpe_root(pred_mm, gt)}


def diversity(pred_mm: torch.Tensor) -> torch.Tensor:
    """Per joint, the RMS distance between two distinct root-relative hypotheses (E|a - b|^2 = 2 S/(S-1) var),
    averaged over joints. [N, S, J, 3] -> [N] (0 for S = 1)."""
    s = pred_mm.shape[1]
    rel = pred_mm - pred_mm[..., :1, :]
    var = (rel - rel.mean(1, keepdim=True)).square().sum(-1).mean(1)  # [N, J]
    return (2.0 * var * s / max(s - 1, 1)).sqrt().mean(-1)


@register_task
class Estimation(TaskUnit):
    name = "est"
    help = "3D pose estimation from 2D keypoints"
    titles = {
        "p1": "P1 (min over S)", "p2": "P2 (min over S)", "p1_root": "MPJPE root-aligned (min over S)",
        "p1_hyp_mean": "P1 mean of per-hypothesis errors", "p2_hyp_mean": "P2 mean of per-hypothesis errors",
        "diversity": "diversity (RMS distance between hypotheses)",
    }

    def build(self, ctx: Context, opts: NoOptions) -> Prepared:
        cond = ctx.test.cond2d(ctx.frames)
        return Prepared(task=estimation(cond), title=f"est: 3D from {ctx.test.source_2d}, S = {ctx.hypo} (mm)",
                        arrays={"input2d": (cond[..., :2] / ctx.frames.scale).numpy()[None, :, None]})

    def metrics(self, preds: dict[str, torch.Tensor], ctx: Context, prep: Prepared, opts: NoOptions) -> Table:
        pred_mm = ctx.test.rows.network_to_camera(next(iter(preds.values())), ctx.frames)  # [N, S, J, 3]
        err = hypothesis_errors(pred_mm, torch.from_numpy(ctx.test.pose_cam).float())
        rows = {k: v.min(1).values for k, v in err.items()}
        rows |= {"p1_hyp_mean": err["p1"].mean(1), "p2_hyp_mean": err["p2"].mean(1), "diversity": diversity(pred_mm)}
        return per_action({k: v.numpy() for k, v in rows.items()}, ctx.test.action_name)
