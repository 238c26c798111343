"""Make datasets in the H36M-Toolbox pickle layout.

    python -m run.prepare_data synthetic --out data/synthetic [--seed 0]
"""
from __future__ import annotations

import argparse
import time

from lib.synthetic import generate
from run.common import guarded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="source", required=True)
    syn = sub.add_parser("synthetic", help="the embedded synthetic dataset (no download)")
    syn.add_argument("--out", default="data/synthetic")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--train-frames", type=int, default=32, help="frames per subject, action and subaction")
    syn.add_argument("--test-frames", type=int, default=16)
    args = parser.parse_args()
    if args.train_frames < 1 or args.test_frames < 1:
        parser.error("--train-frames and --test-frames must be >= 1")
    start = time.monotonic()
    counts = generate(args.out, args.seed, args.train_frames, args.test_frames)
    print(f"wrote {args.out}: {counts['train']} train rows, {counts['test']} test rows "
          f"(subjects 1,5,6,7,8 / 9,11; 15 actions; 4 cameras) in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    guarded(main)
