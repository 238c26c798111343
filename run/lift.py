"""Lift keypoints of any 2D detector to 3D poses in camera millimetres, and draw them.

    python -m run.lift detections.json --format coco --ckpt-dir checkpoint/demo --best --image-size 1920 1080 \\
        --fast --out lifted                                       # COCO results JSON (MMPose, ViTPose, YOLO-pose)
    python -m run.lift openpose_json/ --format openpose --ckpt-dir DIR --image-size 1280 720 --smooth --out video
    python -m run.lift kps.npy --format h36m --ckpt-dir DIR --camera 1145 1144 512 515 --out lifted

    python -m run.lift video.json --format coco --image-size 1920 1080 --export bvh,csv --world --fps 30 --out out
                                                   # the shipped prior of real motion, BVH and CSV in a world frame

Writes OUT/poses.npz (pose3d [T, P, 17, 3] mm, completed, uncertainty, root_depth, keypoints2d, valid, track,
camera) and OUT/poses.json (OUT: --out, by default a folder beside the input named after it, INPUT_lifted), and
draws OUT/poses.png (or --draw gif / html / none). Without --ckpt-dir it uses the shipped prior of real motion
(lib/resources/cmu_prior). Without --camera the intrinsics come from the image size (f = max(W, H), centred
principal point); the root depth is estimated from bone lengths (README 'Lift your own keypoints' says what that
assumes). --world adds the poses in a gravity-aligned frame on the floor (lib/world.py), and --export writes
OUT/poses.csv and OUT/track_<id>.bvh per track in it (README 'Export and the world frame').
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lib.api import PosePrior
from lib.errors import ToolkitError
from lib.io import check_output, check_writable
from lib.keypoints import FORMATS, keypoints_from
from lib.lift import check_outputs
from lib.resolve import MODE_FLAGS
from lib.visualize import drawn_here, load_scene, render_html, render_images
from lib.world import check_clip
from run.common import Parser, config_flags, eval_setup, guarded, number, parse

FLAGS = config_flags("lift.hypotheses", "lift.smooth", "lift.min_conf", "seed", "robust.mode", "eval.detector_table")


def build_parser() -> Parser:
    parser = Parser(description=__doc__)
    parser.add_argument("input", help="keypoints: a COCO JSON, an OpenPose JSON file or folder, or an .npy")
    parser.add_argument("--format", required=True, choices=tuple(FORMATS), help="the input's keypoint layout")
    parser.add_argument("--config", help="config file (official checkpoints carry none)")
    parser.add_argument("--ckpt-dir", help="run folder with best_model.pth / checkpoint.pth (default: the shipped "
                        "prior of real motion, lib/resources/cmu_prior)")
    parser.add_argument("--best", action="store_true", help="use best_model.pth")
    parser.add_argument("--image-size", type=number("--image-size", float, 0, 1e5, low_open=True), nargs=2,
                        metavar=("W", "H"), help="image size in pixels")
    parser.add_argument("--camera", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"), help="known intrinsics")
    parser.add_argument("--fast", action="store_true", help=MODE_FLAGS["fast"])
    parser.add_argument("--out", help="output folder (default: beside the input, its name + _lifted)")
    parser.add_argument("--draw", choices=("png", "gif", "html", "none"), default="png", help="picture of the result")
    parser.add_argument("--world", action="store_true", help="also the poses in a gravity-aligned frame on the floor "
                        "(a video: the floor from the feet over the clip); exports use it")
    parser.add_argument("--export", type=exports, default=(), help="comma-separated: bvh (one file per track), csv")
    parser.add_argument("--fps", type=number("--fps", float, 0, 1000, low_open=True), default=30.0,
                        help="the input's frame rate, for BVH files (default 30)")
    for f in FLAGS:
        f.add_to(parser)
    return parser


EXPORTS = ("bvh", "csv")


def exports(text: str) -> tuple[str, ...]:
    """--export bvh,csv -> ('bvh', 'csv')."""
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    if not kinds or set(kinds) - set(EXPORTS):
        raise argparse.ArgumentTypeError(f"--export takes a comma-separated list of {', '.join(EXPORTS)}, got "
                                         f"{text!r}")
    return kinds


def main() -> None:
    args, raw = parse(build_parser())
    if args.fps != 30.0 and "bvh" not in args.export:
        print("warning: --fps has no effect without --export bvh", file=sys.stderr)
    if args.out is None:
        args.out = str(Path(args.input).with_name(Path(args.input).stem + "_lifted"))
    if Path(args.input).is_dir() and Path(args.out).resolve() == Path(args.input).resolve():
        raise ToolkitError(f"--out {args.out} is the input folder; the lift's files would land among its frames: "
                           f"choose another folder")
    out = check_writable(args.out, "--out", is_dir=True)
    kps = keypoints_from(args.input, args.format)
    args.gpus = None
    loaded, _, device = eval_setup(args, raw, FLAGS)
    prior = PosePrior(loaded.model, loaded.config, device, loaded.pose_stats, loaded.pose_bank, loaded.students)
    prior.progress = True
    if args.world:
        check_clip(kps.valid, loaded.config.lift.floor_min_frames)
    check_outputs(out, with_csv="csv" in args.export)
    if args.draw != "none":
        check_output(out / f"poses.{args.draw}", "--out", drawn_here)
    result = prior.lift(kps, args.format, tuple(args.image_size) if args.image_size else None, args.camera,
                        fast=args.fast, seed=loaded.config.seed)
    if args.world:
        result = result.with_world(loaded.config.lift)
    written = result.save_bvh(out, args.fps) if "bvh" in args.export else []  # first: it refuses tracks it cannot use
    written += result.save(out)
    if "csv" in args.export:
        written.append(result.save_csv(out / "poses.csv"))
    for path in written:
        print(f"wrote {path}")
    people = int(result.valid.sum())
    print(f"{people} people in {len(result.frames)} frames; camera {'given' if result.camera_given else 'default'} "
          f"{[round(float(v), 1) for v in result.camera]}; root depth {np.nanmedian(result.root_depth):.0f} mm "
          f"(median); checkpoint {loaded.checkpoint}")
    if result.world is not None:
        tilt = np.degrees(np.arccos(np.clip(-result.world.up[1], -1.0, 1.0)))
        print(f"world frame: up is {tilt:.1f} degrees from the image's up; {100 * result.world.standing:.0f} % of "
              f"the poses stand on the floor")
    for note in result.notes:
        print(f"note: {note}")
    if args.draw != "none":
        _draw(out, args.draw, len(result.frames))


def _draw(out: Path, kind: str, frames: int) -> None:
    if kind == "gif" and frames < 2:
        raise ToolkitError("--draw gif needs a sequence of frames; use --draw png")
    scene = load_scene(out / "poses.npz", None, 1, False)
    path = out / f"poses.{kind}"
    n = render_html(scene, path, 4) if kind == "html" else render_images(scene, path, 4)
    print(f"wrote {path} ({n} frame{'s' if n > 1 else ''})")


if __name__ == "__main__":
    guarded(main)
