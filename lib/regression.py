"""The regression baseline a user would pick instead of the prior: the lifter of Martinez et al. 2017 ("A simple
yet effective baseline for 3d human pose estimation", Section 3.1 of the paper), built from its description.

2D keypoints in, one 3D pose out: a linear layer to 1024 units, two residual blocks of two (linear, batch norm,
ReLU, dropout 0.5) layers each, a linear layer to the 3D pose, and a max-norm constraint of 1 on every layer's
weights. It is trained by the toolkit's trainer on the same rows, the same 2D (detector noise included) and the
same budget as a prior (model.name = 'MartinezLifter', configs/subvp/cmu_baseline.py). Two things differ from the
paper, so that it takes the toolkit's inputs: joints a detector does not give arrive as zeros with a visibility
flag per joint, and the output is the 3D pose in network space (x, y in the image, z the depth relative to the
root; docs/design.md, 'Data and coordinate frames'), predicted as an offset from the seen 2D.

It shares the score network's call signature, so every sampler, evaluation and the API run it unchanged: its
`predicts_pose` flag makes lib/sampling.sample return its one forward pass (one network evaluation) instead of a
reverse process.
"""
from __future__ import annotations

import torch
from torch import nn


class MartinezLifter(nn.Module):
    """2D [B, J, 2] (as a masked 2D condition [B, J, 3]) -> 3D [B, J, 3], network space."""

    predicts_pose = True

    def __init__(self, num_joints: int = 17, hidden_dim: int = 1024, n_blocks: int = 2, dropout: float = 0.5,
                 max_norm: float = 1.0):
        super().__init__()
        self.num_joints, self.max_norm = num_joints, max_norm

        def layer(fan_in: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(fan_in, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(),
                                 nn.Dropout(dropout))

        self.inp = layer(3 * num_joints)  # x, y and a visibility flag per joint
        self.blocks = nn.ModuleList(nn.Sequential(layer(hidden_dim), layer(hidden_dim)) for _ in range(n_blocks))
        self.out = nn.Linear(hidden_dim, 3 * num_joints)

    def forward(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """The 3D pose [B, J, 3] for the 2D condition [B, J, 3] (z = 0) of the joints `mask` [B, J, 3] marks as
        seen; x and t (the sampler's state and time) are not used."""
        b = condition.shape[0]
        seen = torch.ones_like(condition[..., 0]) if mask is None else mask[..., 0]  # [B, J]
        xy = condition[..., :2] * seen[..., None]  # [B, J, 2]
        h = self.inp(torch.cat([xy.reshape(b, -1), seen], -1))
        for block in self.blocks:
            h = h + block(h)
        offset = self.out(h).reshape(b, self.num_joints, 3)
        return offset + torch.cat([xy, torch.zeros_like(xy[..., :1])], -1)

    @torch.no_grad()
    def constrain(self) -> None:
        """The max-norm constraint, after every optimiser step: each unit's incoming weights have norm <= max_norm."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.renorm(m.weight, 2, 0, self.max_norm))


def regression_loss(model: nn.Module, x0: torch.Tensor, condition: torch.Tensor, mask: torch.Tensor
                    ) -> torch.Tensor:
    """Mean over the batch of 0.5 * the squared error summed over the J x 3 coordinates (the DSM loss's scale).
    x0, condition, mask: [B, J, 3]."""
    pred = model(x0, torch.zeros(x0.shape[0], device=x0.device), condition, mask)
    return 0.5 * (pred - x0).square().reshape(x0.shape[0], -1).sum(1).mean()
