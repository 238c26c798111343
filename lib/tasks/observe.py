"""Observations as tasks: one code path for 2D keypoints with joints missing, whatever made them missing.

est, comp2d and lifting are the same task with a different set of seen joints: comp2d hides joints on purpose, a
detector drops some, gives others a low confidence, or names a different point (lib/keypoints.py). Every unseen
joint is masked out of the condition, and the prior completes it (docs/design.md, 'Tasks').

How the seen coordinates are used (`completion`):
  condition-only  the network is conditioned on them (the paper's est; lifting; the network's x, y may move off
                  a detection it does not believe)
  condition       conditioned and imputed at every step (the paper's comp2d and comp3d: the output keeps them)
  impute          imputed only; the network sees no condition and the unconditional prior completes the rest
"""
from __future__ import annotations

import torch

from lib.errors import ToolkitError
from lib.tasks.base import Task, xyz_mask, zero_z

COMPLETIONS = ("condition", "impute", "condition-only")


def _observe(observed: torch.Tensor, mask: torch.Tensor, completion: str) -> Task:
    if completion not in COMPLETIONS:
        raise ToolkitError(f"completion must be one of {', '.join(COMPLETIONS)}, got {completion!r}")
    if completion == "condition-only":
        return Task(condition=observed, mask=mask)
    if completion == "condition":
        return Task(condition=observed, mask=mask, observed=observed, observed_mask=mask)
    none = torch.zeros_like(observed)
    return Task(condition=none, mask=none.clone(), observed=observed, observed_mask=mask)


def observe_2d(cond2d: torch.Tensor, seen: torch.Tensor | None = None, completion: str = "condition-only") -> Task:
    """2D keypoints [B, J, 3] (network space, z ignored) of which the joints `seen` [B, J] bool are known."""
    seen = torch.ones(cond2d.shape[:2], dtype=torch.bool, device=cond2d.device) if seen is None else seen
    cond = zero_z(cond2d) * seen.float()[..., None]
    return _observe(cond, xyz_mask(seen, (0, 1)), completion)


def observe_3d(pose3d: torch.Tensor, missing: torch.Tensor, completion: str = "condition") -> Task:
    """A partial 3D pose [B, J, 3] with joints `missing` [B, J] bool; comp3d."""
    return _observe(pose3d * (~missing).float()[..., None], xyz_mask(~missing), completion)
