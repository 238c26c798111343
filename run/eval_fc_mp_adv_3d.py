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

from lib.tasks import TASKS
from run.common import (
    EVAL_FLAGS,
    Parser,
    add_eval_args,
    add_task_parsers,
    config_flags,
    evaluate_command,
    guarded,
    number,
    parse,
    relaunch_workers,
)

UNITS = [TASKS[name] for name in ("est", "comp2d", "comp3d", "gen")]
FLAGS = EVAL_FLAGS + config_flags("eval.hypo", "robust.mode", "eval.detector_table")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(description=__doc__)
    add_eval_args(parser, FLAGS)
    parser.add_argument("--baseline", metavar="RUN", help="also score a regression baseline's run folder (its "
                        "checkpoint.pth; lib/regression.py) on the same rows and 2D")
    parser.add_argument("--proto2", action="store_true", help="also print the Protocol-2 rows (always in --json)")
    parser.add_argument("--save", choices=("results", "trajs"), default="results",
                        help="results: final poses; trajs: also the diffusion trajectory")
    parser.add_argument("--traj-frames", type=number("--traj-frames", int, 1),
                        help="with --save trajs: states kept, at most (default 50)")
    add_task_parsers(parser, UNITS)
    return parser


def main() -> None:
    args, raw = parse(build_parser())
    relaunch_workers(args.gpus, "run.eval_fc_mp_adv_3d")
    frames = 50 if args.traj_frames is None else args.traj_frames
    evaluate_command(args, raw, TASKS[args.task], FLAGS, traj_frames=frames if args.save == "trajs" else 0,
                     hide=() if args.proto2 else ("p2",))


if __name__ == "__main__":
    guarded(main)
