"""est: 3D pose estimation from 2D keypoints, S hypotheses per input (docs/design.md, 'Tasks')."""
from __future__ import annotations

import torch

from lib.metrics import Table, per_action
from lib.tasks.base import BuiltTask, EvalInputs, NoOptions, Task, TaskDefinition, register_task
from lib.tasks.hypotheses import TITLES, evidence, outputs, score_hypotheses
from lib.tasks.observe import observe_2d


def estimation(cond2d: torch.Tensor, seen: torch.Tensor | None = None) -> Task:
    """Condition on x, y of the seen joints (all by default); depth is free; start from the prior. cond2d: [B, J, 3],
    seen: [B, J] bool (lib/tasks/observe.py: joints a detector gives with low confidence or as another point)."""
    return observe_2d(cond2d, seen, "condition-only")


def diversity(pred_mm: torch.Tensor) -> torch.Tensor:
    """Per joint, the RMS distance between two distinct root-relative hypotheses (E|a - b|^2 = 2 S/(S-1) var),
    averaged over joints. [N, S, J, 3] -> [N] (0 for S = 1)."""
    s = pred_mm.shape[1]
    rel = pred_mm - pred_mm[..., :1, :]
    var = (rel - rel.mean(1, keepdim=True)).square().sum(-1).mean(1)  # [N, J]
    return (2.0 * var * s / max(s - 1, 1)).sqrt().mean(-1)


@register_task
class Estimation(TaskDefinition):
    name = "est"
    help = "3D pose estimation from 2D keypoints"
    aggregates = True
    robust = True
    titles = TITLES | {"diversity": "diversity (RMS distance between hypotheses)",
                       "robust_swaps": "robust: share of poses with a left / right swap undone",
                       "robust_dropped": "robust: detected joints disbelieved per pose",
                       "robust_implausible": "robust: share of poses flagged implausible"}

    def build(self, ctx: EvalInputs, opts: NoOptions) -> BuiltTask:
        cond, seen = ctx.test.cond2d(ctx.frames), ctx.test.seen2d(ctx.min_conf)
        unseen = float((~seen).sum(1).float().mean())
        masked = f", {unseen:.2g} joints per pose not given (confidence, other points)" if unseen else ""
        title = f"est: 3D from {ctx.test.source_2d}{masked}, S = {ctx.hypo} (mm)"
        return BuiltTask(task=estimation(cond, seen), title=title, info={"input2d": cond[..., :2], "seen": seen},
                        arrays={"input2d": (cond[..., :2] / ctx.frames.scale).numpy()[None, :, None]})

    def metrics(self, preds: dict[str, torch.Tensor], ctx: EvalInputs, prep: BuiltTask, opts: NoOptions) -> Table:
        pred = next(iter(preds.values()))
        table = score_hypotheses(pred, ctx, evidence(ctx, prep.info))
        if (r := prep.info.get("robust")) is not None:
            table |= per_action({"robust_swaps": (r.swapped >= 0).float().numpy(),
                                 "robust_dropped": r.dropped.sum(1).float().numpy(),
                                 "robust_implausible": r.implausible.float().numpy()}, ctx.test.action_name)
        if pred.shape[1] == 1:
            return table
        spread = diversity(ctx.test.rows.network_to_camera(pred, ctx.frames)).numpy()
        return table | per_action({"diversity": spread}, ctx.test.action_name)

    def outputs(self, pred: torch.Tensor, ctx: EvalInputs, prep: BuiltTask) -> dict:
        return outputs(pred, ctx, evidence(ctx, prep.info))
