"""Tasks as data for the sampler, and the task registry.

A `Task` is what one sampler call needs (docs/design.md, 'Tasks'): the condition and its mask, the coordinates to
impute, the initial state and the start time, all in network space, shaped [B, J, 3]. A `TaskDefinition` is one
task of the toolkit (est, comp2d, comp3d, gen, den, ...): its options, how it builds a Task from a dataset,
and its metrics. Adding a task is one module with a `@register_task` class, imported in lib/tasks/__init__.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

import numpy as np
import torch

from lib.camera import Frames
from lib.data import PoseData
from lib.detnoise import DetectorNoise
from lib.metrics import Table
from lib.robust import RobustSettings


@dataclass
class Task:
    condition: torch.Tensor                     # [B, J, 3] what the network is conditioned on
    mask: torch.Tensor                          # [B, J, 3] 1 where the condition is seen
    observed: torch.Tensor | None = None        # [B, J, 3] coordinates kept by imputation
    observed_mask: torch.Tensor | None = None   # [B, J, 3] 1 where `observed` is imputed
    x_init: torch.Tensor | None = None          # [B, J, 3] initial state at t_start (None: the prior)
    t_start: float = 1.0
    noised_start: bool = False                  # start from x_init perturbed to t_start: alpha x_init + sigma z

    def __len__(self) -> int:
        return self.condition.shape[0]

    def _map(self, fn) -> Task:
        return replace(self, **{f.name: fn(v) for f in fields(self) if isinstance(v := getattr(self, f.name),
                                                                                  torch.Tensor)})

    def repeat(self, hypotheses: int) -> Task:
        """Each input repeated S times, hypotheses of one input adjacent: [B*S, J, 3]."""
        return self._map(lambda v: v.repeat_interleave(hypotheses, dim=0))

    def slice(self, start: int, stop: int) -> Task:
        return self._map(lambda v: v[start:stop])

    def to(self, device: torch.device | str) -> Task:
        return self._map(lambda v: v.to(device))


def xyz_mask(joint_mask: torch.Tensor, dims: tuple[int, ...] = (0, 1, 2)) -> torch.Tensor:
    """[B, J] joint mask -> [B, J, 3] coordinate mask on the given dims."""
    dim_mask = torch.zeros(3, device=joint_mask.device)
    dim_mask[list(dims)] = 1.0
    return joint_mask.float()[..., None] * dim_mask


def zero_z(pose: torch.Tensor) -> torch.Tensor:
    out = pose.clone()
    out[..., 2] = 0.0
    return out


# ------------------------------------------------------------------------------------------ task units


def option(default: Any, help: str, *, type: type | None = None, choices: tuple | None = None,  # noqa: A002
           flag: tuple[str, ...] | None = None) -> Any:
    """A task option: a dataclass field whose metadata the command lines turn into a flag (by default
    --field-name; `flag` gives the names, e.g. ('--num-poses', '--num'))."""
    return field(default=default, metadata={"help": help, "type": type or builtins_type(default),
                                            "choices": choices, "flag": flag})


def builtins_type(default: Any) -> type:
    return type(default) if default is not None else str


@dataclass
class NoOptions:
    def validate(self) -> None:
        """Raise ToolkitError on a bad combination of options."""


WARM_STARTS = ("none", "nearest", "mean")  # how completion may start (lib/refine.warm_start)


@dataclass
class EvalInputs:
    """What a task is built and scored on."""

    frames: Frames
    test: PoseData | None = None       # the rows the task is built from (None for gen)
    train: PoseData | None = None      # training rows (gen compares with them)
    hypo: int = 1                      # hypotheses per input (S)
    seed: int = 0
    num_joints: int = 17
    reduce: str = "refined"            # the aggregate whose error the uncertainty is scored against (eval.reduce)
    completion: str = "condition"      # how completion tasks use the observation (eval.completion)
    min_conf: float = 0.0              # detected joints below this confidence are not given (eval.min_conf)
    warm_start: str = "none"           # completion from a plausible answer: none | nearest | mean (eval.warm_start)
    bank: torch.Tensor | None = None   # [R, J, 3] training poses (network space) for the 'nearest' warm start
    reproj_sigma: float = 10.0         # the 2D noise the 'reproj' aggregate assumes, px (eval.reproj_sigma)
    reproj_temper: float = 1.0         # the power of its likelihood (eval.reproj_temper)
    detector: DetectorNoise | None = None   # the detector's error model (eval.detector_table): 'reproj' uses it
    robust: RobustSettings | None = None   # robust conditioning of detected 2D (config.robust; None: off)


@dataclass
class BuiltTask:
    """A built task: the sampler's input, extra arrays for results.npz and what the metrics need."""

    task: Task
    title: str                                              # table title, for display only
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    has_gt: bool = True                                     # results.npz gets gt3d


class TaskDefinition:
    """One task: options, build, metrics. `titles` maps the stable metric ids of its tables to display titles."""

    name: ClassVar[str]
    help: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    needs_test: ClassVar[bool] = True
    needs_train: ClassVar[bool] = False
    aggregates: ClassVar[bool] = False        # S hypotheses are aggregated (lib/aggregate.py); see outputs()
    titles: ClassVar[dict[str, str]] = {}
    compare: ClassVar[tuple[str, ...]] = ()   # samplers ('paper', 'fast') whose results the table shows side by side
    completes: ClassVar[bool] = False         # it fills in hidden joints of an observation: warm starts apply
    robust: ClassVar[bool] = False            # its detected 2D may be conditioned robustly (lib/robust.py)

    def build(self, ctx: EvalInputs, opts: Any) -> BuiltTask:
        raise NotImplementedError

    def metrics(self, preds: dict[str, torch.Tensor], ctx: EvalInputs, prep: BuiltTask, opts: Any) -> Table:
        """Metrics of network-space predictions [N, S, J, 3], by sampler label (the first is the main one)."""
        raise NotImplementedError

    def titles_for(self, hypo: int) -> dict[str, str]:
        """Display titles for S = hypo; with one hypothesis the 'oracle' (min over S) is just its error."""
        if hypo > 1 or not self.aggregates:
            return self.titles
        return {k: v.replace(" oracle (min over S)", "").replace(", oracle", "") for k, v in self.titles.items()}

    def outputs(self, pred: torch.Tensor, ctx: EvalInputs, prep: BuiltTask) -> dict[str, np.ndarray]:
        """Arrays for results.npz computed from the main predictions [N, S, J, 3] (e.g. the aggregates)."""
        return {}


TASKS: dict[str, TaskDefinition] = {}


def register_task(cls: type[TaskDefinition]) -> type[TaskDefinition]:
    TASKS[cls.name] = cls()
    return cls


def options_from(unit: TaskDefinition, values: dict[str, Any]) -> Any:
    """The unit's Options from a dict (unknown keys ignored), validated."""
    names = {f.name for f in fields(unit.Options)}
    opts = unit.Options(**{k: v for k, v in values.items() if k in names})
    opts.validate()
    return opts
