"""Evaluate a prior on one task: est, gen, comp2d, comp3d (multi-hypothesis, torchrun-ready).

    python -m run.eval_fc_mp_adv_3d --ckpt-dir checkpoint/demo --best --hypo 20 est
    python -m run.eval_fc_mp_adv_3d --ckpt-dir checkpoint/demo --best comp2d --jlist right_leg,13
    python -m run.eval_fc_mp_adv_3d --ckpt-dir checkpoint/demo --best --pflow comp3d --randj 3
    torchrun --nproc_per_node=2 -m run.eval_fc_mp_adv_3d --ckpt-dir DIR --best --hypo 200 est
    python -m run.eval_fc_mp_adv_3d --config configs/subvp/h36m_ncsnpp_deep_continuous.py \\
        --ckpt-dir path/to/U3D --best --sample 640 --hypo 200 est      # official checkpoint
"""
from __future__ import annotations

import argparse

from lib import dist
from lib.builders import build_sde, load_data
from lib.errors import ToolkitError
from lib.evaluate import EvalOptions, evaluate_task
from lib.skeleton import COMPLETION_CANDIDATES, parse_joint_list
from run.common import add_eval_args, guarded, load_for_eval, parse, relaunch_workers, report, sampler_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_args(parser)
    parser.add_argument("--hypo", type=int, default=1, help="hypotheses per input (S)")
    parser.add_argument("--proto2", action="store_true", help="also print Protocol-2 rows (always in --json)")
    parser.add_argument("--save", choices=("results", "trajs"), default="results",
                        help="results: final poses; trajs: also the diffusion trajectory")
    parser.add_argument("--traj-frames", type=int, default=50, help="with --save trajs: states kept (at most)")
    sub = parser.add_subparsers(dest="task", required=True)
    sub.add_parser("est", help="3D pose estimation from 2D keypoints")
    gen = sub.add_parser("gen", help="generate new poses")
    gen.add_argument("--num", type=int, default=1000, help="number of poses to generate")
    for name in ("comp2d", "comp3d"):
        p = sub.add_parser(name, help=f"completion from partial {name[-2:].upper()} poses")
        group = p.add_mutually_exclusive_group(required=True)
        group.add_argument("--randj", type=int, help=f"random missing joints among {list(COMPLETION_CANDIDATES)}")
        group.add_argument("--jlist", help="missing joints: indices and/or parts, e.g. 1,2,3 or right_leg,left_arm")
    return parser


def main() -> None:
    args, overrides = parse(build_parser())
    relaunch_workers(args.gpus, "run.eval_fc_mp_adv_3d")
    if args.hypo < 1:
        raise ToolkitError(f"--hypo must be >= 1, got {args.hypo}")
    jlist = None
    if getattr(args, "jlist", None) is not None:
        try:
            jlist = parse_joint_list(args.jlist)
        except ValueError as e:
            raise ToolkitError(f"--jlist: {e}") from e
    randj = getattr(args, "randj", None) or 0
    if getattr(args, "randj", None) is not None and not 1 <= randj <= len(COMPLETION_CANDIDATES):
        raise ToolkitError(f"--randj must be between 1 and {len(COMPLETION_CANDIDATES)} (the candidate joints "
                           f"{list(COMPLETION_CANDIDATES)}), got {args.randj}")
    if args.task == "gen" and args.num < 1:
        raise ToolkitError(f"--num must be >= 1, got {args.num}")
    config, model, device = load_for_eval(args, overrides)
    sde = build_sde(config)
    sampler = sampler_from_args(config, sde, args)
    opts = EvalOptions(task=args.task, sampler=sampler, hypo=args.hypo,
                       batch_size=args.batch or config.eval.batch_size,
                       seed=config.seed if args.seed is None else args.seed,
                       use_gt_2d=args.gt or config.data.use_gt_2d,
                       save_every=max(1, sampler.steps // args.traj_frames) if args.save == "trajs" else 0,
                       randj=randj, jlist=jlist, num_gen=getattr(args, "num", 1000))
    test = load_data(config, "test")
    train = load_data(config, "train") if args.task == "gen" else None
    try:
        result = evaluate_task(model, sde, config, test, train, opts, device)
    finally:
        dist.shutdown()
    report(result, args, args.ckpt_dir, {"task": args.task, "hypo": args.hypo, "sampler": sampler.method,
                                         "steps": sampler.steps}, hide=() if args.proto2 else ("P2",))


if __name__ == "__main__":
    guarded(main)
