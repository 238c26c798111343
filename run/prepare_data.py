"""Make datasets in the H36M-Toolbox pickle layout (docs/design.md, 'Data and coordinate frames') from the forms
people have.

    python -m run.prepare_data synthetic --out data/synthetic
    python -m run.prepare_data h36m-h5 --root path/to/h36m --out data/h36m          # 3d-pose-baseline layout
    python -m run.prepare_data videopose3d --npz data_3d_h36m.npz \\
        --det data_2d_h36m_cpn_ft_h36m_dbb.npz --out data/h36m                       # VideoPose3D layout
    python -m run.prepare_data cmu --pack ../shared/data/cmu_h36m17.npz --bvh ../shared/data/bvh --out data/cmu
    python -m run.prepare_data detector-errors --gt data/h36m/h36m_train.pkl --det data/h36m/h36m_sh_dt_ft.pkl \\
        --out my_detector.json                          # how a detector errs, from labelled rows (lib/detnoise.py)
    python -m run.prepare_data detections --table my_detector.json --train data/cmu/cmu_train.pkl \\
        --test data/cmu/cmu_test.pkl --out data/cmu/cmu_sim_dt.pkl     # simulated detections, row-aligned

Human3.6M sources keep subjects 1,5,6,7,8 for training and 9,11 for testing unless told otherwise.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from lib.convert import SH_FILE, Collector, convert_cmu, convert_h36m_h5, convert_videopose3d
from lib.data import (
    TEST_SUBJECTS,
    TRAIN_SUBJECTS,
    PoseData,
    attach_detections,
    detector_kinds,
    parse_subjects,
    rows_to_posedata,
    sequence_ids,
)
from lib.detnoise import DetectorNoise, SequenceFailures, fit_table, load_table, simulate
from lib.errors import ToolkitError
from lib.io import check_writable, refuse_existing, write_json
from lib.keypoints import USED
from lib.safe_pickle import load_pickle, save_pickle
from lib.synthetic import coco_example, generate
from run.common import Parser, guarded, number


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(description=__doc__)
    sub = parser.add_subparsers(dest="source", required=True)
    syn = sub.add_parser("synthetic", help="the embedded synthetic dataset (no download)")
    syn.add_argument("--train-frames", type=number("--train-frames", int, 1, 10000), default=32,
                     help="frames per subject, action and subaction")
    syn.add_argument("--test-frames", type=number("--test-frames", int, 1, 10000), default=16)
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
    cmu.add_argument("--bvh-step", type=number("--bvh-step", int, 1), default=4,
                     help="keep every k-th BVH frame (120 Hz -> 30 Hz)")
    err = sub.add_parser("detector-errors", help="fit a detector error table from ground truth and its detections")
    err.add_argument("--gt", required=True, help="a pickle in the H36M-Toolbox layout (e.g. the training split)")
    err.add_argument("--det", required=True, help="its detections, row-aligned ({'train' | 'test': {...}})")
    err.add_argument("--split", default="train", choices=("train", "test"), help="which part of --det (train)")
    err.add_argument("--what", default="", help="a line describing the detector and the data")
    sim = sub.add_parser("detections", help="simulate a detector's 2D on pose data, from its error table")
    sim.add_argument("--table", required=True, help="a detector error table (JSON)")
    sim.add_argument("--train", required=True, help="the training pickle")
    sim.add_argument("--test", required=True, help="the test pickle")
    sim.add_argument("--tail", type=number("--tail", float, 1.0), default=1.0,
                     help="times the table's outliers (> 1: a heavier tail)")
    sim.add_argument("--format", default="sh", help="the detector's joints: those it does not give get confidence 0")
    fail = SequenceFailures()  # the defaults: no sequence fails
    sim.add_argument("--offset-share", type=number("--offset-share", float, 0.0, 1.0), default=fail.offset_share,
                     help="share of the sequences offset in time by 1 to --max-offset frames (whole-sequence failure)")
    sim.add_argument("--max-offset", type=number("--max-offset", int, 1), default=fail.max_offset,
                     help="largest time offset, frames")
    sim.add_argument("--run-share", type=number("--run-share", float, 0.0, 1.0), default=fail.run_share,
                     help="about this share of the frames lies in runs of heavy error")
    sim.add_argument("--run-length", type=number("--run-length", int, 1), default=fail.run_length,
                     help="frames per run")
    sim.add_argument("--run-scale", type=number("--run-scale", float, 1.0), default=fail.run_scale,
                     help="how many times larger the errors in a run are")
    for p in (syn, ex, h5, vp, cmu):
        p.add_argument("--out", help="output folder (default: data/<source>)")
    for p in (err, sim):
        p.add_argument("--out", required=True, help="output file (.json table / .pkl detections)")
    for p in (syn, ex, h5, vp, cmu, err, sim):
        p.add_argument("--seed", type=number("--seed", int, 0, 2 ** 32 - 1), default=0)
        p.add_argument("--overwrite", action="store_true", help="replace data files already at --out")
    for p in (h5, vp, cmu):
        p.add_argument("--train-subjects", default=",".join(map(str, TRAIN_SUBJECTS)) if p is not cmu else "")
        p.add_argument("--test-subjects", default=",".join(map(str, TEST_SUBJECTS)) if p is not cmu else "",
                       help="subjects for the test split (CMU: BVH subjects, e.g. 131; the pack keeps its split)")
        p.add_argument("--train-every", type=number("--train-every", int, 1), default=1,
                       help="keep every k-th frame of training sequences")
        p.add_argument("--test-every", type=number("--test-every", int, 1), default=1,
                       help="keep every k-th frame of test sequences")
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


def _convert(args: argparse.Namespace, out: Path) -> None:
    """h36m-h5, videopose3d, cmu: the H36M-Toolbox pickles (and detections) into out."""
    train_subjects, test_subjects = parse_subjects(args.train_subjects), parse_subjects(args.test_subjects)
    if set(train_subjects) & set(test_subjects):
        raise ToolkitError(f"subjects {sorted(set(train_subjects) & set(test_subjects))} are in both splits")
    col = Collector(train_subjects, test_subjects, args.train_every, args.test_every)
    det_name, prefix, extra = None, "h36m", ""
    if args.source == "h36m-h5":
        if convert_h36m_h5(args.root, col):
            det_name = SH_FILE  # data.det_file's default, with data.det_format sh
        else:
            extra = " --config.data.use_gt_2d=true (no S*/StackedHourglass* detections in this source)"
    elif args.source == "videopose3d":
        convert_videopose3d(args.npz, col, args.det)
        if args.det:
            det_name = f"h36m_{Path(args.det).stem.removeprefix('data_2d_h36m_')}_dt.pkl"
            extra = f" --config.data.det_file={det_name} --config.data.det_format=h36m"
        else:
            extra = " --config.data.use_gt_2d=true (no --det given)"
    else:
        if not args.bvh and not args.pack:
            raise ToolkitError("cmu needs --bvh FILES/FOLDERS and/or --pack cmu_h36m17.npz")
        convert_cmu(col, _bvh_files(args.bvh), Path(args.pack) if args.pack else None, args.seed, args.bvh_step,
                    test_subjects)
        prefix = "cmu"
        extra = " (or use configs/subvp/cmu_budget.py)"
    files = col.write(out, prefix, det_name, args.overwrite)
    print(col.summary())
    print(f"wrote {', '.join(str(f) for f in files.values())}")
    print(f"train on it with: --config.data.root={out} --config.data.train_file={files['train'].name} "
          f"--config.data.test_file={files['test'].name}{extra}")


def _rows_2d(path: str) -> tuple[np.ndarray, PoseData]:
    data = rows_to_posedata(load_pickle(path), Path(path))
    return data.pose_img[..., :2], data


def _detector_errors(args: argparse.Namespace, out: Path) -> None:
    """Fit a detector error table (lib/detnoise.py) from ground truth and row-aligned detections."""
    refuse_existing([out], args.overwrite)
    gt, data = _rows_2d(args.gt)
    det = attach_detections(data, load_pickle(args.det), args.split, Path(args.det), detector_kinds("h36m"))
    table = fit_table(gt, det.det2d, det.det_conf, args.what or f"{args.det} ({args.split}) against {args.gt}")
    check_writable(out, "--out")
    write_json(out, table)
    print(f"wrote {out}: {table['rows']} rows, mean error {table['mean_error_px']:.1f} px, median "
          f"{table['median_error_px']:.1f} px; train with it: --config.detnoise.table={out}")


def _detections(args: argparse.Namespace, out: Path) -> None:
    """Simulated detections of a detector (its error table) on the train and test pickles, row-aligned."""
    refuse_existing([out], args.overwrite)
    noise = DetectorNoise.from_table(load_table(args.table), args.tail)
    unused = np.array([k not in USED for k in detector_kinds(args.format)])
    failures = SequenceFailures(args.offset_share, args.max_offset, args.run_share, args.run_length, args.run_scale)
    det = {}
    for k, (split, path) in enumerate((("train", args.train), ("test", args.test))):
        gt, data = _rows_2d(path)
        xy, conf = simulate(gt, noise, args.seed * 2 + k, unused, failures, sequence_ids(data))
        det[split] = {"joint3d_image": np.concatenate([xy, np.zeros(xy.shape[:2] + (1,))], -1),
                      "confidence": conf[..., None]}
        err = np.linalg.norm(xy - gt, axis=-1)[:, ~unused]
        print(f"{split}: {len(gt)} rows, 2D error mean {err.mean():.1f} px, median {np.median(err):.1f} px")
    check_writable(out, "--out")
    save_pickle(det, out)
    print(f"wrote {out}; evaluate on it with --config.data.det_file={out.name} --config.data.det_format="
          f"{args.format} (and the data's --config.data.root)")


def main() -> None:
    args = build_parser().parse_args()
    start = time.monotonic()
    out = Path(args.out or f"data/{args.source.split('-')[0]}")
    if args.source == "example":
        path = coco_example(out, args.seed, overwrite=args.overwrite)
        print(f"wrote {path}: COCO keypoint results of a 48-frame video (1920 x 1080, 25 fps, two tracked people); "
              f"lift them with python -m run.lift {path} --format coco --image-size 1920 1080 --fps 25 --export "
              f"bvh,csv --world --out OUT")
    elif args.source == "synthetic":
        counts = generate(out, args.seed, args.train_frames, args.test_frames, args.overwrite)
        print(f"wrote {out}: {counts['train']} train rows, {counts['test']} test rows "
              f"(subjects 1,5,6,7,8 / 9,11; 15 actions; 4 cameras)")
    elif args.source == "detector-errors":
        _detector_errors(args, out)
    elif args.source == "detections":
        _detections(args, out)
    else:
        _convert(args, out)
    print(f"done in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    guarded(main)
