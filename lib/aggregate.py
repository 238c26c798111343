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
           evaluations per input (not per hypothesis); computed by lib/refine.refine
  reproj   the posterior expectation given the 2D evidence: the hypotheses weighted by how well they reproject onto
           it, w_s ~ p(u | x_s)^temper (eval.reproj_temper). With the detector's error table (eval.detector_table)
           p is its error model (lib/detnoise.py): per joint a bias, a spread and a heavy tail, relative to the
           size of the given joints (fewer than two: the mean); else a Gaussian,
           exp(-sum_j c_j |x_sj - u_j|^2 / (2 sigma^2)) with the joints' confidences c_j and the 2D noise sigma
           (eval.reproj_sigma); in the spirit of FMPose3D's reprojection-based aggregation
Observed joints of completion tasks are the same in every hypothesis, so every aggregate keeps them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lib.detnoise import DetectorNoise, given_size


@dataclass
class Evidence:
    """What aggregators may use besides the hypotheses (network space)."""

    input2d: torch.Tensor | None = None   # [N, J, 2] the 2D input (est, comp2d)
    seen: torch.Tensor | None = None      # [N, J] bool: the joints it gives
    conf: torch.Tensor | None = None      # [N, J] their confidences (1 for ground truth)
    sigma: float = 1.0                    # the 2D noise's std (reproj)
    noise: DetectorNoise | None = None    # the detector's error model (reproj), in place of sigma and conf
    temper: float = 1.0                   # reproj: the power of the likelihood
    refined: torch.Tensor | None = None   # [N, J, 3] the refined pose (lib/refine.refine)


AGGREGATORS: dict[str, Callable[[torch.Tensor, Evidence], torch.Tensor]] = {}


def register_aggregator(name: str):
    def deco(fn):
        AGGREGATORS[name] = fn
        return fn
    return deco


@register_aggregator("mean")
def mean_pose(hyps: torch.Tensor, ev: Evidence) -> torch.Tensor:
    """[N, S, J, 3] -> [N, J, 3]."""
    return hyps.mean(1)


@register_aggregator("median")
def median_pose(hyps: torch.Tensor, ev: Evidence) -> torch.Tensor:
    """Coordinate-wise median over the hypotheses (the lower middle value for even S). [N, S, J, 3] -> [N, J, 3]."""
    return hyps.median(1).values


@register_aggregator("jpma")
def jpma_pose(hyps: torch.Tensor, ev: Evidence) -> torch.Tensor:
    """Per joint, the hypothesis nearest the 2D input in x, y; joints the input does not give (ev.seen) take the
    median. Without any input it is the median."""
    med = median_pose(hyps, ev)
    if ev.input2d is None:
        return med
    dist = (hyps[..., :2] - ev.input2d[:, None]).norm(dim=-1)  # [N, S, J]
    best = dist.argmin(1)  # [N, J]
    picked = torch.gather(hyps, 1, best[:, None, :, None].expand(-1, 1, -1, 3))[:, 0]  # [N, J, 3]
    return picked if ev.seen is None else torch.where(ev.seen[..., None], picked, med)


@register_aggregator("refined")
def refined_pose(hyps: torch.Tensor, ev: Evidence) -> torch.Tensor:
    """The mean refined by the prior (made by lib/refine.refine); the mean itself where it was not computed."""
    return mean_pose(hyps, ev) if ev.refined is None else ev.refined


@register_aggregator("reproj")
def reproj_pose(hyps: torch.Tensor, ev: Evidence) -> torch.Tensor:
    """Posterior expectation under the 2D likelihood (module docstring): the hypotheses [N, S, J, 3] weighted over the
    joints the input gives; the mean without an input."""
    if ev.input2d is None:
        return mean_pose(hyps, ev)
    seen = torch.ones(ev.input2d.shape[:2]) if ev.seen is None else ev.seen.float()  # [N, J]
    if ev.noise is not None:  # the detector's mixture: a core and a wide component per joint, relative to the size
        n = ev.noise
        size = given_size(ev.input2d, seen > 0)[:, None, None, None]  # [N, 1, 1, 1]
        r = hyps[..., :2] - ev.input2d[:, None] - n.bias * size  # [N, S, J, 2]
        sd = n.scale * size  # [N, 1, J, 2]
        core = -0.5 * (r / sd).square().sum(-1) - sd.log().sum(-1)  # [N, S, J] log densities (up to a constant)
        wide = -0.5 * (r / (n.ratio[:, None] * sd)).square().sum(-1) - (n.ratio[:, None] * sd).log().sum(-1)
        loglik = torch.logaddexp(torch.log1p(-n.outlier) + core, torch.log(n.outlier.clamp_min(1e-12)) + wide)
        # [N, S]; a person with fewer than two joints given has no size, and no say: the mean
        logw = torch.where(seen.sum(1, keepdim=True) >= 2, (loglik * seen[:, None]).sum(-1), 0.0)
    else:
        c = seen if ev.conf is None else ev.conf.float() * seen  # [N, J]
        sq = (hyps[..., :2] - ev.input2d[:, None]).square().sum(-1)  # [N, S, J]
        logw = -(c[:, None] * sq).sum(-1) / (2.0 * ev.sigma ** 2)  # [N, S]
    w = torch.softmax(ev.temper * logw, dim=1)
    return (w[..., None, None] * hyps).sum(1)


def aggregate(hyps: torch.Tensor, name: str, ev: Evidence | None = None) -> torch.Tensor:
    if name not in AGGREGATORS:
        raise ValueError(f"unknown aggregate '{name}'; choose one of {', '.join(AGGREGATORS)}")
    return AGGREGATORS[name](hyps, ev or Evidence())


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
