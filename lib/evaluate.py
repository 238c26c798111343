"""Evaluation orchestration: build a task, sample it sharded over ranks, time it, score it.

What a task is and how it is scored lives in its unit (lib/tasks); this module only shards, gathers and times.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field

import ml_collections
import numpy as np
import torch

from lib import dist
from lib.builders import fast_sampler, paper_sampler
from lib.errors import ToolkitError
from lib.lookup import nearest_2d, nearest_3d
from lib.metrics import Table
from lib.model import ScoreFn
from lib.progress import progress as progress_of
from lib.robust import robust_condition
from lib.sampling import SamplerConfig, sample, saved_steps
from lib.sde import SDE
from lib.tasks import Context, Prepared, Task, TaskUnit
from lib.tasks.est import estimation


def available_memory(device: torch.device) -> int:
    """Bytes free for new tensors on the device: CUDA's free memory, else the host's available memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(rows: int, hypotheses: int, device: torch.device, states: int = 1, joints: int = 17) -> None:
    """Refuse, before anything is allocated, N inputs x S hypotheses (keeping `states` states of each) that would
    not fit: the samples, the repeated task (condition, masks, observation) and the states, float32."""
    need = rows * hypotheses * joints * 3 * 4 * (6 + states)
    free = available_memory(device)
    if need > 0.5 * free:
        raise ToolkitError(f"{rows} inputs x {hypotheses} hypotheses{f' x {states} saved states' if states > 1 else ''}"
                           f" need about {need / 1e9:.1f} GB, more than half of the {free / 1e9:.1f} GB free on "
                           f"{device.type}; sample fewer at a time (fewer hypotheses, --sample K, or the inputs in "
                           f"parts)")


def chunk_seed(seed: int, chunk: int) -> int:
    return (seed * 1_000_003 + chunk) % (2 ** 63)


def sample_task(score_fn: ScoreFn, sde: SDE, task: Task, cfg: SamplerConfig, hypo: int, batch_size: int,
                seed: int, device: torch.device, save_every: int = 0, progress: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """Sample S hypotheses per task row, sharded over ranks by fixed-size chunks.

    Chunk c always uses the generator seeded with (seed, c), so the result does not depend on the number of
    ranks. Returns samples [B, S, J, 3], optionally the trajectory [T, B, S, J, 3] (on the CPU, on every
    rank), and the network evaluations per sample (averaged over this rank's chunks).
    """
    check_fits(len(task), hypo, device, saved_steps(cfg, save_every) if save_every else 1, task.condition.shape[1])
    rep = task.repeat(hypo)
    n, j = len(rep), task.condition.shape[1]
    n_chunks = math.ceil(n / batch_size)
    ws = dist.world_size()
    c0, c1 = dist.split(n_chunks, ws, dist.rank())
    outs, trajs = [], []
    nfe_start = score_fn.nfe
    for c in progress_of(range(c0, c1), c1 - c0, f"sampling ({cfg.method}, {cfg.steps} steps)",
                         progress and dist.is_main()):
        sub = rep.slice(c * batch_size, min(n, (c + 1) * batch_size)).to(device)
        gen = torch.Generator(device=device).manual_seed(chunk_seed(seed, c))
        x, traj = sample(score_fn, sde, sub, cfg, gen, save_every)
        outs.append(x.float().cpu())
        if save_every:
            trajs.append(torch.stack(traj).float().cpu())  # [T, chunk, J, 3]
    local = torch.cat(outs) if outs else torch.zeros(0, j, 3)
    rows = [min(n, b * batch_size) - min(n, a * batch_size) for a, b in (dist.split(n_chunks, ws, r)
                                                                          for r in range(ws))]
    comm = dist.comm_device(device)
    samples = dist.gather_rows(local.to(comm), rows).cpu().reshape(len(task), hypo, j, 3)
    traj_all = None
    if save_every:
        local_t = torch.cat(trajs, 1) if trajs else torch.zeros(saved_steps(cfg, save_every), 0, j, 3)
        gathered = dist.gather_rows(local_t.transpose(0, 1).contiguous().to(comm), rows).cpu()
        traj_all = gathered.transpose(0, 1).reshape(-1, len(task), hypo, j, 3)
    return samples, traj_all, (score_fn.nfe - nfe_start) / max(1, c1 - c0)


def refine(score_fn: ScoreFn, sde: SDE, task: Task, hyps: torch.Tensor, t: float, steps: int, batch_size: int,
           device: torch.device) -> torch.Tensor:
    """The 'refined' aggregate (lib/aggregate.py): the mean of the hypotheses [N, S, J, 3] (network space) moved to
    the prior's nearest mode under the task's condition: start at alpha(t) x at time t and run the drift-only
    process (drift_2m, `steps` evaluations) to eps. [N, J, 3]"""
    start = dataclasses.replace(task, x_init=hyps.mean(1) * float(sde.alpha(torch.tensor(t))), t_start=t)
    out, _, _ = sample_task(score_fn, sde, start, SamplerConfig(method="drift_2m", steps=steps), 1, batch_size, 0,
                            device, progress=False)
    return out[:, 0]


def warm_start(score_fn: ScoreFn, sde: SDE, task: Task, how: str, t: float, bank: torch.Tensor | None,
               hypotheses: int, steps: int, batch_size: int, device: torch.device) -> tuple[Task, torch.Tensor | None]:
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
        quick, _, _ = sample_task(score_fn, sde, task, SamplerConfig(method="drift_ddim", steps=steps), hypotheses,
                                  batch_size, 1, device, progress=False)
        answer = quick.mean(1)
    answer = torch.where(mask > 0, observed, answer)
    return dataclasses.replace(task, x_init=answer, t_start=t, noised_start=True), answer


def robust_inputs(score_fn: ScoreFn, sde: SDE, prep: Prepared, ctx: Context, cfg: SamplerConfig, batch_size: int,
                  device: torch.device) -> int:
    """Robust conditioning of an est task built from detections (lib/robust.py), in place: the task, its 2D
    evidence and prep.info['robust']; cfg the deterministic sampler of its passes. Returns its NFE per input."""
    def lift(cond: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        out, _, _ = sample_task(score_fn, sde, estimation(cond, seen), cfg, 1, batch_size, 0, device, progress=False)
        return out[:, 0]

    conf = None if ctx.test.det_conf is None else torch.from_numpy(ctx.test.det_conf)
    res = robust_condition(lift, prep.task.condition, prep.info["seen"], conf, ctx.robust)
    prep.task = estimation(res.condition, res.seen)
    prep.info.update(input2d=res.condition[..., :2], seen=res.seen, robust=res)
    return res.passes * cfg.steps


@dataclass
class EvalSettings:
    """How a task is sampled (not what it is)."""

    hypo: int = 1
    batch_size: int = 1000
    seed: int = 0
    save_every: int = 0          # keep every k-th diffusion state (0: final only)
    progress: bool = True        # progress bar on rank 0
    refine_t: float = 0.2        # the 'refined' aggregate: start time and steps of its drift (eval.refine_*)
    refine_steps: int = 10
    warm_t: float = 0.4          # a warm start's time, and the hypotheses and steps of a 'mean' one (eval.warm_*)
    warm_hypotheses: int = 4


@dataclass
class EvalResult:
    task: str
    title: str                                  # for display
    table: Table                                # metric id -> column -> value
    titles: dict[str, str]                      # metric id -> display title
    arrays: dict[str, np.ndarray]               # results.npz content (docs/design.md, 'Results files')
    nfe: float                                  # network evaluations per hypothesis (main sampler; with a
                                                # 'mean' warm start its pose evaluations / S)
    seconds: float                              # sampling time (main sampler)
    samplers: dict[str, str] = field(default_factory=dict)   # label -> description of every sampler run


def describe(cfg: SamplerConfig) -> str:
    eta = f", eta {cfg.eta:g}" if cfg.spec.uses_eta else ""
    grid = "the students' grid" if cfg.method == "distilled" else f"{cfg.grid_name} grid"
    extra = (f", RePaint {cfg.resample}x from t {cfg.resample_t:g}" if cfg.resample else "") + (
        f", guidance {cfg.guidance:g}" if cfg.guidance else "")
    return f"{cfg.method}, {cfg.steps} steps, {grid}{eta}{extra}"


def sampler_label(cfg: SamplerConfig, config: ml_collections.ConfigDict) -> str:
    """'paper' for the paper's own sampler, 'fast' for the configured fast one, else the method's name."""
    for deterministic in (True, False):
        if cfg.key() == paper_sampler(config, deterministic).key():
            return "paper"
        if cfg.key() == fast_sampler(config, deterministic).key():
            return "fast"
    return cfg.method


def _comparisons(unit: TaskUnit, main: SamplerConfig, config: ml_collections.ConfigDict) -> dict[str, SamplerConfig]:
    """The main sampler first, then those the task's table compares it with (deterministic forms)."""
    samplers = {sampler_label(main, config): main}
    for label in unit.compare:
        if label not in samplers:
            samplers[label] = (paper_sampler if label == "paper" else fast_sampler)(config, True)
    return samplers


def evaluate(unit: TaskUnit, opts, ctx: Context, score_fn: ScoreFn, sde: SDE, sampler: SamplerConfig,
             settings: EvalSettings, config: ml_collections.ConfigDict, device: torch.device) -> EvalResult:
    """Build the task from the data, sample it (and any comparison samplers), and compute its metrics."""
    prep = unit.build(ctx, opts)
    preds, traj, nfe, seconds = {}, None, 0.0, 0.0
    samplers = _comparisons(unit, sampler, config)
    if prep.task.observed is None:  # nothing imputed: resampling and guidance have nothing to act on, and say so
        samplers = {k: dataclasses.replace(v, resample=0, guidance=0.0) for k, v in samplers.items()}
    start = time.monotonic()
    robust_nfe = 0
    if unit.robust and ctx.robust is not None and ctx.test.det2d is not None:  # detected 2D, robustly
        robust_nfe = robust_inputs(score_fn, sde, prep, ctx, fast_sampler(config, True), settings.batch_size,
                                   device)
    warm = ctx.warm_start if unit.completes else "none"  # (den, est and gen have nothing hidden to start from)
    task, prep.info["warm"] = warm_start(score_fn, sde, prep.task, warm, settings.warm_t, ctx.bank,
                                         settings.warm_hypotheses, settings.refine_steps, settings.batch_size, device)
    # a 'mean' warm start's pose evaluations per input, shared by its S hypotheses
    extra = (settings.warm_hypotheses * settings.refine_steps if warm == "mean" else 0) + robust_nfe
    for k, (label, cfg) in enumerate(samplers.items()):
        save = settings.save_every if k == 0 else 0
        preds[label], t, n = sample_task(score_fn, sde, task, cfg, settings.hypo, settings.batch_size,
                                         settings.seed, device, save, settings.progress)
        if k == 0:
            traj, nfe, seconds = t, n + extra / settings.hypo, time.monotonic() - start
    main = next(iter(preds.values()))
    if unit.aggregates and settings.hypo > 1:
        prep.info["refined"] = refine(score_fn, sde, prep.task, main, settings.refine_t,
                                      settings.refine_steps, settings.batch_size, device)
    arrays = {"pred3d": ((traj if traj is not None else main[None]) / ctx.frames.scale).numpy()}
    if prep.has_gt:
        arrays["gt3d"] = (ctx.test.gt3d(ctx.frames) / ctx.frames.scale).numpy()[None, :, None]
    arrays |= prep.arrays | unit.outputs(main, ctx, prep)
    n = len(prep.task)
    title = f"{prep.title}; N = {n} pose{'s' if n != 1 else ''}" + (f" ({ctx.test.note})" if ctx.test and ctx.test.note
                                                                     else "")
    return EvalResult(task=unit.name, title=title, table=unit.metrics(preds, ctx, prep, opts),
                      titles=unit.titles_for(settings.hypo), arrays=arrays, nfe=nfe, seconds=seconds,
                      samplers={label: describe(cfg) for label, cfg in samplers.items()})
