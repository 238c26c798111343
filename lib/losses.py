"""Denoising score matching with random condition masking: the GFPose training objective (docs/design.md,
'Training')."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ml_collections
import torch

from lib.model import ScoreFn
from lib.regression import regression_loss
from lib.sde import SDE, expand_like
from lib.skeleton import PARTS


@dataclass
class Batch:
    x0: torch.Tensor                    # [B, J, 3] clean poses, network space
    cond: torch.Tensor                  # [B, J, 3] 2D conditions (z = 0)
    mask: torch.Tensor | None = None    # [B, J, 3] condition masks; drawn by the loss when None
    dropped: torch.Tensor | None = None   # [B, J] bool: 2D joints a (simulated) detector did not give
    rates: tuple[float, float, float, float] | None = None   # masking rates (whole, part, joint, 3D condition);
                                                             # None: the config's (see mask_rates)


def random_condition_mask(batch: int, num_joints: int, p_whole: float, p_part: float, p_joint: float,
                          device: torch.device | str) -> torch.Tensor:
    """Training masks [B, J, 3]: each of whole pose / one body part / one joint dropped with its probability."""
    keep = torch.ones(batch, num_joints, device=device)
    keep[torch.rand(batch, device=device) < p_whole] = 0.0
    parts = torch.zeros(len(PARTS), num_joints, device=device)  # [P, J] part membership (Human3.6M skeleton)
    for k, joints in enumerate(PARTS.values()):
        parts[k, list(joints)] = 1.0
    part_idx = torch.randint(len(PARTS), (batch,), device=device)
    keep = keep * (1.0 - (torch.rand(batch, device=device) < p_part)[:, None] * parts[part_idx])
    joint_idx = torch.randint(num_joints, (batch,), device=device)
    drop_joint = torch.nn.functional.one_hot(joint_idx, num_joints).float()
    keep = keep * (1.0 - (torch.rand(batch, device=device) < p_joint)[:, None] * drop_joint)
    return keep[:, :, None].expand(batch, num_joints, 3).contiguous()


def mask_rates(training: ml_collections.ConfigDict, progress: float) -> tuple[float, float, float, float]:
    """The masking rates (whole pose, one part, one joint, 3D condition) at this point of the run: the paper's
    (training.mask_*_p, cond_3d_p), and from training.completion_from on the completion rates
    (training.completion_*_p), which show the network more partial conditions once it has learnt estimation."""
    if training.completion_from < 1.0 and progress >= training.completion_from:  # 1.0: never
        return (training.mask_whole_p, training.completion_part_p, training.completion_joint_p,
                training.completion_3d_p)
    return training.mask_whole_p, training.mask_part_p, training.mask_joint_p, training.cond_3d_p


def get_loss_fn(sde: SDE, training: ml_collections.ConfigDict, predicts_pose: bool = False
                ) -> Callable[[ScoreFn, Batch], torch.Tensor]:
    """loss_fn(score_fn, batch): mean over the batch of 0.5 * sum over 51 dims of (s(x_t, t) sigma(t) + z)^2.

    The paper's code sums over dimensions (reduce_mean False) and samples t ~ U(eps, 1); with probability
    cond_3d_p the condition is the 3D ground truth, and the condition masks are drawn per sample (at the batch's
    rates, else the config's). predicts_pose: the network is a regression baseline (lib/regression.py); the loss is
    its squared error from the 2D condition, masked the same way (never the 3D condition).
    """

    def regression(score_fn: ScoreFn, batch: Batch) -> torch.Tensor:
        whole, part, joint, _ = batch.rates or mask_rates(training, 0.0)
        condition, mask = draw_condition(batch, (whole, part, joint, 0.0))
        return regression_loss(score_fn.net, batch.x0, condition, mask)

    def loss_fn(score_fn: ScoreFn, batch: Batch) -> torch.Tensor:
        x0 = batch.x0
        b = x0.shape[0]
        t = torch.rand(b, device=x0.device) * (sde.T - training.eps) + training.eps  # [B]
        z = torch.randn_like(x0)
        mean, std = sde.marginal_prob(x0, t)
        xt = mean + expand_like(std, x0) * z
        condition, mask = draw_condition(batch, batch.rates or mask_rates(training, 0.0))
        residual = z - score_fn.eps(xt, t, condition, mask)  # score * std = -eps_theta
        return 0.5 * residual.square().reshape(b, -1).sum(dim=1).mean()

    return regression if predicts_pose else loss_fn


def draw_condition(batch: Batch, rates: tuple[float, float, float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The condition [B, J, 3] and mask [B, J, 3] a training sample sees: the 3D ground truth with the rates' last
    probability, else the 2D condition; masks drawn at the rates (unless the batch brings its own); a detector's
    missing joints mask the 2D condition, not the 3D one."""
    x0 = batch.x0
    b, j, _ = x0.shape
    whole, part, joint, cond_3d = rates
    use_3d = (torch.rand(b, device=x0.device) < cond_3d)[:, None, None]
    condition = torch.where(use_3d, x0, batch.cond)
    mask = batch.mask if batch.mask is not None else random_condition_mask(b, j, whole, part, joint, x0.device)
    if batch.dropped is not None:
        mask = mask * (use_3d | ~batch.dropped[..., None]).float()
    return condition, mask
