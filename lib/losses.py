"""Denoising score matching with random condition masking (GFPose training objective)."""
from __future__ import annotations

import torch

from lib.model import ScoreFn
from lib.sde import SDE, expand_like
from lib.skeleton import PARTS


def random_condition_mask(batch: int, num_joints: int, p_whole: float, p_part: float, p_joint: float,
                          device: torch.device | str) -> torch.Tensor:
    """Training masks [B, J, 3]: each of whole pose / one body part / one joint dropped with its probability."""
    keep = torch.ones(batch, num_joints, device=device)
    whole = torch.rand(batch, device=device) < p_whole
    keep[whole] = 0.0
    if num_joints == 17:  # body parts are defined on the Human3.6M skeleton
        parts = torch.zeros(len(PARTS), num_joints, device=device)  # [P, J] part membership
        for k, joints in enumerate(PARTS.values()):
            parts[k, list(joints)] = 1.0
        part_idx = torch.randint(len(PARTS), (batch,), device=device)
        drop_part = (torch.rand(batch, device=device) < p_part)[:, None] * parts[part_idx]  # [B, J]
        keep = keep * (1.0 - drop_part)
    joint_idx = torch.randint(num_joints, (batch,), device=device)
    drop_joint = torch.nn.functional.one_hot(joint_idx, num_joints).float()
    keep = keep * (1.0 - (torch.rand(batch, device=device) < p_joint)[:, None] * drop_joint)
    return keep[:, :, None].expand(batch, num_joints, 3).contiguous()


def dsm_loss(score_fn: ScoreFn, sde: SDE, x0: torch.Tensor, cond2d: torch.Tensor,
             mask_probs: tuple[float, float, float], p_cond_3d: float, eps: float = 1e-5,
             mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of 0.5 * sum_d (s(x_t, t) sigma(t) + z)^2 (score matching, sum over 51 dims).

    x0: [B, J, 3] clean poses; cond2d: [B, J, 3] 2D conditions (z = 0); mask: [B, J, 3] condition masks
    (drawn with mask_probs when not given).
    """
    b, j, _ = x0.shape
    t = torch.rand(b, device=x0.device) * (sde.T - eps) + eps  # [B]
    z = torch.randn_like(x0)
    mean, std = sde.marginal_prob(x0, t)
    xt = mean + expand_like(std, x0) * z
    use_3d = (torch.rand(b, device=x0.device) < p_cond_3d)[:, None, None]
    condition = torch.where(use_3d, x0, cond2d)  # [B, J, 3]
    if mask is None:
        mask = random_condition_mask(b, j, *mask_probs, device=x0.device)
    # score * std = -eps_theta, so the residual is z - eps_theta.
    residual = z - score_fn.eps(xt, t, condition, mask)
    return 0.5 * residual.square().reshape(b, -1).sum(dim=1).mean()
