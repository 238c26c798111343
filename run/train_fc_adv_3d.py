"""Train the GFPose score network.

    python -m run.train_fc_adv_3d --config configs/subvp/synthetic_small.py --name demo
    torchrun --nproc_per_node=2 -m run.train_fc_adv_3d --config CFG --name NAME   # DDP
    python -m run.train_fc_adv_3d --config CFG --name NAME --restore-dir checkpoint/NAME   # resume
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lib import dist
from lib.train import train
from run.common import add_config_arg, config_from_args, guarded, parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(parser)
    parser.add_argument("--name", required=True, help="run name: writes checkpoint/NAME/")
    parser.add_argument("--restore-dir", help="resume from this run folder's checkpoint.pth")
    parser.add_argument("--gt", action="store_true", help="condition on ground-truth 2D (data.use_gt_2d)")
    parser.add_argument("--sample", type=int, help="keep every k-th training row (data.train_sample)")
    parser.add_argument("--flip", action="store_true", help="random horizontal flips (data.flip)")
    parser.add_argument("--ckpt-root", default="checkpoint", help="parent folder of run folders")
    args, overrides = parse(parser)
    config = config_from_args(args.config, overrides)
    if args.gt:
        config.data.use_gt_2d = True
    if args.sample is not None:
        config.data.train_sample = args.sample
    if args.flip:
        config.data.flip = True
    try:
        summary = train(config, Path(args.ckpt_root) / args.name, args.restore_dir)
    finally:
        dist.shutdown()
    if dist.is_main():
        print(f"done: step {summary['step']}, best P1 {summary['best_p1']:.2f} mm (mean-pose baseline "
              f"{summary['mean_pose_p1']:.2f} mm), {summary['samples_per_s']:.0f} training samples/s")


if __name__ == "__main__":
    guarded(main)
