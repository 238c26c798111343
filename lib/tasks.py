"""Tasks as data for the sampler: condition, condition mask, imputation target, initial state, start time.

All tensors are in network space (normalised coordinates times data scale), shaped [B, J, 3].
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from lib.skeleton import COMPLETION_CANDIDATES


@dataclass
class Task:
    condition: torch.Tensor                     # [B, J, 3] what the network is conditioned on
    mask: torch.Tensor                          # [B, J, 3] 1 where the condition is seen
    observed: torch.Tensor | None = None        # [B, J, 3] coordinates kept by imputation
    observed_mask: torch.Tensor | None = None   # [B, J, 3] 1 where `observed` is imputed
    x_init: torch.Tensor | None = None          # [B, J, 3] initial state at t_start (None: prior)
    t_start: float = 1.0

    def __len__(self) -> int:
        return self.condition.shape[0]

    def _map(self, fn) -> Task:
        return replace(self, **{f.name: fn(getattr(self, f.name)) for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})

    def repeat(self, hypotheses: int) -> Task:
        """Each input repeated S times, hypotheses of one input adjacent: [B*S, J, 3]."""
        return self._map(lambda v: v.repeat_interleave(hypotheses, dim=0))

    def slice(self, start: int, stop: int) -> Task:
        return self._map(lambda v: v[start:stop])

    def to(self, device: torch.device | str) -> Task:
        return self._map(lambda v: v.to(device))


def _xyz_mask(joint_mask: torch.Tensor, dims: tuple[int, ...] = (0, 1, 2)) -> torch.Tensor:
    """[B, J] joint mask -> [B, J, 3] coordinate mask on the given dims."""
    dim_mask = torch.zeros(3, device=joint_mask.device)
    dim_mask[list(dims)] = 1.0
    return joint_mask.float()[..., None] * dim_mask


def estimation(cond2d: torch.Tensor) -> Task:
    """est: condition on x, y of every joint; depth is free; start from the prior."""
    keep = torch.ones(cond2d.shape[:2], device=cond2d.device)
    return Task(condition=_zero_z(cond2d), mask=_xyz_mask(keep, (0, 1)))


def completion_2d(cond2d: torch.Tensor, missing: torch.Tensor) -> Task:
    """comp2d: occluded 2D joints (missing [B, J] bool); observed x, y are imputed."""
    cond = _zero_z(cond2d) * (~missing).float()[..., None]
    mask = _xyz_mask(~missing, (0, 1))
    return Task(condition=cond, mask=mask, observed=cond, observed_mask=mask)


def completion_3d(pose3d: torch.Tensor, missing: torch.Tensor) -> Task:
    """comp3d: partial 3D pose; the observed joints are imputed, the missing ones sampled."""
    cond = pose3d * (~missing).float()[..., None]
    mask = _xyz_mask(~missing)
    return Task(condition=cond, mask=mask, observed=cond, observed_mask=mask)


def generation(n: int, num_joints: int = 17, device: torch.device | str = "cpu") -> Task:
    """gen: no condition at all."""
    zeros = torch.zeros(n, num_joints, 3, device=device)
    return Task(condition=zeros, mask=zeros.clone())


def denoising(noisy: torch.Tensor, t_start: float) -> Task:
    """den: start the reverse process at the noisy pose at time t_start, no condition."""
    zeros = torch.zeros_like(noisy)
    return Task(condition=zeros, mask=zeros.clone(), x_init=noisy, t_start=t_start)


def _zero_z(pose: torch.Tensor) -> torch.Tensor:
    out = pose.clone()
    out[..., 2] = 0.0
    return out


def random_missing(n: int, k: int, generator: torch.Generator, num_joints: int = 17,
                   candidates: tuple[int, ...] = COMPLETION_CANDIDATES) -> torch.Tensor:
    """[N, J] bool with k distinct joints per row drawn from the candidates (the paper's --randj)."""
    if not 1 <= k <= len(candidates):
        raise ValueError(f"--randj must be between 1 and {len(candidates)} (the candidate joints "
                         f"{list(candidates)}), got {k}")
    pick = torch.rand(n, len(candidates), generator=generator).argsort(dim=1)[:, :k]  # [N, k]
    missing = torch.zeros(n, num_joints, dtype=torch.bool)
    missing.scatter_(1, torch.tensor(candidates)[pick], True)
    return missing


def fixed_missing(n: int, joints: list[int], num_joints: int = 17) -> torch.Tensor:
    """[N, J] bool with the same joints missing in every row (the paper's --jlist)."""
    missing = torch.zeros(n, num_joints, dtype=torch.bool)
    missing[:, joints] = True
    return missing
