"""Evaluate a prior on one task: est, comp2d, comp3d, gen (multi-hypothesis, torchrun-ready).

    python -m run.eval_fc_mp_adv_3d --ckpt-dir checkpoint/demo --best --hypo 20 est
    python -m run.eval_fc_mp_adv_3d --ckpt-dir checkpoint/demo --best --pflow est          # the paper's --pflow
    python -m run.eval_fc_mp_adv_3d --ckpt-dir checkpoint/demo --best --pflow --fast est   # its fast form
    python -m run.eval_fc_mp_adv_3d --ckpt-dir checkpoint/demo --best comp2d --jlist right_leg,13
    python -m run.eval_fc_mp_adv_3d --ckpt-dir checkpoint/demo --best --pflow comp3d --randj 3
    torchrun --nproc_per_node=2 -m run.eval_fc_mp_adv_3d --ckpt-dir DIR --best --hypo 200 est
    python -m run.eval_fc_mp_adv_3d --config configs/subvp/h36m_ncsnpp_deep_continuous.py \\
        --ckpt-dir path/to/U3D --best --sample 640 --hypo 200 est      # official checkpoint
"""
from __future__ import annotations

import argparse

from lib import dist
from lib.builders import build_score_fn, build_sde, frames_of, load_data
from lib.errors import ToolkitError
from lib.evaluate import EvalSettings, evaluate
from lib.tasks import TASKS, Context
from run.common import (
    EVAL_FLAGS,
    ConfigFlag,
    add_eval_args,
    add_task_parsers,
    eval_setup,
    guarded,
    output_paths,
    parse,
    relaunch_workers,
    report,
    task_options,
)

MODULE = "run.eval_fc_mp_adv_3d"
UNITS = [TASKS[name] for name in ("est", "comp2d", "comp3d", "gen")]
FLAGS = EVAL_FLAGS + (ConfigFlag("--hypo", "eval.hypo", int, "hypotheses per input (S)"),)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_args(parser, FLAGS)
    parser.add_argument("--proto2", action="store_true", help="also print the Protocol-2 rows (always in --json)")
    parser.add_argument("--save", choices=("results", "trajs"), default="results",
                        help="results: final poses; trajs: also the diffusion trajectory")
    parser.add_argument("--traj-frames", type=int, default=50, help="with --save trajs: states kept (at most)")
    add_task_parsers(parser, UNITS)
    return parser


def main() -> None:
    args, raw = parse(build_parser())
    relaunch_workers(args.gpus, MODULE)
    if args.traj_frames < 1:
        raise ToolkitError(f"--traj-frames must be >= 1, got {args.traj_frames}")
    unit = TASKS[args.task]
    opts = task_options(unit, args)
    setup = eval_setup(args, raw, FLAGS)
    results, json_path = output_paths(args)
    config, sampler = setup.config, setup.sampler
    ctx = Context(frames_of(config), load_data(config, "test"), load_data(config, "train") if unit.needs_train
                  else None, hypo=config.eval.hypo, seed=config.seed, num_joints=config.data.num_joints)
    save_every = max(1, sampler.steps // args.traj_frames) if args.save == "trajs" else 0
    settings = EvalSettings(config.eval.hypo, config.eval.batch_size, config.seed, save_every)
    sde = build_sde(config)
    try:
        result = evaluate(unit, opts, ctx, build_score_fn(setup.model, sde, config), sde, sampler, settings, config,
                          setup.device)
    finally:
        dist.shutdown()
    report(result, results, json_path, {"task": args.task, "hypo": config.eval.hypo, "sampler": sampler.method,
                                        "steps": sampler.steps}, hide=() if args.proto2 else ("p2",))


if __name__ == "__main__":
    guarded(main)
