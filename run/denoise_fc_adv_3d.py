"""Denoise noisy 3D poses by starting the reverse process at a small time t.

    python -m run.denoise_fc_adv_3d --ckpt-dir checkpoint/demo --best den --noise-type gaussian --std 5 --t 0.05
"""
from __future__ import annotations

import argparse

from lib import dist
from lib.builders import build_sde, load_data
from lib.errors import ToolkitError
from lib.evaluate import EvalOptions, evaluate_task
from run.common import add_eval_args, guarded, load_for_eval, parse, relaunch_workers, report, sampler_from_args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_args(parser)
    parser.add_argument("--save", action="store_true", help="write results.npz (always written; kept for "
                                                             "compatibility with the reference)")
    sub = parser.add_subparsers(dest="task", required=True)
    den = sub.add_parser("den", help="denoise the test poses")
    den.add_argument("--noise-type", choices=("gaussian", "uniform"), default="gaussian")
    den.add_argument("--std", type=float, default=5.0, help="noise standard deviation per coordinate, mm")
    den.add_argument("--t", type=float, default=0.05, help="start time of the reverse process, in (0, 1]")
    args, overrides = parse(parser)
    relaunch_workers(args.gpus, "run.denoise_fc_adv_3d")
    if not 0.0 < args.t <= 1.0:
        raise ToolkitError(f"--t must be in (0, 1], got {args.t}")
    if args.std < 0:
        raise ToolkitError(f"--std must be >= 0 (millimetres), got {args.std}")
    config, model, device = load_for_eval(args, overrides)
    sde = build_sde(config)
    sampler = sampler_from_args(config, sde, args)
    if args.t <= sampler.eps:
        raise ToolkitError(f"--t ({args.t}) must be larger than the sampler's end time sampling.eps ({sampler.eps})")
    opts = EvalOptions(task="den", sampler=sampler, batch_size=args.batch or config.eval.batch_size,
                       seed=config.seed if args.seed is None else args.seed, noise_type=args.noise_type,
                       noise_std=args.std, t_start=args.t)
    try:
        result = evaluate_task(model, sde, config, load_data(config, "test"), None, opts, device)
    finally:
        dist.shutdown()
    report(result, args, args.ckpt_dir, {"task": "den", "noise_type": args.noise_type, "std": args.std,
                                         "t": args.t, "sampler": sampler.method, "steps": sampler.steps})


if __name__ == "__main__":
    guarded(main)
