"""Robust conditioning: the prior says which detected keypoints it does not believe (README 'Robust conditioning
and the regression baseline').

A detector errs by single joints far off, by left / right swaps and by whole people. The conditioned prior already
moves its own x, y away from a keypoint that fits no plausible pose (the residual). Here that residual decides:
  1. Swaps. Each left / right pair of the 2D (both joints given) is swapped in turn, and every alternative is
     lifted with the deterministic sampler beside the original. A swap is kept when its score is lower than the
     original's by `swap_margin` (swaps are rare: the Stacked Hourglass table has 0.3-1.6 % per pair).
  2. Outliers. A joint whose residual lies beyond `outlier_k` times the detector's typical error for that joint
     is treated as missing, and the prior completes it (the path of comp2d and low confidence); again, at most
     `rounds` times.
  3. Whole people. A person with more than `flag_share` of its given joints disbelieved is flagged implausible.

The typical error tau of joint j (a share of the pose size, the larger side of the box around the given 2D) is the
detector's: its error table's 90 % quantile of the error norm over the table's median pose size
(lib/detnoise.py), or without a table tau_0 / confidence. The score of a pose is sum_j min((r_j / tau_j)^2,
outlier_k^2) over its given joints, r_j the residual relative to the pose size: a truncated quadratic, so that one
outlier cannot outweigh the rest.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lib.detnoise import given_size, load_table
from lib.skeleton import LEFT_JOINTS, RIGHT_JOINTS

PAIRS = tuple(zip(LEFT_JOINTS, RIGHT_JOINTS, strict=True))  # the left / right pairs tried as swaps
TAU_0 = 0.05            # without a table: the typical error at confidence 1, a share of the pose size
ROBUST_MODES = ("auto", "on", "off")  # robust.mode; auto: on where the detector's table is given


@dataclass
class RobustSettings:
    """The config's `robust` section (its defaults and help live there) and the detector's table (eval.detector_table,
    "" for none)."""

    table: str
    swap_margin: float
    outlier_k: float
    rounds: int
    flag_share: float

    @classmethod
    def from_config(cls, config) -> RobustSettings | None:
        """The settings of a whole config, or None where robust conditioning is off: robust.mode 'off', or 'auto'
        without the detector's table (with confidences alone it does not win)."""
        robust, table = config.robust, config.eval.detector_table
        if robust.mode == "off" or (robust.mode == "auto" and not table):
            return None
        return cls(table, float(robust.swap_margin), float(robust.outlier_k), int(robust.rounds),
                   float(robust.flag_share))


@dataclass
class RobustResult:
    condition: torch.Tensor   # [N, J, 3] the 2D the prior believes (swaps undone, z = 0)
    seen: torch.Tensor        # [N, J] bool: the joints given to it (outliers no longer)
    pose: torch.Tensor        # [N, J, 3] the deterministic pose of the last pass
    plain: torch.Tensor       # [N, J, 3] the deterministic pose from the detector's 2D as given
    swapped: torch.Tensor     # [N] the index in PAIRS of the swap undone, -1 for none
    dropped: torch.Tensor     # [N, J] bool: joints given by the detector and disbelieved
    implausible: torch.Tensor  # [N] bool: more than flag_share of the given joints disbelieved
    passes: int               # sampler passes per person (NFE = passes x the sampler's steps)


def typical_error(table_path: str, conf: torch.Tensor | None, shape: tuple[int, int]) -> torch.Tensor:
    """tau [N, J]: the detector's typical error of each joint, a share of the pose size (module docstring)."""
    if table_path:
        table = load_table(table_path)
        size = float(table["pose_size_px_median"])
        tau = torch.tensor([float(j["error_px_quantiles"]["90"]) / size for j in table["joints"]])
        return tau.expand(shape).clone()
    if conf is None:
        return torch.full(shape, TAU_0)
    return TAU_0 / conf.float().clamp(0.1, 1.0)


def _scores(pose: torch.Tensor, cond: torch.Tensor, seen: torch.Tensor, size: torch.Tensor, tau: torch.Tensor,
            cap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(z [N, J]: residual over tau, 0 where not given; score [N]); size [N] the pose sizes."""
    r = (pose[..., :2] - cond[..., :2]).norm(dim=-1) / size[:, None]
    z = r / tau * seen.float()
    return z, z.square().clamp(max=cap ** 2).sum(-1)


def robust_condition(lift: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], cond: torch.Tensor,
                     seen: torch.Tensor, conf: torch.Tensor | None, settings: RobustSettings) -> RobustResult:
    """lift(cond [M, J, 3], seen [M, J]) -> poses [M, J, 3]: one deterministic pass of the prior (network space).
    cond [N, J, 3] the detected 2D (z = 0), seen [N, J] the joints given, conf [N, J] their confidences (None:
    all 1)."""
    n, j, _ = cond.shape
    tau = typical_error(settings.table, conf, (n, j))
    swap_margin, outlier_k, rounds = settings.swap_margin, settings.outlier_k, settings.rounds
    cap = outlier_k if outlier_k > 0 else float("inf")
    # 1. the original and every swap, in one pass: [N, 1 + P, J, 3]
    alts = [cond]
    for a, b in PAIRS:
        alt = cond.clone()
        alt[:, [a, b]] = cond[:, [b, a]]
        alts.append(alt)
    stacked = torch.stack(alts, 1)
    poses = lift(stacked.reshape(-1, j, 3), seen.repeat_interleave(len(alts), 0)).reshape(n, len(alts), j, 3)
    both = torch.stack([torch.ones(n, dtype=torch.bool)] + [seen[:, a] & seen[:, b] for a, b in PAIRS], 1)
    size = given_size(cond[..., :2], seen)  # a swap or a dropped joint does not change it
    score = torch.stack([_scores(poses[:, c], stacked[:, c], seen, size, tau, cap)[1] for c in range(len(alts))], 1)
    score = torch.where(both, score, torch.inf)  # [N, 1 + P]; a swap needs both joints given
    best = score[:, 1:].argmin(1)
    take = score[:, 1:].gather(1, best[:, None])[:, 0] < score[:, 0] - swap_margin
    swapped = torch.where(take, best, -1)
    pick = torch.where(take, best + 1, 0)
    condition = stacked[torch.arange(n), pick]
    pose = poses[torch.arange(n), pick]
    given, now, passes = seen.clone(), seen.clone(), 1 + len(PAIRS)
    # 2. outliers: disbelieved joints become missing, the prior completes them
    for _ in range(rounds if outlier_k > 0 else 0):
        z, _ = _scores(pose, condition, now, size, tau, cap)
        out = z > outlier_k
        if not out.any():
            break
        now = now & ~out
        redo = out.any(1)
        pose = pose.clone()
        pose[redo] = lift(condition[redo], now[redo])
        passes += 1
    dropped = given & ~now
    implausible = dropped.sum(1) > settings.flag_share * given.sum(1).clamp_min(1)
    return RobustResult(condition * now[..., None].float(), now, pose, poses[:, 0], swapped, dropped, implausible,
                        passes)
