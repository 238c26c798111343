"""Train the GFPose score network.

    python -m run.train_fc_adv_3d --config configs/subvp/synthetic_small.py --name demo
    torchrun --nproc_per_node=2 -m run.train_fc_adv_3d --config CFG --name NAME   # DDP
    python -m run.train_fc_adv_3d --config CFG --name NAME --restore-dir checkpoint/NAME   # resume
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lib import dist
from lib.config_utils import apply_overrides, load_config
from lib.train import train
from run.common import TRAIN_FLAGS, Parser, add_config_arg, collect_overrides, guarded, parse, run_name


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(description=__doc__)
    add_config_arg(parser)
    parser.add_argument("--name", required=True, help="run name: writes CKPT_ROOT/NAME/")
    parser.add_argument("--restore-dir", help="resume from this run folder's checkpoint.pth")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder of this name")
    parser.add_argument("--ckpt-root", default="checkpoint", help="parent folder of run folders")
    for f in TRAIN_FLAGS:
        f.add_to(parser)
    return parser


def main() -> None:
    args, raw = parse(build_parser())
    config = load_config(args.config)
    apply_overrides(config, collect_overrides(config, raw, args, TRAIN_FLAGS))
    try:
        summary = train(config, Path(args.ckpt_root) / run_name(args.name), args.restore_dir, args.overwrite)
    finally:
        dist.shutdown()
    if dist.is_main():
        print(f"done: step {summary['step']}, best P1 {summary['best_p1']:.2f} mm (mean-pose baseline "
              f"{summary['mean_pose_p1']:.2f} mm), {summary['samples_per_s']:.0f} training samples/s")


if __name__ == "__main__":
    guarded(main)
