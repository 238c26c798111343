"""Evaluation: build a task from the data, sample it (and the samplers its table compares with), score it, report.

What a task is and how it is scored lives in its unit (lib/tasks); the chunked, sharded sampler in lib/sharded.py;
which sampler runs in lib/resolve.py. `run_evaluation` is the body of the evaluation command lines (run/*.py only
parse their arguments).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
import torch

from lib import dist
from lib.builders import build_score_fn, frames_of
from lib.data import load_data
from lib.detnoise import detector_noise
from lib.errors import ToolkitError
from lib.io import check_output, json_with, last_results_pointer, npz_with, write_json, write_npz, write_text
from lib.loader import LoadedPrior, checkpoint_path, load_prior
from lib.metrics import Table, format_table
from lib.model import ScoreFn
from lib.refine import refine, warm_start
from lib.resolve import for_task, resolve_sampler
from lib.robust import RobustSettings, robust_condition
from lib.sampling import SamplerConfig
from lib.sde import SDE
from lib.sharded import sample_task
from lib.tasks import BuiltTask, EvalInputs, TaskDefinition
from lib.tasks.est import estimation


def robust_inputs(score_fn: ScoreFn, sde: SDE, prep: BuiltTask, ctx: EvalInputs, cfg: SamplerConfig, batch_size: int,
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


def describe(cfg: SamplerConfig, imputes: bool) -> str:
    """The sampler in words; resampling and guidance only where the task imputes an observation (they act on
    nothing else, lib/sampling.sample)."""
    eta = f", eta {cfg.eta:g}" if cfg.spec.uses_eta else ""
    grid = "the students' grid" if cfg.method == "distilled" else f"{cfg.grid_name} grid"
    extra = (f", RePaint {cfg.resample}x from t {cfg.resample_t:g}" if cfg.resample and imputes else "") + (
        f", guidance {cfg.guidance:g}" if cfg.guidance and imputes else "")
    return f"{cfg.method}, {cfg.steps} steps, {grid}{eta}{extra}"


def _comparisons(unit: TaskDefinition, main: SamplerConfig, config: ml_collections.ConfigDict,
                 device: torch.device) -> dict[str, SamplerConfig]:
    """The main sampler first, then those the task's table compares it with (their deterministic forms)."""
    samplers = {main.label or main.method: main}
    for label in unit.compare:
        if label not in samplers:
            samplers[label] = resolve_sampler(config, device, fast=label == "fast", pflow=True)
    return samplers


def evaluate(unit: TaskDefinition, opts, ctx: EvalInputs, score_fn: ScoreFn, sde: SDE, sampler: SamplerConfig,
             settings: EvalSettings, config: ml_collections.ConfigDict, device: torch.device) -> EvalResult:
    """Build the task from the data, sample it (and any comparison samplers), and compute its metrics."""
    prep = unit.build(ctx, opts)
    preds, traj, nfe, seconds = {}, None, 0.0, 0.0
    imputes = prep.task.observed is not None
    samplers = {label: for_task(cfg, imputes, config)
                for label, cfg in _comparisons(unit, sampler, config, device).items()}
    start = time.monotonic()
    robust_nfe = 0
    if unit.robust and ctx.robust is not None and ctx.test.det2d is not None:  # detected 2D, robustly
        robust_nfe = robust_inputs(score_fn, sde, prep, ctx, resolve_sampler(config, device, fast=True, pflow=True),
                                   settings.batch_size, device)
    warm = ctx.warm_start if unit.completes else "none"  # (den, est and gen have nothing hidden to start from)
    task, prep.info["warm"] = warm_start(score_fn, sde, prep.task, warm, settings.warm_t, ctx.bank,
                                         settings.warm_hypotheses, settings.refine_steps, settings.batch_size, device,
                                         sampler.bf16)
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
                                      settings.refine_steps, settings.batch_size, device, sampler.bf16)
    arrays = {"pred3d": ((traj if traj is not None else main[None]) / ctx.frames.scale).numpy()}
    if prep.has_gt:
        arrays["gt3d"] = (ctx.test.gt3d(ctx.frames) / ctx.frames.scale).numpy()[None, :, None]
    arrays |= prep.arrays | unit.outputs(main, ctx, prep)
    n = len(prep.task)
    title = f"{prep.title}; N = {n} pose{'s' if n != 1 else ''}" + (f" ({ctx.test.note})" if ctx.test and ctx.test.note
                                                                     else "")
    return EvalResult(task=unit.name, title=title, table=unit.metrics(preds, ctx, prep, opts),
                      titles=unit.titles_for(settings.hypo), arrays=arrays, nfe=nfe, seconds=seconds,
                      samplers={label: describe(cfg, imputes) for label, cfg in samplers.items()})


# ------------------------------------------------------------------------------------ the evaluation commands


def output_paths(out: str | Path, json_file: str | None) -> tuple[Path, Path | None]:
    """results.npz in `out` and the metrics JSON, checked (and their folders made) before any sampling starts."""
    results = Path(out) / "results.npz"
    if json_file and Path(json_file).resolve() == results.resolve():
        raise ToolkitError(f"--json {json_file} is the results file itself; give the metrics another name")
    report_path = check_output(json_file, "--json file", json_with("task", "table")) if json_file else None
    return check_output(results, "results file", npz_with("pred3d")), report_path


def load_baseline(path: str, config: ml_collections.ConfigDict, device: torch.device) -> torch.nn.Module:
    """The regression baseline of --baseline RUN (lib/regression.py; its final checkpoint), in the prior's frame."""
    base = load_prior(checkpoint_path(path, False), device=device)
    if not getattr(base.model, "predicts_pose", False):
        raise ToolkitError(f"--baseline {path} is a {base.config.model.name}, not a regression baseline; train one "
                           f"with python -m run.train_fc_adv_3d --config configs/subvp/cmu_baseline.py")
    for key in ("scale", "image_size", "num_joints"):
        if base.config.data[key] != config.data[key]:
            raise ToolkitError(f"--baseline {path} was trained with data.{key} = {base.config.data[key]}, the prior "
                               f"with {config.data[key]}; compare models trained in the same frame")
    return base.model


def unused_settings(given: tuple[str, ...], unit: TaskDefinition, config: ml_collections.ConfigDict) -> list[str]:
    """What the command line set that has no effect on this evaluation (each is said, not silently dropped)."""
    e, out = config.eval, []
    completes = unit.name in ("comp2d", "comp3d")
    if "eval.reduce" in given and not (unit.aggregates and e.hypo > 1):
        out.append(f"--reduce {e.reduce} has no effect: {unit.name} with S = {e.hypo} has one pose per input")
    for key in ("eval.completion", "eval.warm_start", "eval.warm_t", "eval.warm_hypotheses", "sampling.resample",
                "sampling.resample_t", "sampling.guidance"):
        if key in given and not completes:
            out.append(f"{key} has no effect on {unit.name}: only comp2d and comp3d complete an observation")
    if "eval.min_conf" in given and (config.data.use_gt_2d or unit.name in ("comp3d", "gen", "den")):
        out.append("--min-conf has no effect: ground-truth 2D and 3D inputs carry no confidences")
    if "robust.mode" in given and config.robust.mode != "off" and (config.data.use_gt_2d or not unit.robust):
        out.append(f"--robust has no effect: it acts on est from detections, not on {unit.name} from "
                   f"{'ground-truth 2D' if config.data.use_gt_2d else 'this input'}")
    return out


@dataclass
class EvalOutputs:
    """Where an evaluation writes, and what its printed table shows."""

    results: Path                       # results.npz
    json: Path | None = None            # every metric
    traj_frames: int = 0                # diffusion states kept in results.npz, at most (0: the final poses)
    hide: tuple[str, ...] = ()          # metric ids (prefixes) left out of the printed table
    baseline: str | None = None         # a regression baseline's run folder, scored on the same rows


def run_evaluation(unit: TaskDefinition, opts: Any, prior: LoadedPrior, sampler: SamplerConfig, given: tuple[str, ...],
                   outputs: EvalOutputs, device: torch.device) -> EvalResult:
    """The body of the evaluation commands once the prior is loaded and its sampler resolved: data, sampling
    (sharded over ranks), metrics, files. The table shows the oracle and the eval.reduce aggregate (less
    outputs.hide); the JSON holds every row."""
    config = prior.config
    if dist.is_main():
        for line in unused_settings(given, unit, config):
            print(f"warning: {line}", file=sys.stderr)
    train = load_data(config, "train") if unit.needs_train else None
    e = config.eval
    ctx = EvalInputs(frames_of(config), load_data(config, "test"), train, hypo=e.hypo, seed=config.seed,
                  num_joints=config.data.num_joints, reduce=e.reduce, completion=e.completion, min_conf=e.min_conf,
                  reproj_sigma=e.reproj_sigma, reproj_temper=e.reproj_temper, detector=detector_noise(e.detector_table),
                  warm_start=e.warm_start,
                  bank=None if prior.pose_bank is None else prior.pose_bank.float() * config.data.scale,
                  robust=RobustSettings.from_config(config))
    save_every = max(1, sampler.steps // outputs.traj_frames) if outputs.traj_frames else 0
    settings = EvalSettings(e.hypo, e.batch_size, config.seed, save_every, refine_t=e.refine_t,
                            refine_steps=e.refine_steps, warm_t=e.warm_t, warm_hypotheses=e.warm_hypotheses)
    sde = prior.sde
    baseline = load_baseline(outputs.baseline, config, device) if outputs.baseline else None
    result = evaluate(unit, opts, ctx, build_score_fn(prior.model, sde, config, prior.students), sde, sampler,
                      settings, config, device)
    if baseline is not None:  # the regression baseline on the same rows and 2D: its one pose per input
        base = evaluate(unit, opts, dataclasses.replace(ctx, hypo=1, robust=None), ScoreFn(baseline, sde), sde,
                        sampler, dataclasses.replace(settings, hypo=1, save_every=0), config, device)
        for k in ("p1", "p2", "p1_root"):
            result.table[f"{k}@baseline"] = base.table[k]
            result.titles[f"{k}@baseline"] = f"{base.titles[k]} of the regression baseline ({outputs.baseline})"
    header = {"task": unit.name, "checkpoint": str(prior.checkpoint), "hypo": e.hypo, "reduce": e.reduce,
              "sampler": sampler.method, "steps": sampler.steps, "options": dataclasses.asdict(opts)}
    shown = [k for k in result.table if not k.startswith(outputs.hide) and ("@" not in k or k.endswith(
        (f"@{e.reduce}", "@baseline")))]
    report(result, outputs.results, outputs.json, header, shown)
    return result


def report(result: EvalResult, results: Path, json_path: Path | None, header: dict[str, Any],
           shown: list[str] | None = None) -> None:
    """Rank 0 prints the table (the `shown` rows), writes results.npz, the JSON (all rows) and the pointer
    run.visualize reads."""
    if not dist.is_main():
        return
    table = result.table if shown is None else {k: result.table[k] for k in shown}
    print(format_table(table, result.titles, result.title))
    if "checkpoint" in header:
        print(f"checkpoint: {header['checkpoint']}")
    print("samplers: " + "; ".join(f"{k}: {v}" for k, v in result.samplers.items()))
    print(f"{result.nfe:.0f} network evaluations per sample, {result.seconds:.1f} s sampling")
    write_npz(results, **result.arrays)
    print(f"wrote {results}")
    pointer = last_results_pointer()
    try:
        pointer.parent.mkdir(parents=True, exist_ok=True)
        write_text(pointer, str(results.resolve()))
    except (OSError, ToolkitError):
        pass  # the pointer is a convenience; a read-only cache must not fail the evaluation
    if json_path is not None:
        write_json(json_path, dict(header, nfe=result.nfe, seconds=result.seconds, title=result.title,
                                   samplers=result.samplers, titles=result.titles, table=result.table))
        print(f"wrote {json_path}")
