"""Command-line plumbing shared by the entry points: config flags, overrides, task options, clean errors.

Every option that is a hyperparameter is a config field: `--config.a.b=value` sets any field, and the short
flags of the paper's commands (--gt, --sample, --seed, --batch, --hypo, --steps, ...) are aliases of one field
each, declared with the field's default, check and help in configs/default_h36m_configs.py (`config_flags` makes
them). Overrides are applied to the config before anything is built; one that cannot take effect (a model field on
an existing checkpoint) is an error naming the field.

argparse rather than absl's config_flags: the evaluation commands read the config stored *in the checkpoint*,
which exists only after --ckpt-dir is parsed, while config_flags binds overrides to a config file given on the
command line; absl's flags are also process-global, which the in-process tests and the API would share.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from typing import Any

import ml_collections
import torch

from configs.default_h36m_configs import SETTINGS
from lib import dist
from lib.config_utils import parse_override
from lib.errors import RunInterruptedError, ToolkitError
from lib.evaluate import EvalOutputs, output_paths, run_evaluation
from lib.loader import LoadedPrior, load_prior
from lib.resolve import MODE_FLAGS, SAMPLER_FIELDS, resolve_sampler
from lib.tasks import TaskDefinition

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
    """A short flag that sets one config field (the paper's command-line names), made by config_flags."""

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


def config_flags(*fields: str) -> tuple[ConfigFlag, ...]:
    """The short flags of config fields, each as its declaration in configs/default_h36m_configs.py gives it (the
    flag, its help, its choices) with the type of its default (a bool: a switch)."""
    out = []
    for key in fields:
        setting = SETTINGS[key]
        kind = None if isinstance(setting.default, bool) else type(setting.default)
        out.append(ConfigFlag(setting.flag, key, kind, setting.help, getattr(setting.check, "names", None)))
    return tuple(out)


SAMPLER_FLAGS = config_flags("sampling.method", "sampling.steps", "sampling.schedule", "sampling.eta")
EVAL_FLAGS = config_flags("data.test_sample", "eval.reduce", "eval.completion", "eval.min_conf", "data.use_gt_2d",
                          "seed", "eval.batch_size") + SAMPLER_FLAGS
TRAIN_FLAGS = config_flags("data.use_gt_2d", "data.train_sample", "data.flip", "training.select_on")


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


def add_task_parsers(parser: argparse.ArgumentParser, units: list[TaskDefinition]) -> None:
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


def task_options(unit: TaskDefinition, args: argparse.Namespace) -> Any:
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
    for name, text in MODE_FLAGS.items():
        parser.add_argument(f"--{name}", action="store_true", help=text)
    parser.add_argument("--out", help="folder for results.npz (default: the checkpoint folder)")
    parser.add_argument("--json", help="write all metrics to this JSON file")
    for f in flags:
        f.add_to(parser)


def eval_setup(args: argparse.Namespace, raw: list[str], flags: tuple[ConfigFlag, ...] = EVAL_FLAGS
               ) -> tuple[LoadedPrior, dict[str, Any], torch.device]:
    """The prior of --ckpt-dir (its own config, or --config for official files) with every override of the command
    line applied before anything is built (lib/loader.load_prior); returns it, the fields the command line set and
    this rank's device."""
    check_gpus(args.gpus)
    given: dict[str, Any] = {}

    def overrides(config: ml_collections.ConfigDict) -> dict[str, Any]:
        given.update(collect_overrides(config, raw, args, flags))
        return given

    device = dist.init()
    return load_prior(args.ckpt_dir, args.best, args.config, overrides, device), given, device


def sampler_fields(given: dict[str, Any]) -> dict[str, Any]:
    """The sampler fields (method, steps, schedule, eta) among the config fields the command line set."""
    return {k: given[f"sampling.{k}"] for k in SAMPLER_FIELDS if f"sampling.{k}" in given}


def evaluate_command(args: argparse.Namespace, raw: list[str], unit: TaskDefinition, flags: tuple[ConfigFlag, ...],
                     deterministic: bool = False, traj_frames: int = 0, hide: tuple[str, ...] = ()) -> None:
    """Parse an evaluation command's options, load the prior, resolve its sampler (lib/resolve.py), check the
    output paths, and run the evaluation (lib/evaluate.run_evaluation)."""
    opts = task_options(unit, args)
    prior, given, device = eval_setup(args, raw, flags)
    sampler = resolve_sampler(prior.config, device, fast=args.fast, pflow=args.pflow, deterministic=deterministic,
                              given=sampler_fields(given))
    results, json_path = output_paths(args.out or args.ckpt_dir, args.json)
    outputs = EvalOutputs(results, json_path, traj_frames, hide, getattr(args, "baseline", None))
    try:
        run_evaluation(unit, opts, prior, sampler, tuple(given), outputs, device)
    finally:
        dist.shutdown()
