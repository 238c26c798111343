"""den: denoise noisy 3D poses by starting the reverse process from them at a small time t.

As the paper runs it (docs/design.md, 'Tasks'): the noise is added to `joint_3d_image` (std in its units: pixels
of the 1000-px frame for x, y and the same scale for z; uniform noise spans [-std/2, std/2] like the paper's),
the state starts at the noisy pose itself, and the paper's sampler is the drift-only one with N = 1000 steps of
1/N from T = t (it integrates the drift over a time of 1 while t moves from --t to eps). The table shows it
side by side with the drift-only process integrated over its true time, from t to eps ('fast').
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lib.errors import ToolkitError
from lib.metrics import Table, mpjpe, mpjpe_root, pa_mpjpe, per_action
from lib.tasks.base import BuiltTask, EvalInputs, Task, TaskDefinition, option, register_task

NOISE_TYPES = ("gaussian", "uniform")


def denoising(noisy: torch.Tensor, t_start: float) -> Task:
    """Start the reverse process at the noisy pose [B, J, 3] at time t_start, with no condition."""
    zeros = torch.zeros_like(noisy)
    return Task(condition=zeros, mask=zeros.clone(), x_init=noisy, t_start=t_start)


def add_noise(pose_img: np.ndarray, kind: str, std: float, seed: int) -> np.ndarray:
    """joint_3d_image plus zero-mean noise: gaussian with this std, or uniform on [-std/2, std/2] (the paper's)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, pose_img.shape) if kind == "gaussian" else rng.uniform(-0.5, 0.5, pose_img.shape)
    return pose_img + std * noise


@dataclass
class DenOptions:
    noise_type: str = option("gaussian", "noise added to the test poses", choices=NOISE_TYPES)
    std: float = option(5.0, "noise scale in joint_3d_image units (pixels of the 1000-px frame; the paper's --std)")
    t: float = option(0.05, "start time of the reverse process, in (0, 1]")

    def validate(self) -> None:
        if self.noise_type not in NOISE_TYPES:
            raise ToolkitError(f"--noise-type must be one of {', '.join(NOISE_TYPES)}, got {self.noise_type}")
        if not (math.isfinite(self.std) and 0 <= self.std <= 1000):
            raise ToolkitError(f"--std must be between 0 and 1000 (joint_3d_image units: pixels of the 1000-px "
                               f"frame), got {self.std}")
        if not 0.0 < self.t <= 1.0:
            raise ToolkitError(f"--t must be in (0, 1], got {self.t}")


@register_task
class Denoising(TaskDefinition):
    name = "den"
    help = "denoise noisy 3D poses"
    Options = DenOptions
    compare = ("paper", "fast")
    titles = {"p1_in": "P1 noisy input", "p2_in": "P2 noisy input", "p1_root_in": "MPJPE root-aligned, noisy input",
              "p1_paper": "P1 denoised, the paper's (drift, 1000 x 1/N from t)", "p2_paper": "P2 denoised, the paper's",
              "p1_root_paper": "MPJPE root-aligned, the paper's",
              "p1_fast": "P1 denoised, drift integrated from t (fast)", "p2_fast": "P2 denoised, integrated (fast)",
              "p1_root_fast": "MPJPE root-aligned, integrated (fast)"}

    def build(self, ctx: EvalInputs, opts: DenOptions) -> BuiltTask:
        noisy = torch.from_numpy(ctx.frames.to_network(add_noise(ctx.test.pose_img, opts.noise_type, opts.std,
                                                                  ctx.seed))).float()
        title = f"den: {opts.noise_type} noise, std {opts.std:g} px (joint_3d_image units), t = {opts.t:g} (mm)"
        return BuiltTask(task=denoising(noisy, opts.t), title=title,
                        arrays={"noisy3d": (noisy / ctx.frames.scale).numpy()[None, :, None]}, info={"noisy": noisy})

    def metrics(self, preds: dict[str, torch.Tensor], ctx: EvalInputs, prep: BuiltTask, opts: DenOptions) -> Table:
        gt = torch.from_numpy(ctx.test.pose_cam).float()
        rows: dict[str, np.ndarray] = {}
        for label, pose in {"in": prep.info["noisy"], **{k: v[:, 0] for k, v in preds.items()}}.items():
            mm = ctx.test.rows.network_to_camera(pose, ctx.frames)
            rows |= {f"p1_{label}": mpjpe(mm, gt).numpy(), f"p2_{label}": pa_mpjpe(mm, gt).numpy(),
                     f"p1_root_{label}": mpjpe_root(mm, gt).numpy()}
        return per_action(rows, ctx.test.action_name)
