"""gen: new plausible 3D poses from no condition at all, scored by plausibility against real poses.

Generated poses have no camera, so they are compared in an approximate metric frame: root-relative normalised
coordinates divided by the median pixels-per-mm of the training boxes (weak perspective). The same figures
for held-out real poses are the yardstick.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lib.camera import Frames, box_ratio
from lib.errors import ToolkitError
from lib.metrics import Table
from lib.skeleton import SYMMETRIC_BONES, bone_lengths
from lib.tasks.base import BuiltTask, EvalInputs, Task, TaskDefinition, option, register_task


def generation(n: int, num_joints: int = 17, device: torch.device | str = "cpu") -> Task:
    """No condition at all."""
    zeros = torch.zeros(n, num_joints, 3, device=device)
    return Task(condition=zeros, mask=zeros.clone())


def approx_mm(pose: torch.Tensor, frames: Frames, px_per_mm: float) -> torch.Tensor:
    """Network-space poses [N, J, 3] -> root-relative, roughly millimetres (weak perspective)."""
    p = frames.to_image(pose) / px_per_mm
    return p - p[..., :1, :]


def _body_axes(pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    right = torch.nn.functional.normalize(pose[:, 1] - pose[:, 4], dim=-1)
    up = torch.nn.functional.normalize(pose[:, 8] - pose[:, 0], dim=-1)
    return right, up


def within_limits(pose: torch.Tensor) -> torch.Tensor:
    """[N] bool: knees not hyperextended (< 15 deg), elbows not folded (> 20 deg), head above the thorax."""
    right, up = _body_axes(pose)
    ok = torch.ones(pose.shape[0], dtype=torch.bool)
    for hip, knee, ankle in ((1, 2, 3), (4, 5, 6)):
        thigh, shin = pose[:, knee] - pose[:, hip], pose[:, ankle] - pose[:, knee]
        # flexion about the right axis: the shin turns backwards relative to the thigh
        signed = torch.atan2((torch.cross(thigh, shin, dim=-1) * -right).sum(-1), (thigh * shin).sum(-1))
        ok &= signed > -math.radians(15)
    for sho, elb, wri in ((11, 12, 13), (14, 15, 16)):
        a, b = pose[:, sho] - pose[:, elb], pose[:, wri] - pose[:, elb]
        cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-9)
        ok &= cos < math.cos(math.radians(20))
    ok &= ((pose[:, 10] - pose[:, 8]) * up).sum(-1) > 0
    return ok


def pairwise_mpjpe(a: torch.Tensor, b: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """[N, M] MPJPE between root-relative poses a [N, J, 3] and b [M, J, 3]."""
    return torch.cat([(a[i:i + chunk, None] - b[None]).norm(dim=-1).mean(-1) for i in range(0, len(a), chunk)])


def generation_metrics(sets: dict[str, torch.Tensor], train: torch.Tensor, max_ref: int = 5000) -> Table:
    """Plausibility of each set of root-relative poses (~mm) against the training poses: metric -> set -> value."""
    ref = train[torch.linspace(0, len(train) - 1, min(max_ref, len(train))).long()]
    ref_bones = bone_lengths(ref).mean(0)  # [16]
    table: Table = {k: {} for k in Generation.titles}
    for name, poses in sets.items():
        bones = bone_lengths(poses)
        left, right = bones[:, [i for i, _ in SYMMETRIC_BONES]], bones[:, [j for _, j in SYMMETRIC_BONES]]
        sub = poses[:500]
        n = len(sub)
        table["bone_error"][name] = float((bones - ref_bones).abs().mean())
        table["asymmetry"][name] = float((left - right).abs().mean())
        table["within_limits"][name] = float(100.0 * within_limits(poses).float().mean())
        table["diversity"][name] = float(pairwise_mpjpe(sub, sub).sum() / max(1, n * (n - 1)))
        table["nearest_train"][name] = float(pairwise_mpjpe(poses[:1000], ref).min(1).values.mean())
    return table


@dataclass
class GenOptions:
    num: int = option(1000, "number of poses to generate (--num-poses under torchrun, whose own parser takes "
                            "--num for --numa-binding)", flag=("--num-poses", "--num"))

    def validate(self) -> None:
        if not 1 <= self.num <= 10_000_000:
            raise ToolkitError(f"--num must be between 1 and 10,000,000 (generate more in several runs), got "
                               f"{self.num}")


@register_task
class Generation(TaskDefinition):
    name = "gen"
    help = "generate new poses"
    Options = GenOptions
    needs_train = True
    titles = {"bone_error": "bone length error (mm)", "asymmetry": "left/right asymmetry (mm)",
              "within_limits": "within joint limits (%)", "diversity": "diversity (mm)",
              "nearest_train": "nearest training pose (mm)"}

    def build(self, ctx: EvalInputs, opts: GenOptions) -> BuiltTask:
        return BuiltTask(task=generation(opts.num, ctx.num_joints),
                        title="gen: plausibility (approx. mm, weak perspective)", has_gt=False)

    def metrics(self, preds: dict[str, torch.Tensor], ctx: EvalInputs, prep: BuiltTask, opts: GenOptions) -> Table:
        px_per_mm = float(np.median(box_ratio(ctx.train.box)))
        held_out = ctx.test.subset(np.linspace(0, len(ctx.test) - 1, min(len(ctx.test), opts.num)).astype(int))
        sets = {"generated": next(iter(preds.values()))[:, 0], "held-out real poses": held_out.gt3d(ctx.frames)}
        return generation_metrics({k: approx_mm(v, ctx.frames, px_per_mm) for k, v in sets.items()},
                                  approx_mm(ctx.train.gt3d(ctx.frames), ctx.frames, px_per_mm))
