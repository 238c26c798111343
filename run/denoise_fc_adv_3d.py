"""Denoise noisy 3D poses by starting the reverse process from them at a small time t.

    python -m run.denoise_fc_adv_3d --ckpt-dir checkpoint/demo --best den --noise-type gaussian --std 5 --t 0.05

As the paper: --std is in joint_3d_image units (pixels of the 1000-px frame), and the sampler is the paper's
drift-only one (1000 steps of 1/N from --t). The table also shows the drift integrated over its true time from
--t to eps (the fast sampler); --fast makes that one the main result.
"""
from __future__ import annotations

from lib.tasks import TASKS
from run.common import (
    EVAL_FLAGS,
    Parser,
    add_eval_args,
    add_task_parsers,
    evaluate_command,
    guarded,
    parse,
    relaunch_workers,
)


def main() -> None:
    parser = Parser(description=__doc__)
    add_eval_args(parser)
    parser.add_argument("--save", action="store_true", help="accepted for the paper's command (results.npz is "
                                                             "always written)")
    add_task_parsers(parser, [TASKS["den"]])
    args, raw = parse(parser)
    relaunch_workers(args.gpus, "run.denoise_fc_adv_3d")
    evaluate_command(args, raw, TASKS["den"], EVAL_FLAGS, deterministic=True)


if __name__ == "__main__":
    guarded(main)
