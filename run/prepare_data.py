"""Make datasets in the H36M-Toolbox pickle layout (docs/design.md, 'Data and coordinate frames') from the forms
people have.

    python -m run.prepare_data synthetic --out data/synthetic
    python -m run.prepare_data h36m-h5 --root path/to/h36m --out data/h36m          # 3d-pose-baseline layout
    python -m run.prepare_data videopose3d --npz data_3d_h36m.npz \\
        --det data_2d_h36m_cpn_ft_h36m_dbb.npz --out data/h36m                       # VideoPose3D layout
    python -m run.prepare_data cmu --pack ../shared/data/cmu_h36m17.npz --bvh ../shared/data/bvh --out data/cmu

Human3.6M sources keep subjects 1,5,6,7,8 for training and 9,11 for testing unless told otherwise.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from lib.convert import Collector, convert_cmu, convert_h36m_h5, convert_videopose3d
from lib.data import TEST_SUBJECTS, TRAIN_SUBJECTS, parse_subjects
from lib.errors import ToolkitError
from lib.synthetic import coco_example, generate
from run.common import Parser, guarded


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(description=__doc__)
    sub = parser.add_subparsers(dest="source", required=True)
    syn = sub.add_parser("synthetic", help="the embedded synthetic dataset (no download)")
    syn.add_argument("--train-frames", type=int, default=32, help="frames per subject, action and subaction")
    syn.add_argument("--test-frames", type=int, default=16)
    ex = sub.add_parser("example", help="a COCO keypoint results file to try run.lift on (data/example)")
    h5 = sub.add_parser("h36m-h5", help="Human3.6M as cameras.h5 + S*/MyPoses/3D_positions/*.h5 "
                                        "(+ S*/StackedHourglass/*.h5 detections)")
    h5.add_argument("--root", required=True, help="folder holding cameras.h5 and S1, S5, ...")
    vp = sub.add_parser("videopose3d", help="Human3.6M as VideoPose3D's data_3d_h36m.npz (+ 2D detections)")
    vp.add_argument("--npz", required=True, help="data_3d_h36m.npz")
    vp.add_argument("--det", help="data_2d_h36m_<name>.npz with 17 (e.g. CPN) or 16 (Stacked Hourglass) joints")
    cmu = sub.add_parser("cmu", help="CMU motion capture (BVH files and/or the converted npz pack)")
    cmu.add_argument("--bvh", nargs="*", default=[], help="BVH files or folders of them")
    cmu.add_argument("--pack", help="cmu_h36m17.npz (its own train/test split)")
    cmu.add_argument("--bvh-step", type=int, default=4, help="keep every k-th BVH frame (120 Hz -> 30 Hz)")
    for p in (syn, ex, h5, vp, cmu):
        p.add_argument("--out", help="output folder (default: data/<source>)")
        p.add_argument("--seed", type=int, default=0)
    for p in (h5, vp, cmu):
        p.add_argument("--train-subjects", default=",".join(map(str, TRAIN_SUBJECTS)) if p is not cmu else "")
        p.add_argument("--test-subjects", default=",".join(map(str, TEST_SUBJECTS)) if p is not cmu else "",
                       help="subjects for the test split (CMU: BVH subjects, e.g. 131; the pack keeps its split)")
        p.add_argument("--train-every", type=int, default=1, help="keep every k-th frame of training sequences")
        p.add_argument("--test-every", type=int, default=1, help="keep every k-th frame of test sequences")
    return parser


def _bvh_files(items: list[str]) -> list[Path]:
    files = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(item.glob("*.bvh"))
            if not found:
                raise ToolkitError(f"{item} holds no .bvh files")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise ToolkitError(f"BVH path {item} not found")
    return files


def main() -> None:
    args = build_parser().parse_args()
    start = time.monotonic()
    out = Path(args.out or f"data/{args.source.split('-')[0]}")
    if args.source == "example":
        path = coco_example(out, args.seed)
        print(f"wrote {path}: COCO keypoint results of 8 images (1920 x 1080); lift them with python -m run.lift "
              f"{path} --format coco --image-size 1920 1080 --ckpt-dir checkpoint/demo --best --fast --out OUT")
        return
    if args.source == "synthetic":
        if args.train_frames < 1 or args.test_frames < 1:
            raise ToolkitError("--train-frames and --test-frames must be >= 1")
        counts = generate(out, args.seed, args.train_frames, args.test_frames)
        print(f"wrote {out}: {counts['train']} train rows, {counts['test']} test rows "
              f"(subjects 1,5,6,7,8 / 9,11; 15 actions; 4 cameras) in {time.monotonic() - start:.1f} s")
        return
    train_subjects, test_subjects = parse_subjects(args.train_subjects), parse_subjects(args.test_subjects)
    if set(train_subjects) & set(test_subjects):
        raise ToolkitError(f"subjects {sorted(set(train_subjects) & set(test_subjects))} are in both splits")
    col = Collector(train_subjects, test_subjects, args.train_every, args.test_every)
    det_name, prefix, extra = None, "h36m", ""
    if args.source == "h36m-h5":
        convert_h36m_h5(args.root, col)
        if any(split.det for split in col.splits.values()):  # S*/StackedHourglass was there
            det_name = "h36m_sh_dt.pkl"
            extra = f" --config.data.det_file={det_name}"
        else:
            extra = " --config.data.use_gt_2d=true (no S*/StackedHourglass detections in this source)"
    elif args.source == "videopose3d":
        convert_videopose3d(args.npz, col, args.det)
        if args.det:
            stem = Path(args.det).stem
            det_name = f"h36m_{stem.removeprefix('data_2d_h36m_')}_dt.pkl"
            extra = f" --config.data.det_file={det_name}"
        else:
            extra = " --config.data.use_gt_2d=true (no --det given)"
    else:
        if not args.bvh and not args.pack:
            raise ToolkitError("cmu needs --bvh FILES/FOLDERS and/or --pack cmu_h36m17.npz")
        if args.bvh_step < 1:
            raise ToolkitError("--bvh-step must be >= 1")
        convert_cmu(col, _bvh_files(args.bvh), Path(args.pack) if args.pack else None, args.seed, args.bvh_step,
                    test_subjects)
        prefix = "cmu"
        extra = " (or use configs/subvp/cmu_small.py)"
    files = col.write(out, prefix, det_name)
    print(col.summary())
    print(f"wrote {', '.join(str(f) for f in files.values())} in {time.monotonic() - start:.1f} s")
    print(f"train on it with: --config.data.root={out} --config.data.train_file={files['train'].name} "
          f"--config.data.test_file={files['test'].name}{extra}")


if __name__ == "__main__":
    guarded(main)
