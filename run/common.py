"""Command-line plumbing shared by the entry points: config flags, overrides, task options, clean errors.

Every option that is a hyperparameter is a config field: `--config.a.b=value` sets any field, and the short
flags of the paper's commands (--gt, --sample, --seed, --batch, --hypo, --steps, ...) are declared once as
aliases of one field each (`ConfigFlag`). Overrides are applied to the config before anything is built; one
that cannot take effect (a model field on an existing checkpoint) is an error naming the field.

argparse rather than absl's config_flags: the evaluation commands read the config stored *in the checkpoint*,
which exists only after --ckpt-dir is parsed, while config_flags binds overrides to a config file given on the
command line; absl's flags are also process-global, which the in-process tests and the API would share.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import ml_collections
import torch

from lib import dist
from lib.aggregate import AGGREGATORS
from lib.builders import (
    SAMPLER_FIELDS,
    build_sampler_config,
    build_score_fn,
    build_sde,
    check_same_network,
    checkpoint_path,
    choose_sampler,
    frames_of,
    load_data,
    load_model,
    model_from_state,
    stored_config,
    students_from_state,
)
from lib.checkpoint import load_checkpoint
from lib.config_utils import apply_overrides, load_config, parse_override, validate_config
from lib.detnoise import detector_noise
from lib.errors import RunInterruptedError, ToolkitError
from lib.evaluate import EvalResult, EvalSettings, evaluate
from lib.io import check_output, json_with, last_results_pointer, npz_with, write_json, write_npz, write_text
from lib.metrics import format_table
from lib.model import ScoreFn
from lib.robust import RobustSettings
from lib.sampling import SAMPLERS, SCHEDULES, SamplerConfig
from lib.tasks import Context, TaskUnit
from lib.tasks.observe import COMPLETIONS

ARGV_ENV = "GFPOSE_ARGV"  # --gpus relaunch: the arguments travel here, past torchrun's own parser


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): what was wrong, and where the options are listed."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str) -> None:
        flag = message.partition(": ")[0].removeprefix("argument ")
        if message.startswith("argument ") and message.partition(": ")[2].startswith(flag.split("/")[-1]):
            message = message.partition(": ")[2]  # number(): the message names the flag itself
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def number(flag: str, kind: type = int, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Callable[[str], int | float]:
    """The one parse of a numeric flag: a finite number of `kind` (int: a whole number) within [low, high] (low
    excluded with low_open); anything else is one line naming the flag, what it takes and what it got."""
    what = "a whole number" if kind is int else "a number"
    need = " and ".join(part for part in (
        "" if low is None else f"{'>' if low_open else '>='} {low:g}", "" if high is None else f"<= {high:g}") if part)

    def parse(text: str) -> int | float:
        try:
            value = float(text)
            ok = math.isfinite(value) and (kind is not int or value.is_integer())
        except ValueError:
            ok = False
        if ok and kind is int:  # exactly, also past float's 2**53
            value = int(text) if text.strip().lstrip("+-").isdigit() else int(value)
        if ok:
            ok = (low is None or value > low or (value == low and not low_open)) and (high is None or value <= high)
        if not ok:
            raise argparse.ArgumentTypeError(f"{flag} must be {what}{' ' + need if need else ''}, got {text!r}")
        return value
    return parse


def number_list(flag: str, kind: type = int, low: float | None = None, high: float | None = None,
                low_open: bool = False) -> Callable[[str], list[int | float]]:
    """A comma-separated list of numbers, each parsed by number()."""
    one = number(flag, kind, low, high, low_open)

    def parse(text: str) -> list[int | float]:
        items = [t for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{flag} must be a comma-separated list of numbers, got {text!r}")
        return [one(t.strip()) for t in items]
    return parse


@dataclass(frozen=True)
class ConfigFlag:
    """A short flag that sets one config field (the paper's command-line names)."""

    flag: str
    field: str
    type: type | None          # None: a switch that sets True
    help: str
    choices: tuple | None = None

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        dest = self.flag.lstrip("-").replace("-", "_")
        if self.type is None:
            parser.add_argument(self.flag, dest=dest, action="store_true", default=None,
                                help=f"{self.help} ({self.field}=true)")
        else:
            parser.add_argument(self.flag, dest=dest, type=self.type, choices=self.choices,
                                help=f"{self.help} ({self.field})")

    def value(self, args: argparse.Namespace) -> Any:
        return getattr(args, self.flag.lstrip("-").replace("-", "_"), None)


SAMPLER_FLAGS = (
    ConfigFlag("--sampler", "sampling.method", str, "sampler", tuple(SAMPLERS)),
    ConfigFlag("--steps", "sampling.steps", int, "sampler steps"),
    ConfigFlag("--schedule", "sampling.schedule", str, "time grid", ("auto",) + tuple(SCHEDULES)),
    ConfigFlag("--eta", "sampling.eta", float, "ddim / dpm2m noise: 0 = ODE, 1 = SDE"),
)
EVAL_FLAGS = (
    ConfigFlag("--sample", "data.test_sample", int, "evaluate every k-th test row"),
    ConfigFlag("--reduce", "eval.reduce", str,
               "the one pose made from S hypotheses (see README 'One pose from many hypotheses')",
               tuple(AGGREGATORS)),
    ConfigFlag("--completion", "eval.completion", str, "comp2d / comp3d: how the observation is used "
               "(lib/tasks/observe.py; README 'Completion')", COMPLETIONS),
    ConfigFlag("--min-conf", "eval.min_conf", float, "detected joints below this confidence are not given"),
    ConfigFlag("--gt", "data.use_gt_2d", None, "condition on ground-truth 2D instead of detections"),
    ConfigFlag("--seed", "seed", int, "random seed"),
    ConfigFlag("--batch", "eval.batch_size", int, "poses x hypotheses per network call"),
) + SAMPLER_FLAGS
TRAIN_FLAGS = (
    ConfigFlag("--gt", "data.use_gt_2d", None, "condition on ground-truth 2D"),
    ConfigFlag("--sample", "data.train_sample", int, "keep every k-th training row"),
    ConfigFlag("--flip", "data.flip", None, "random horizontal flips"),
    ConfigFlag("--select-on", "training.select_on", str, "rows best_model.pth is chosen on: val (held-out training "
               "sequences) or test (the paper's)", ("val", "test")),
)


def add_config_arg(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--config", required=required,
                        help="config file defining get_config(); override any field with --config.a.b=value")


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """Parse arguments; '--config.a.b=value' (or '--config.a.b value') items are returned as raw overrides."""
    if argv is None:
        argv = json.loads(os.environ[ARGV_ENV]) if ARGV_ENV in os.environ else sys.argv[1:]
    overrides, rest, i = [], [], 0
    while i < len(argv):
        item = argv[i]
        if item.startswith("--config."):
            if "=" in item:
                overrides.append(item[len("--config."):])
            elif i + 1 < len(argv):
                overrides.append(f"{item[len('--config.'):]}={argv[i + 1]}")
                i += 1
            else:
                parser.error(f"{item} needs a value")
        else:
            rest.append(item)
        i += 1
    return parser.parse_args(rest), overrides


def collect_overrides(config: ml_collections.ConfigDict, raw: list[str], args: argparse.Namespace,
                      flags: tuple[ConfigFlag, ...]) -> dict[str, Any]:
    """Field -> value from --config.* and the short flags; one field set two ways to two values is an error."""
    out: dict[str, Any] = {}
    for item in raw:
        key, value = parse_override(config, item)
        out[key] = value
    for f in flags:
        value = f.value(args)
        if value is None:
            continue
        value = True if f.type is None else value
        if f.field in out and out[f.field] != value:
            raise ToolkitError(f"{f.flag} and --config.{f.field}={out[f.field]} disagree; give one of them")
        out[f.field] = value
    return out


def apply_mode(config: ml_collections.ConfigDict, fast: bool, pflow: bool, deterministic: bool,
               overrides: dict[str, Any]) -> None:
    """--pflow / --fast (lib/builders.choose_sampler) written into config.sampling; --fast also turns on bf16
    where config.fast.bf16 allows (used only where bf16 is native)."""
    explicit = tuple(k for k in SAMPLER_FIELDS if f"sampling.{k}" in overrides)
    cfg = choose_sampler(config, fast, pflow, deterministic, explicit)
    for k in SAMPLER_FIELDS:
        config.sampling[k] = getattr(cfg, k)
    if fast and config.fast.bf16:
        config.sampling.bf16 = True


def run_name(name: str) -> str:
    """A --name: one plain folder name (not empty, '.', '..', or a path)."""
    if not name.strip() or name in (".", "..") or "/" in name or "\\" in name or name != name.strip():
        raise ToolkitError(f"--name {name!r} must be a plain folder name (letters, digits, - _ .), not empty or a path")
    return name


def guarded(main: Callable[[], None]) -> None:
    """Run main: bad input is one line on stderr and exit 2; a signal that stopped training its own code."""
    try:
        main()
    except ToolkitError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)  # one line, whatever a message quotes
        sys.exit(2)
    except RunInterruptedError as e:
        print(str(e), file=sys.stderr)
        sys.exit(e.code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def check_gpus(gpus: int | None) -> None:
    """--gpus G: at most the CUDA devices here; on a CPU machine G gloo workers, at most 8 or one per core (the
    paper's commands say --gpus 4)."""
    if gpus is None:
        return
    cuda = torch.cuda.is_available()
    most, what = (torch.cuda.device_count(), "GPUs") if cuda else (max(8, os.cpu_count() or 1), "CPU workers")
    if not 0 <= gpus <= most:
        raise ToolkitError(f"--gpus must be between 0 and {most} (the {what} here), got {gpus}")


def relaunch_workers(gpus: int | None, module: str) -> None:
    """`--gpus G` without torchrun: start G local workers under torch.distributed.run, then exit with their status.

    The arguments travel in an environment variable: torchrun's own parser would take `--num` for `--numa-binding`.
    """
    check_gpus(gpus)
    if gpus is None or gpus <= 1 or "RANK" in os.environ:
        return
    argv, skip = [], False
    for a in sys.argv[1:]:
        if not skip and a != "--gpus" and not a.startswith("--gpus="):
            argv.append(a)
        skip = a == "--gpus"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "-m", module]
    sys.exit(subprocess.call(cmd, env=dict(os.environ, **{ARGV_ENV: json.dumps(argv)})))


# ------------------------------------------------------------------------------------ task options


def add_task_parsers(parser: argparse.ArgumentParser, units: list[TaskUnit]) -> None:
    """One sub-command per task, with the flags its Options dataclass declares."""
    sub = parser.add_subparsers(dest="task", required=True)
    for unit in units:
        p = sub.add_parser(unit.name, help=unit.help)
        for f in fields(unit.Options):
            meta = f.metadata
            names = meta["flag"] or (f"--{f.name.replace('_', '-')}",)
            p.add_argument(*names, dest=f.name, type=meta["type"], choices=meta["choices"],
                           default=None if f.default is MISSING else f.default,
                           help=f"{meta['help']} (default: {f.default})")


def task_options(unit: TaskUnit, args: argparse.Namespace) -> Any:
    opts = unit.Options(**{f.name: getattr(args, f.name) for f in fields(unit.Options)})
    opts.validate()
    return opts


# ------------------------------------------------------------------------------------ evaluation setup


def add_eval_args(parser: argparse.ArgumentParser, flags: tuple[ConfigFlag, ...] = EVAL_FLAGS) -> None:
    """Arguments shared by the evaluation and denoising command lines."""
    add_config_arg(parser, required=False)
    parser.add_argument("--ckpt-dir", required=True, help="run folder with checkpoint.pth / best_model.pth")
    parser.add_argument("--best", action="store_true", help="use best_model.pth instead of checkpoint.pth")
    parser.add_argument("--gpus", type=int, help="start this many local workers (without torchrun)")
    parser.add_argument("--pflow", action="store_true",
                        help="the paper's deterministic sampler (drift-only reverse SDE; sampling.method=drift)")
    parser.add_argument("--fast", action="store_true", help="the validated fast sampler for the mode asked for "
                        "(stochastic, or deterministic with --pflow); bf16 where native (config.fast)")
    parser.add_argument("--out", help="folder for results.npz (default: the checkpoint folder)")
    parser.add_argument("--json", help="write all metrics to this JSON file")
    for f in flags:
        f.add_to(parser)


_TRAINED = ("model.", "training.", "optim.", "detnoise.")
_TRAINED_DATA = ("data.scale", "data.image_size", "data.num_joints", "data.joint_dim")  # the network's input frame


def fixed_in_checkpoint(path: Path) -> Callable[[str], str | None]:
    """Why a config field cannot change once a checkpoint exists (None: it can)."""
    def why(key: str) -> str | None:
        if key.startswith(_TRAINED) or key in _TRAINED_DATA:
            return f"the network and its training come from {path}; {key} belongs to training"
        return None
    return why


@dataclass
class EvalSetup:
    config: ml_collections.ConfigDict
    model: Any
    sampler: SamplerConfig
    device: Any
    pose_stats: dict | None = None     # the training skeleton the checkpoint carries (lifting)
    pose_bank: torch.Tensor | None = None   # [R, J, 3] normalised training poses it carries (warm starts)
    students: dict | None = None       # {steps: network} distilled from it (lib/distill.py)
    given: tuple[str, ...] = ()        # the config fields the command line set
    checkpoint: str = ""               # the file the network came from


def eval_setup(args: argparse.Namespace, raw: list[str], flags: tuple[ConfigFlag, ...] = EVAL_FLAGS,
               deterministic: bool = False) -> EvalSetup:
    """Resolve the config (the checkpoint's own, or --config for official files), apply every override and mode
    flag before anything is built, validate, then build the network from the checkpoint."""
    check_gpus(args.gpus)
    path = checkpoint_path(args.ckpt_dir, args.best)
    state = load_checkpoint(path)
    from_file = args.config is not None
    config = load_config(args.config) if from_file else stored_config(state, path)
    overrides = collect_overrides(config, raw, args, flags)
    apply_overrides(config, overrides, None if from_file else fixed_in_checkpoint(path))
    if from_file and "config" in state:  # the paper passes --config to every command: it must match the network
        check_same_network(config, stored_config(state, path), path)
    apply_mode(config, args.fast, args.pflow, deterministic, overrides)
    validate_config(config)
    sampler = build_sampler_config(config, build_sde(config))
    device = dist.init()
    return EvalSetup(config, model_from_state(state, config, path, device), sampler, device, state.get("pose_stats"),
                     state.get("pose_bank"), students_from_state(state, config, device), tuple(overrides), str(path))


def output_paths(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """results.npz and --json paths, checked (and their folders made) before any sampling starts."""
    results = Path(args.out or args.ckpt_dir) / "results.npz"
    if args.json and Path(args.json).resolve() == results.resolve():
        raise ToolkitError(f"--json {args.json} is the results file itself; give the metrics another name")
    report = check_output(args.json, "--json file", json_with("task", "table")) if args.json else None
    return check_output(results, "results file", npz_with("pred3d")), report


def evaluate_command(args: argparse.Namespace, raw: list[str], unit: TaskUnit, flags: tuple[ConfigFlag, ...],
                     deterministic: bool = False, traj_frames: int = 0, hide: tuple[str, ...] = ()) -> None:
    """The body of the evaluation commands: options, config (every override first), output paths checked, data,
    sampling (sharded over ranks), metrics, files. The table shows the oracle and the --reduce aggregate, less
    the rows whose id starts with `hide`; the JSON holds every row."""
    opts = task_options(unit, args)
    setup = eval_setup(args, raw, flags, deterministic)
    results, json_path = output_paths(args)
    config, sampler = setup.config, setup.sampler
    if dist.is_main():
        for line in unused_settings(setup.given, unit, config, traj_frames, args):
            print(f"warning: {line}", file=sys.stderr)
    train = load_data(config, "train") if unit.needs_train else None
    e = config.eval
    ctx = Context(frames_of(config), load_data(config, "test"), train, hypo=e.hypo, seed=config.seed,
                  num_joints=config.data.num_joints, reduce=e.reduce, completion=e.completion, min_conf=e.min_conf,
                  reproj_sigma=e.reproj_sigma, reproj_temper=e.reproj_temper, detector=detector_noise(e.detector_table),
                  warm_start=e.warm_start,
                  bank=None if setup.pose_bank is None else setup.pose_bank.float() * config.data.scale,
                  robust=RobustSettings.from_config(config))
    save_every = max(1, sampler.steps // traj_frames) if traj_frames else 0
    settings = EvalSettings(e.hypo, e.batch_size, config.seed, save_every, refine_t=e.refine_t,
                            refine_steps=e.refine_steps, warm_t=e.warm_t, warm_hypotheses=e.warm_hypotheses)
    sde = build_sde(config)
    baseline = load_baseline(args.baseline, config, setup.device) if getattr(args, "baseline", None) else None
    try:
        result = evaluate(unit, opts, ctx, build_score_fn(setup.model, sde, config, setup.students), sde, sampler,
                          settings, config, setup.device)
        if baseline is not None:  # the regression baseline on the same rows and 2D: its one pose per input
            base = evaluate(unit, opts, dataclasses.replace(ctx, hypo=1, robust=None), ScoreFn(baseline, sde), sde,
                            sampler, dataclasses.replace(settings, hypo=1, save_every=0), config, setup.device)
            for k in ("p1", "p2", "p1_root"):
                result.table[f"{k}@baseline"] = base.table[k]
                result.titles[f"{k}@baseline"] = f"{base.titles[k]} of the regression baseline ({args.baseline})"
    finally:
        dist.shutdown()
    header = {"task": unit.name, "checkpoint": setup.checkpoint, "hypo": e.hypo, "reduce": e.reduce,
              "sampler": sampler.method, "steps": sampler.steps, "options": dataclasses.asdict(opts)}
    shown = [k for k in result.table if not k.startswith(hide) and ("@" not in k or k.endswith((f"@{e.reduce}",
                                                                                                  "@baseline")))]
    report(result, results, json_path, header, shown)


def load_baseline(path: str, config: ml_collections.ConfigDict, device: torch.device) -> torch.nn.Module:
    """The regression baseline of --baseline RUN (lib/regression.py; its final checkpoint), in the prior's frame."""
    model, stored = load_model(checkpoint_path(path, False), None, device)
    if not getattr(model, "predicts_pose", False):
        raise ToolkitError(f"--baseline {path} is a {stored.model.name}, not a regression baseline; train one with "
                           f"python -m run.train_fc_adv_3d --config configs/subvp/cmu_baseline.py")
    for key in ("scale", "image_size", "num_joints"):
        if stored.data[key] != config.data[key]:
            raise ToolkitError(f"--baseline {path} was trained with data.{key} = {stored.data[key]}, the prior with "
                               f"{config.data[key]}; compare models trained in the same frame")
    return model


def unused_settings(given: tuple[str, ...], unit: TaskUnit, config: ml_collections.ConfigDict, traj_frames: int,
                    args: argparse.Namespace) -> list[str]:
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
    if "robust.enabled" in given and config.robust.enabled and (config.data.use_gt_2d or not unit.robust):
        out.append(f"--robust has no effect: it acts on est from detections, not on {unit.name} from "
                   f"{'ground-truth 2D' if config.data.use_gt_2d else 'this input'}")
    if getattr(args, "traj_frames", None) is not None and not traj_frames:
        out.append("--traj-frames has no effect without --save trajs")
    return out


def report(result: EvalResult, results: Path, json_path: Path | None, header: dict[str, Any],
           shown: list[str] | None = None) -> None:
    """Rank 0 prints the table (the `shown` rows), writes results.npz, --json (all rows) and the pointer
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
