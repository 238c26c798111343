"""One pose from S hypotheses without the ground truth, and a per-joint uncertainty.

The paper reports the oracle, min over S of the error, which needs the ground truth to pick a hypothesis. A user
needs one pose; these aggregators make it from the hypotheses alone (all vectorised over [N, S, J, 3]):
  mean     the mean pose
  median   the coordinate-wise median (per joint and axis; not the geometric median)
  jpma     per joint, the hypothesis whose x, y lies closest to the 2D input (D3DP's joint-wise reprojection-based
           multi-hypothesis aggregation; x, y are image coordinates here, so no camera is needed); joints without
           a 2D input (missing in comp2d, every joint of comp3d) take the median
  refined  the mean moved by the prior itself to its nearest mode: the drift-only process (the paper's --pflow, fast
           form) from a small time t (eval.refine_t) with the task's own condition, eval.refine_steps network
           evaluations per input (not per hypothesis); computed by lib/evaluate.refine
Observed joints of completion tasks are the same in every hypothesis, so every aggregate keeps them.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

AGGREGATORS: dict[str, Callable[..., torch.Tensor]] = {}


def register_aggregator(name: str):
    def deco(fn):
        AGGREGATORS[name] = fn
        return fn
    return deco


@register_aggregator("mean")
def mean_pose(hyps: torch.Tensor, **_) -> torch.Tensor:
    """[N, S, J, 3] -> [N, J, 3]."""
    return hyps.mean(1)


@register_aggregator("median")
def median_pose(hyps: torch.Tensor, **_) -> torch.Tensor:
    """Coordinate-wise median over the hypotheses (the lower middle value for even S). [N, S, J, 3] -> [N, J, 3]."""
    return hyps.median(1).values


@register_aggregator("jpma")
def jpma_pose(hyps: torch.Tensor, input2d: torch.Tensor | None = None, seen: torch.Tensor | None = None,
              **_) -> torch.Tensor:
    """Per joint, the hypothesis nearest the 2D input in x, y. input2d: [N, J, 2]; seen: [N, J] bool, where the
    input has that joint (else the median). Without any input it is the median."""
    med = median_pose(hyps)
    if input2d is None:
        return med
    dist = (hyps[..., :2] - input2d[:, None]).norm(dim=-1)  # [N, S, J]
    best = dist.argmin(1)  # [N, J]
    picked = torch.gather(hyps, 1, best[:, None, :, None].expand(-1, 1, -1, 3))[:, 0]  # [N, J, 3]
    if seen is None:
        return picked
    return torch.where(seen[..., None], picked, med)


@register_aggregator("refined")
def refined_pose(hyps: torch.Tensor, refined: torch.Tensor | None = None, **_) -> torch.Tensor:
    """The mean refined by the prior (`refined` [N, J, 3], made by lib/evaluate.refine); the mean itself where it
    was not computed (S = 1)."""
    return mean_pose(hyps) if refined is None else refined


def aggregate(hyps: torch.Tensor, name: str, **inputs) -> torch.Tensor:
    if name not in AGGREGATORS:
        raise ValueError(f"unknown aggregate '{name}'; choose one of {', '.join(AGGREGATORS)}")
    return AGGREGATORS[name](hyps, **inputs)


def uncertainty(hyps: torch.Tensor) -> torch.Tensor:
    """Per-joint spread of the hypotheses: RMS distance to their mean. [N, S, J, 3] -> [N, J] (0 for S = 1)."""
    return (hyps - hyps.mean(1, keepdim=True)).square().sum(-1).mean(1).sqrt()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two flat samples (average ranks for ties)."""
    ra, rb = _ranks(np.asarray(a, dtype=np.float64).ravel()), _ranks(np.asarray(b, dtype=np.float64).ravel())
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def calibration(spread: np.ndarray, error: np.ndarray) -> dict[str, float]:
    """How well the per-joint spread predicts the actual per-joint error (both [N, J], mm): their rank correlation
    and the mean error in the most and the least certain quarter of joints."""
    s, e = spread.ravel(), error.ravel()
    lo, hi = np.quantile(s, [0.25, 0.75])
    return {"corr": spearman(s, e), "err_certain": float(e[s <= lo].mean()), "err_uncertain": float(e[s >= hi].mean())}
