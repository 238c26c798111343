"""Speed and accuracy-per-NFE measurements, each side by side with a baseline in the same process.

The baselines are minimal, faithful copies of the reference implementation's loops (score_sde_pytorch as
used by GFPose), run on the same network, batch and device:
  * sampling: 1000-step Euler-Maruyama under `torch.no_grad`, a fresh time vector and the marginal std
    recomputed every step, and the state copied to the host as a numpy array every step (the reference
    keeps the whole trajectory);
  * training: a `DataLoader` over a per-row `Dataset` that draws the condition mask row by row in Python,
    each batch copied to the device, then the same loss, optimiser and EMA step as ours.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import ml_collections
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lib.builders import build_optimizer
from lib.data import PoseData
from lib.ema import ExponentialMovingAverage
from lib.evaluate import EvalOptions, evaluate_task, sample_task
from lib.losses import random_condition_mask
from lib.model import ScoreFn
from lib.sampling import SamplerConfig, sample
from lib.sde import SDE, expand_like
from lib.tasks import estimation
from lib.train import train_step


@dataclass
class Row:
    section: str
    variant: str
    setting: str
    nfe: float            # network evaluations per sample (0 where it does not apply)
    value: float
    unit: str
    ratio: float | None = None   # value / baseline value of the section (accuracy rows: error ratio)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 1,
          warmup: Callable[[], object] | None = None) -> float:
    """Best wall time of `repeats` calls after one warm-up call (CUDA work included)."""
    (warmup or fn)()
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def reference_em(model: torch.nn.Module, sde: SDE, condition: torch.Tensor, mask: torch.Tensor,
                 steps: int, eps: float = 1e-3) -> list[np.ndarray]:
    """The reference sampling loop (see the module docstring); returns the host-side trajectory."""
    x = sde.prior_sample(condition.shape, device=condition.device)
    timesteps = torch.linspace(sde.T, eps, steps, device=condition.device)
    dt = -1.0 / steps
    trajectory = []
    for i in range(steps):
        vec_t = torch.ones(x.shape[0], device=x.device) * timesteps[i]
        std = sde.marginal_prob(torch.zeros_like(x), vec_t)[1]
        score = -model(x, vec_t, condition, mask) / expand_like(std, x)
        drift, g = sde.sde(x, vec_t)
        x_mean = x + (drift - expand_like(g ** 2, x) * score) * dt
        x = x_mean + expand_like(g, x) * math.sqrt(-dt) * torch.randn_like(x)
        trajectory.append(x.cpu().numpy())
    return trajectory


def sampling_throughput(model: torch.nn.Module, sde: SDE, device: torch.device, batches: list[int],
                        steps: int, variants: list[str]) -> list[Row]:
    """Pose-evaluations per second of EM sampling: the reference loop and our sampler's variants.

    Variants: 'ours' (fp32), 'ours bf16' (autocast), 'ours compile' (torch.compile; CUDA graphs on GPU).
    Each batch size is a separate row; the ratio is against the reference loop at the same batch.
    """
    rows = []
    cfg = SamplerConfig(method="em", steps=steps)
    for batch in batches:
        cond = torch.randn(batch, model.num_joints, 3, device=device)
        cond[..., 2] = 0
        task = estimation(cond)
        base = timed(lambda task=task: reference_em(model, sde, task.condition, task.mask, steps), device)
        base_rate = batch * steps / base
        rows.append(Row("sampling", "reference loop (EM, host copy per step)", f"batch {batch}", steps,
                        base_rate, "pose-evals/s", 1.0))
        for variant in variants:
            fn = ScoreFn(model, sde, bf16="bf16" in variant, compile="compile" in variant)
            sec = timed(lambda fn=fn, task=task: sample(fn, sde, task, cfg, torch.Generator(device).manual_seed(0)),
                        device)
            rate = batch * steps / sec
            rows.append(Row("sampling", f"{variant} (EM)", f"batch {batch}", steps, rate, "pose-evals/s",
                            rate / base_rate))
    return rows


class _RowDataset(Dataset):
    """Per-row dataset of the reference: each item draws its own condition mask in Python."""

    def __init__(self, x: np.ndarray, cond: np.ndarray, config: ml_collections.ConfigDict):
        self.x, self.cond, self.t = x, cond, config.training

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mask = random_condition_mask(1, self.x.shape[1], self.t.mask_whole_p, self.t.mask_part_p,
                                     self.t.mask_joint_p, "cpu")[0]
        return torch.from_numpy(self.x[i]), torch.from_numpy(self.cond[i]), mask


def training_throughput(model_fn: Callable[[], torch.nn.Module], sde: SDE, config: ml_collections.ConfigDict,
                        data: PoseData, device: torch.device, steps: int) -> list[Row]:
    """Training samples per second: the reference loop (DataLoader) against ours (data on the device)."""
    d, batch = config.data, config.training.batch_size
    x_all = data.gt3d(d.image_size, d.scale)  # [N, J, 3]
    c_all = data.cond2d(d.image_size, d.scale, d.use_gt_2d)

    def setup():
        torch.manual_seed(0)
        model = model_fn().to(device).train()
        return model, build_optimizer(config, model.parameters()), \
            ExponentialMovingAverage(model.parameters(), config.model.ema_rate)

    def reference(n: int) -> None:
        model, opt, ema = setup()
        fn = ScoreFn(model, sde)
        loader = DataLoader(_RowDataset(x_all.numpy(), c_all.numpy(), config), batch_size=batch, shuffle=True,
                            drop_last=True)
        done = 0
        while done < n:
            for x0, cond, mask in loader:
                train_step(fn, sde, model, opt, ema, x0.to(device), cond.to(device), config, done,
                           mask=mask.to(device))
                done += 1
                if done == n:
                    break

    def ours(n: int) -> None:
        model, opt, ema = setup()
        fn = ScoreFn(model, sde)
        x_dev, c_dev = x_all.to(device), c_all.to(device)
        perm = torch.randperm(len(x_dev), device=device)
        for step in range(n):
            idx = perm[(step * batch) % (len(perm) - batch + 1):][:batch]
            train_step(fn, sde, model, opt, ema, x_dev[idx], c_dev[idx], config, step)

    base = batch * steps / timed(lambda: reference(steps), device, warmup=lambda: reference(2))
    rate = batch * steps / timed(lambda: ours(steps), device, warmup=lambda: ours(2))
    return [Row("training", "reference loop (DataLoader, per-row masks)", f"batch {batch}", 0, base,
                "samples/s", 1.0),
            Row("training", "ours (data on device, batched masks)", f"batch {batch}", 0, rate, "samples/s",
                rate / base)]


@dataclass
class Candidate:
    name: str
    sampler: SamplerConfig
    seed_offset: int = 0


def default_candidates(steps_ref: int = 1000) -> list[Candidate]:
    """The reference (EM, 1000 steps), its seed-to-seed noise floor, and the fast samplers."""
    em = [Candidate(f"em {steps_ref} (reference)", SamplerConfig(method="em", steps=steps_ref)),
          Candidate(f"em {steps_ref}, another seed", SamplerConfig(method="em", steps=steps_ref), 1),
          Candidate("em 50", SamplerConfig(method="em", steps=50))]
    ode = [Candidate("heun 25 (ODE, edm grid)", SamplerConfig(method="heun", steps=25, schedule="edm")),
           Candidate("dpm2m 20 (ODE, logsnr)", SamplerConfig(method="dpm2m", steps=20, schedule="logsnr"))]
    sde = [Candidate(f"{m} {n} (eta 1, logsnr)", SamplerConfig(method=m, steps=n, schedule="logsnr", eta=1.0))
           for m, n in (("ddim", 25), ("ddim", 50), ("dpm2m", 25), ("dpm2m", 50))]
    return em + ode + sde


def accuracy_vs_nfe(model: torch.nn.Module, sde: SDE, config: ml_collections.ConfigDict,
                    tests: dict[str, tuple[PoseData, EvalOptions]], candidates: list[Candidate],
                    device: torch.device) -> list[Row]:
    """Min-over-S P1 (est) or missing-joint P1 (comp3d) of each sampler, as a ratio to the first candidate."""
    rows = []
    for label, (data, opts) in tests.items():
        ref = None
        for cand in candidates:
            run = EvalOptions(**{**opts.__dict__, "sampler": cand.sampler, "seed": opts.seed + cand.seed_offset,
                                 "progress": False})
            res = evaluate_task(model, sde, config, data, None, run, device)
            table = next(iter(res.tables.values()))
            key = "P1 (min over S)" if opts.task == "est" else "P1 missing joints"
            p1 = table[key]["Average"]
            ref = p1 if ref is None else ref
            rows.append(Row("accuracy", cand.name, label, res.nfe, p1, f"{key} mm", p1 / ref))
            rows.append(Row("time", cand.name, label, res.nfe, res.seconds, "s", None))
    return rows


def bf16_accuracy(model: torch.nn.Module, sde: SDE, config: ml_collections.ConfigDict, data: PoseData,
                  opts: EvalOptions, device: torch.device) -> list[Row]:
    """The same evaluation (same seed) with the network in fp32 and under bf16 autocast."""
    rows, ref = [], None
    for bf16 in (False, True):
        cfg = ml_collections.ConfigDict(config.to_dict())
        cfg.sampling.bf16 = bf16
        res = evaluate_task(model, sde, cfg, data, None, opts, device)
        p1 = next(iter(res.tables.values()))["P1 (min over S)"]["Average"]
        ref = p1 if ref is None else ref
        rows.append(Row("bf16 check", "bf16 autocast" if bf16 else "fp32", f"est S={opts.hypo}", res.nfe, p1,
                        "P1 (min over S) mm", p1 / ref))
    return rows


def paper_shape(model: torch.nn.Module, sde: SDE, device: torch.device, fast: SamplerConfig, poses: int,
                hypo: int, batch: int, bf16: bool) -> list[Row]:
    """Wall time of the paper's evaluation shape (poses x S hypotheses, EM 1000) and with a fast sampler."""
    cond = torch.randn(poses, model.num_joints, 3)
    cond[..., 2] = 0
    rows, base = [], None
    for name, cfg in (("em 1000 (paper)", SamplerConfig(method="em", steps=1000)), (f"{fast.method} fast", fast)):
        _sync(device)
        start = time.perf_counter()
        _, _, nfe = sample_task(ScoreFn(model, sde, bf16=bf16), sde, estimation(cond), cfg, hypo, batch, 0, device,
                                progress=False)
        _sync(device)
        sec = time.perf_counter() - start
        base = sec if base is None else base
        rows.append(Row("paper shape", name, f"{poses} poses x S={hypo}", nfe, sec, "s", sec / base))
    return rows
