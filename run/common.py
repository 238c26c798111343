"""Shared command-line plumbing: --config and --config.a.b=value overrides, clean one-line errors."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import ml_collections
import numpy as np

from lib import dist
from lib.builders import build_sampler_config, checkpoint_path, load_model
from lib.config_utils import apply_overrides, load_config
from lib.errors import ToolkitError
from lib.metrics import format_table
from lib.sampling import SamplerConfig
from lib.sde import SDE


def add_config_arg(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--config", required=required,
                        help="config file defining get_config(); override fields with --config.a.b=value")


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None
          ) -> tuple[argparse.Namespace, list[str]]:
    """Parse arguments; '--config.a.b=value' (or '--config.a.b value') items are returned as overrides."""
    argv = list(sys.argv[1:] if argv is None else argv)
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


def config_from_args(path: str, overrides: list[str]) -> ml_collections.ConfigDict:
    return apply_overrides(load_config(path), overrides)


def guarded(main: Callable[[], None]) -> None:
    """Run main; a ToolkitError or bad value becomes one line on stderr and exit code 2, Ctrl-C exit 130."""
    try:
        main()
    except ToolkitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by the evaluation and denoising command lines."""
    add_config_arg(parser, required=False)
    parser.add_argument("--ckpt-dir", required=True, help="run folder with checkpoint.pth / best_model.pth")
    parser.add_argument("--best", action="store_true", help="use best_model.pth instead of checkpoint.pth")
    parser.add_argument("--sample", type=int, help="evaluate every k-th test row (data.test_sample)")
    parser.add_argument("--gt", action="store_true", help="condition on ground-truth 2D instead of detections")
    parser.add_argument("--gpus", type=int, default=0, help="start this many local workers (without torchrun)")
    parser.add_argument("--pflow", action="store_true", help="probability-flow ODE (pflow_euler)")
    parser.add_argument("--sampler", help="sampler: em, reverse_diffusion, ancestral, pflow_euler, heun, "
                                          "pflow_rk45, ddim, dpm2m (default: sampling.method)")
    parser.add_argument("--steps", type=int, help="sampler steps (default: sampling.steps)")
    parser.add_argument("--schedule", help="time grid: uniform, logsnr, quadratic, edm (default: sampling.schedule)")
    parser.add_argument("--eta", type=float, help="ddim / dpm2m noise, 0 = ODE, 1 = SDE (default: sampling.eta)")
    parser.add_argument("--seed", type=int, help="random seed (default: config seed)")
    parser.add_argument("--batch", type=int, help="poses x hypotheses per network call (eval.batch_size)")
    parser.add_argument("--out", help="folder for results.npz (default: the checkpoint folder)")
    parser.add_argument("--json", help="write all metrics to this JSON file")


def sampler_from_args(config: ml_collections.ConfigDict, sde: SDE, args: argparse.Namespace) -> SamplerConfig:
    """The config's sampler with --sampler / --pflow / --steps / --schedule / --eta applied."""
    return build_sampler_config(config, sde, method=args.sampler or ("pflow_euler" if args.pflow else None),
                                steps=args.steps, schedule=args.schedule, eta=args.eta)


def relaunch_workers(gpus: int, module: str) -> bool:
    """`--gpus G` without torchrun: start G local workers under torch.distributed.run; True if we did."""
    if gpus <= 1 or "RANK" in os.environ:
        return False
    argv, skip = [], False
    for a in sys.argv[1:]:
        if not skip and a != "--gpus" and not a.startswith("--gpus="):
            argv.append(a)
        skip = a == "--gpus"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
           "-m", module, *argv]
    sys.exit(subprocess.call(cmd))


def load_for_eval(args: argparse.Namespace, overrides: list[str]):
    """Resolve the config (checkpoint's own, or --config for official files), load the EMA model and data."""
    device = dist.init()
    path = checkpoint_path(args.ckpt_dir, args.best)
    model, config = load_model(path, load_config(args.config) if args.config else None, device)
    apply_overrides(config, overrides)
    if args.sample is not None:
        if args.sample < 1:
            raise ToolkitError(f"--sample must be >= 1, got {args.sample}")
        config.data.test_sample = args.sample
    return config, model, device


def report(result, args: argparse.Namespace, out_default: str, header: dict, hide: tuple[str, ...] = ()) -> None:
    """Rank 0 prints the tables (less rows starting with `hide`) and writes results.npz and --json (all rows)."""
    if not dist.is_main():
        return
    for title, table in result.tables.items():
        shown = {k: v for k, v in table.items() if not k.startswith(hide)} if hide else table
        print(format_table(shown, title))
    print(f"{result.nfe:.0f} network evaluations per sample, {result.seconds:.1f} s sampling")
    out = Path(args.out or out_default)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".results.tmp.npz"
    np.savez_compressed(tmp, **result.arrays)
    tmp.replace(out / "results.npz")
    print(f"wrote {out / 'results.npz'}")
    if args.json:
        payload = dict(header, nfe=result.nfe, seconds=result.seconds, tables=result.tables)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
