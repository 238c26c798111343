"""Video: following people over frames, a second smoothing pass of the prior, and how jittery a motion is."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from lib.tasks.observe import observe_2d


def tracks(idx: tuple[np.ndarray, np.ndarray], track: np.ndarray) -> dict[tuple[int, int], int]:
    """(frame, track) -> row of the people that can be followed over time: those with a track id, or the only person
    when the input has one slot and no ids. idx: (frames, slots) of the rows; track [T, P] ids (-1: none)."""
    ids = np.where(track[idx] >= 0, track[idx], 0 if track.shape[1] == 1 else -1)
    return {(int(t), int(i)): m for m, (t, i) in enumerate(zip(idx[0], ids, strict=True)) if i >= 0}


def smooth_depth(depth: np.ndarray, where: dict[tuple[int, int], int], window: int) -> np.ndarray:
    """Centred moving average of each track's root depth [M] over `window` frames (what is there of it)."""
    out = depth.copy()
    half = window // 2
    for (t, i), m in where.items():
        near = [where[(t + d, i)] for d in range(-half, half + 1) if (t + d, i) in where]
        out[m] = depth[near].mean()
    return out


def smooth_poses(prior, pose: torch.Tensor, cond: torch.Tensor, seen: torch.Tensor,
                 where: dict[tuple[int, int], int], seed: int) -> torch.Tensor:
    """Second pass: each tracked person starts from the average of its first-pass poses [M, 17, 3] (normalised) in the
    frames before and after, at time lift.smooth_t (its mean alpha(t) x, as den starts from the pose itself), and
    the drift-only sampler runs with that frame's own 2D cond [M, 17, 3] (network space) of the `seen` [M, 17]
    joints, all frames in one batch."""
    lc, scale = prior.config.lift, prior.frames.scale
    if not where:
        return pose
    rows = list(where.values())
    near = torch.tensor([[where.get((t + d, i), m) for d in (-1, 0, 1)] for (t, i), m in where.items()])
    avg = pose[near].mean(1)  # [R, 17, 3]: a missing neighbour counts as the frame itself
    x0 = prior.sde.alpha(torch.tensor(lc.smooth_t)) * avg * scale
    task = replace(observe_2d(cond[rows], seen[rows], lc.completion), x_init=x0, t_start=lc.smooth_t)
    pose = pose.clone()
    pose[rows] = prior.run_task(task, 1, method="drift_2m", steps=lc.smooth_steps, seed=seed)[:, 0]
    return pose


def jitter(poses: np.ndarray, valid: np.ndarray) -> float:
    """Mean joint acceleration |p[t+1] - 2 p[t] + p[t-1]| (mm / frame^2) of [T, 17, 3] poses where three
    consecutive frames are valid."""
    acc = np.linalg.norm(poses[2:] - 2 * poses[1:-1] + poses[:-2], axis=-1).mean(-1)  # [T-2]
    ok = valid[2:] & valid[1:-1] & valid[:-2]
    return float(acc[ok].mean()) if ok.any() else float("nan")
