"""Moves that start from an answer: the 'refined' aggregate of many hypotheses (lib/aggregate.py) and the warm
start of completion (lib/tasks/completion.py)."""
from __future__ import annotations

import dataclasses

import torch

from lib.errors import ToolkitError
from lib.lookup import nearest_2d, nearest_3d
from lib.model import ScoreFn
from lib.sampling import SamplerConfig
from lib.sde import SDE
from lib.sharded import sample_task
from lib.tasks.base import Task


def refine(score_fn: ScoreFn, sde: SDE, task: Task, hyps: torch.Tensor, t: float, steps: int, batch_size: int,
           device: torch.device, bf16: bool = False) -> torch.Tensor:
    """The 'refined' aggregate (lib/aggregate.py): the mean of the hypotheses [N, S, J, 3] (network space) moved to
    the prior's nearest mode under the task's condition: start at alpha(t) x at time t and run the drift-only
    process (drift_2m, `steps` evaluations; bf16: the precision of the sampler it follows) to eps. [N, J, 3]"""
    start = dataclasses.replace(task, x_init=hyps.mean(1) * float(sde.alpha(torch.tensor(t))), t_start=t)
    cfg = SamplerConfig(method="drift_2m", steps=steps, bf16=bf16)
    out, _, _ = sample_task(score_fn, sde, start, cfg, 1, batch_size, 0, device, progress=False)
    return out[:, 0]


def warm_start(score_fn: ScoreFn, sde: SDE, task: Task, how: str, t: float, bank: torch.Tensor | None,
               hypotheses: int, steps: int, batch_size: int, device: torch.device, bf16: bool = False
               ) -> tuple[Task, torch.Tensor | None]:
    """Completion from a plausible answer (README 'Completion'): the task starts at time t from the answer
    perturbed to t (alpha x + sigma z, a fresh z per hypothesis), its observation imputed as before. The answer is
    the training pose nearest on the seen joints (lib/lookup.py; bank [R, J, 3] in network space) or the mean of a
    few quick hypotheses (the drift-only sampler, `steps` evaluations each); its observed coordinates are the
    observation's. Returns the task and the answer [B, J, 3] (None for 'none')."""
    if how == "none":
        return task, None
    observed, mask = (task.observed, task.observed_mask) if task.observed is not None else (task.condition, task.mask)
    seen = mask[..., 0] > 0  # [B, J]
    if how == "nearest":
        if bank is None:
            raise ToolkitError("the 'nearest' warm start needs training poses: checkpoints of this toolkit carry "
                               "them (pose_bank); for other files use eval.warm_start=mean")
        answer = nearest_3d(bank, observed, seen) if (mask[..., 2] > 0).any() else \
            nearest_2d(bank, observed[..., :2], seen)
    else:
        quick, _, _ = sample_task(score_fn, sde, task, SamplerConfig(method="drift_ddim", steps=steps, bf16=bf16),
                                  hypotheses, batch_size, 1, device, progress=False)
        answer = quick.mean(1)
    answer = torch.where(mask > 0, observed, answer)
    return dataclasses.replace(task, x_init=answer, t_start=t, noised_start=True), answer
