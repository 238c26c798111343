"""Exponential moving average of parameters, in the official {'decay', 'num_updates', 'shadow_params'} format."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class ExponentialMovingAverage:
    def __init__(self, parameters: Iterable[torch.nn.Parameter], decay: float, use_num_updates: bool = True):
        if not 0.0 <= decay <= 1.0:
            raise ValueError("EMA decay must be in [0, 1]")
        self.decay = decay
        self.num_updates: int | None = 0 if use_num_updates else None
        self.shadow_params = [p.detach().clone() for p in parameters if p.requires_grad]

    @torch.no_grad()
    def update(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """shadow <- shadow - (1 - d) (shadow - param), d warmed up by (1 + n) / (10 + n)."""
        decay = self.decay
        if self.num_updates is not None:
            self.num_updates += 1
            decay = min(decay, (1 + self.num_updates) / (10 + self.num_updates))
        params = [p for p in parameters if p.requires_grad]
        torch._foreach_lerp_(self.shadow_params, params, 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        for s, p in zip(self.shadow_params, [p for p in parameters if p.requires_grad], strict=True):
            p.copy_(s)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow_params": self.shadow_params}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shadow = state["shadow_params"]
        if len(shadow) != len(self.shadow_params):
            raise ValueError(f"EMA has {len(shadow)} tensors, the model {len(self.shadow_params)}")
        for i, (s, own) in enumerate(zip(shadow, self.shadow_params, strict=True)):
            if s.shape != own.shape:
                raise ValueError(f"EMA tensor {i} has shape {tuple(s.shape)}, the model {tuple(own.shape)}")
        self.decay = float(state["decay"])
        self.num_updates = None if state["num_updates"] is None else int(state["num_updates"])
        self.shadow_params = [s.to(own.device, own.dtype).clone()
                              for s, own in zip(shadow, self.shadow_params, strict=True)]
