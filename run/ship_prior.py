"""Make a trained run into the small inference-only prior that ships (lib/ship.py), with its card.

    python -m run.ship_prior --ckpt-dir checkpoint/cmu_prior --out lib/resources/cmu_prior \\
        --metrics gt_s1=checkpoint/cmu_prior/gt_s1.json det_s1=checkpoint/cmu_prior/det_s1.json \\
        --command "python -m run.train_fc_adv_3d --config configs/subvp/cmu_prior.py --name cmu_prior ..."

`make prior` runs the whole recipe: the CMU data, training, the held-out measurements and this command.
"""
from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import numpy as np

from lib.errors import ToolkitError
from lib.io import load_npz, refuse_existing
from lib.loader import checkpoint_path
from lib.ship import ship
from run.common import Parser, guarded

DATA = ("CMU Graphics Lab Motion Capture Database (http://mocap.cs.cmu.edu/; created with funding from NSF "
        "EIA-0196217), the 96-clip subset converted to 17 Human3.6M joints (python -m run.prepare_data cmu --pack "
        "cmu_h36m17.npz); trained on its train clips, measured on its test clips")
LICENCE = ("CMU's terms: free for research and may be included in commercially sold products, not resold directly, "
           "even in converted form; acknowledge the CMU database in publications")


def metric(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--metrics takes NAME=PATH items, got {text!r}")
    return name, path


def held_out_walk(pack: Path, frames: int = 60) -> np.ndarray:
    """The first `frames` poses [T, 17, 3] (mm, Z up) of the first test clip of 'walking' in the CMU pack."""
    data = load_npz(pack, "the CMU pack npz")
    try:
        clip = next(c for c in range(len(data["clip_names"]))
                    if data["action"][c] == "walking" and data["split"][c] == "test")
    except (KeyError, StopIteration) as e:
        raise ToolkitError(f"{pack}: no held-out walking clip (keys clip_names, action, split, clip, poses_3d)") from e
    return data["poses_3d"][data["clip"] == clip][:frames].astype(np.float64)


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" with uncommitted changes" if dirty else "")


def main() -> None:
    parser = Parser(description=__doc__)
    parser.add_argument("--ckpt-dir", required=True, help="the trained run (its final checkpoint.pth is shipped)")
    parser.add_argument("--out", required=True, help="folder for checkpoint.pth and card.json")
    parser.add_argument("--metrics", type=metric, nargs="*", default=[], help="NAME=PATH of eval --json files")
    parser.add_argument("--command", required=True, help="the training command, recorded in the card")
    parser.add_argument("--cmu-pack", help="the CMU pack npz: also lift its first held-out walking clip (60 frames) "
                        "from a tilted camera and record the errors, the world frame's and the BVH round trip's")
    parser.add_argument("--overwrite", action="store_true", help="replace a shipped prior in --out")
    args = parser.parse_args()
    path = checkpoint_path(args.ckpt_dir, best=False)
    if not args.command.strip():
        raise ToolkitError("--command is empty; give the training command that made the run")
    out = Path(args.out)
    refuse_existing([out / "checkpoint.pth", out / "card.json"], args.overwrite)
    card = {"data": DATA, "licence": LICENCE, "command": args.command, "commit": _commit(),
            "checkpoint": "the run's final checkpoint.pth (not selected on any rows), EMA weights"}
    clip = held_out_walk(Path(args.cmu_pack)) if args.cmu_pack else None
    for written in ship(path, out, card, dict(args.metrics), clip):
        print(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    guarded(main)
