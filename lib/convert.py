"""Converters from the forms people have (3d-pose-baseline h5, VideoPose3D npz, CMU BVH / npz) to the
H36M-Toolbox pickle layout (docs/design.md, 'Data and coordinate frames'), so that training and evaluation run
unchanged.

Every converter yields world-frame poses in millimetres per (subject, action, subaction) and a camera for
each view; `camera_rows` turns them into rows, and `Collector` writes the pickles atomically.
"""
from __future__ import annotations

import functools
import io
import json
import re
import zipfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prettytable import PrettyTable
from tqdm import tqdm

from lib.bvh import bvh_positions, parse_bvh
from lib.camera import Camera, look_at, quaternion_matrix
from lib.data import ACTIONS, camera_rows
from lib.errors import ToolkitError
from lib.io import load_npz, not_found, refuse_existing, staging
from lib.safe_pickle import loads_restricted, save_pickle

H36M_17_OF_32 = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]
ACTION_IDS = {name: a for a, name in ACTIONS.items()} | {"TakingPhoto": 12, "WalkingDog": 15}
CAMERAS_JSON = Path(__file__).parent / "resources" / "h36m_cameras.json"


def action_of(name: str, where: str) -> tuple[int, str]:
    """'Walking 1' -> (14, 'Walking'); 'TakingPhoto' -> (12, 'Photo'). Unknown names are an error."""
    base = re.sub(r"[\s_]*\d+$", "", name.strip())
    if base not in ACTION_IDS:
        raise ToolkitError(f"{where}: unknown Human3.6M action '{name}'; expected one of "
                           f"{', '.join(ACTIONS.values())} (optionally followed by a number)")
    a = ACTION_IDS[base]
    return a, ACTIONS[a]


def subactions(names: Iterable[str], where: str) -> dict[str, tuple[int, int]]:
    """Action and subaction per file name: per action, names in sorted order ('Walking' < 'Walking 1') are 1, 2."""
    by_action: dict[int, list[str]] = {}
    for name in names:
        by_action.setdefault(action_of(name, where)[0], []).append(name)
    return {name: (a, i + 1) for a, group in by_action.items() for i, name in enumerate(sorted(group))}


def subject_id(name: str, where: str) -> int:
    m = re.fullmatch(r"S(\d+)", name)
    if not m:
        raise ToolkitError(f"{where}: subject '{name}' should look like S1, S9, S11")
    return int(m.group(1))


@dataclass
class Split:
    rows: list[dict] = field(default_factory=list)
    det: list[np.ndarray] = field(default_factory=list)    # [n, 17, 2] per add()
    conf: list[np.ndarray] = field(default_factory=list)   # [n, 17]


class Collector:
    """Rows per split (with optional detections aligned row by row); writes everything at the end.

    Files are written into a hidden temporary folder and moved into place only when all are complete.
    """

    def __init__(self, train_subjects: Iterable[int], test_subjects: Iterable[int], train_every: int = 1,
                 test_every: int = 1):
        if train_every < 1 or test_every < 1:
            raise ToolkitError("--train-every and --test-every must be >= 1")
        self.subjects = {"train": set(train_subjects), "test": set(test_subjects)}
        self.every = {"train": train_every, "test": test_every}
        self.splits = {"train": Split(), "test": Split()}
        self.notes: list[str] = []

    def split_of(self, subject: int) -> str | None:
        return next((s for s, subs in self.subjects.items() if subject in subs), None)

    def add(self, world: np.ndarray, cameras: list[Camera], meta: dict, split: str | None = None,
            det: list[np.ndarray] | None = None, conf: list[np.ndarray] | None = None,
            camera_ids: list[int] | None = None) -> None:
        """Poses world [N, 17, 3] of one sequence, seen by each camera (cameraid = its index, or camera_ids).

        det / conf: per camera [N, 17, 2] pixels / [N, 17] detections aligned with world.
        """
        split = split or self.split_of(meta["subject"])
        if split is None:
            return
        if not np.isfinite(world).all():
            raise ToolkitError(f"{meta.get('source', 'input')}: poses contain NaN/inf")
        keep = np.arange(0, world.shape[0], self.every[split])
        out = self.splits[split]
        for c, cam in enumerate(cameras):
            cid = c if camera_ids is None else camera_ids[c]
            out.rows += camera_rows(world[keep], cam, {**meta, "cameraid": cid}, keep)
            if det is not None:
                out.det.append(det[c][keep])
                out.conf.append(conf[c][keep])

    def write(self, out: str | Path, prefix: str, det_name: str | None = None, overwrite: bool = False
              ) -> dict[str, Path]:
        """Write {prefix}_train.pkl, {prefix}_test.pkl and, with detections, det_name; all or nothing. Files
        already in `out` are refused unless `overwrite`."""
        out = Path(out)
        for split, data in self.splits.items():
            if not data.rows:
                raise ToolkitError(f"no {split} rows were made: check the subject split "
                                   f"({sorted(self.subjects[split])}) against the input")
        files = {s: f"{prefix}_{s}.pkl" for s in self.splits} | ({"detections": det_name} if det_name else {})
        refuse_existing([out / f for f in files.values()], overwrite)
        if det_name is not None and any(sum(map(len, d.det)) != len(d.rows) for d in self.splits.values()):
            raise ToolkitError("2D detections are missing for some sequences; give them for all or none")
        with staging(out) as tmp:
            for split, data in self.splits.items():
                save_pickle(data.rows, tmp / files[split])
            if det_name is not None:
                det = {s: {"joint3d_image": np.concatenate([np.concatenate(d.det), np.zeros((len(d.rows), 17, 1))],
                                                           -1),
                           "confidence": np.concatenate(d.conf)[..., None]} for s, d in self.splits.items()}
                save_pickle(det, tmp / det_name)
        return {k: out / v for k, v in files.items()}

    def summary(self) -> str:
        """Rows per split, subject and action."""
        table = PrettyTable(["split", "subject", "action", "rows"])
        table.align = "l"
        for split, data in self.splits.items():
            counts = Counter((r["subject"], r["action_name"]) for r in data.rows)
            for (subject, action), n in sorted(counts.items()):
                table.add_row([split, subject, action, n])
            table.add_row([split, "all", "all", len(data.rows)], divider=True)
        return table.get_string() + "".join(f"\nnote: {n}" for n in self.notes)


# ---------------------------------------------------------------------------------------------------
# Human3.6M, 3d-pose-baseline layout: cameras.h5 + S*/MyPoses/3D_positions/*.h5


def _h5():
    try:
        import h5py
    except ImportError as e:  # h5py is in requirements.txt; say so if someone trimmed it
        raise ToolkitError("the h36m-h5 source needs h5py: pip install h5py") from e
    return h5py


def _h5_text(raw: np.ndarray) -> str:
    """A name stored as character codes (real cameras.h5: float64 [8, 1]), bytes or a string."""
    if raw.dtype.kind in "iuf":
        return "".join(map(chr, raw.ravel().astype(int)))
    return raw.item().decode() if raw.dtype.kind == "S" else str(raw.item())


def read_h5_cameras(path: Path, subject: int) -> list[Camera]:
    """Cameras 1..4 of a subject from cameras.h5 (stored R is the transpose of world-to-camera; f, c [2, 1],
    T, k [3, 1], p [2, 1], Name as character codes)."""
    h5py = _h5()
    if not path.is_file():
        raise ToolkitError(f"cameras file {path} not found; the 3d-pose-baseline layout has cameras.h5 next to "
                           f"the S1, S5, ... folders")
    cams = []
    try:
        with h5py.File(path, "r") as f:
            for k in range(1, 5):
                g = f[f"subject{subject}/camera{k}"]
                fl, c = np.asarray(g["f"], dtype=np.float64).ravel(), np.asarray(g["c"], dtype=np.float64).ravel()
                cams.append(Camera(rot=np.asarray(g["R"], dtype=np.float64).reshape(3, 3).T,
                                   centre=np.asarray(g["T"], dtype=np.float64).ravel(),
                                   intrinsics=np.array([fl[0], fl[1], c[0], c[1]], dtype=np.float64),
                                   k=np.asarray(g["k"], dtype=np.float64).ravel(),
                                   p=np.asarray(g["p"], dtype=np.float64).ravel(),
                                   name=_h5_text(np.asarray(g["Name"][()])) if "Name" in g else str(k)))
    except (OSError, KeyError, ValueError, IndexError) as e:
        raise ToolkitError(f"{path}: expected groups subject{subject}/camera1..4/{{R,T,f,c,k,p}} ({e})") from e
    return cams


# Stacked Hourglass detections of the 3d-pose-baseline layout: S*/StackedHourglass/<Action>[_k].<camera id>.h5,
# key 'poses' [N, 16, 2] in the order RFoot RKnee RHip LHip LKnee LFoot Hip Spine Thorax Head RWrist RElbow
# RShoulder LShoulder LElbow LWrist; camera ids of cameras 1..4.
SH_CAMERAS = ("54138969", "55011271", "58860488", "60457274")
SH16_TO_H36M16 = (6, 2, 1, 0, 3, 4, 5, 7, 8, 9, 13, 14, 15, 12, 11, 10)  # SH index of H36M joints 0..16 but 9


def insert_neck(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """16-joint detections in Human3.6M order without the neck/nose (joint 9) -> 17 joints [N, 17, 2] and
    confidences [N, 17]: joint 9 is placed halfway between thorax and head top, with confidence 0."""
    out = np.insert(d, 9, 0.5 * (d[:, 8] + d[:, 9]), axis=1)  # d[:, 9] is the head top before insertion
    conf = np.ones(out.shape[:2])
    conf[:, 9] = 0.0
    return out, conf


SH_FOLDERS = ("StackedHourglassFineTuned240", "StackedHourglass")  # 3d-pose-baseline's releases, fine-tuned first
SH_FILE = "h36m_sh_dt_ft.pkl"  # the one name of Human3.6M's detections (the paper's, data.det_file's default)


def read_sh_detections(folder: Path, name: str, n: int, where: str, notes: list[str]
                       ) -> list[np.ndarray | None]:
    """Per camera, the detections [n, 17, 2] of sequence `name` (None where the file is missing)."""
    h5py = _h5()
    out = []
    for cam_id in SH_CAMERAS:
        path = folder / f"{name.replace(' ', '_')}.{cam_id}.h5"
        if not path.is_file():
            out.append(None)
            notes.append(f"{where}: no Stacked Hourglass file for camera {cam_id}; its rows are kept with confidence "
                         f"0 (left out of evaluations on detections, kept in those on ground-truth 2D)")
            continue
        try:
            with h5py.File(path, "r") as h:
                poses = np.asarray(h["poses"], dtype=np.float64)
        except (OSError, KeyError, ValueError) as e:
            raise ToolkitError(f"{path}: cannot read dataset 'poses' ({e})") from e
        if poses.ndim != 3 or poses.shape[1:] != (16, 2):
            raise ToolkitError(f"{path}: 'poses' has shape {poses.shape}, expected (N, 16, 2) Stacked Hourglass joints")
        if len(poses) != n:
            notes.append(f"{where} camera {cam_id}: {len(poses)} detected frames for {n} 3D frames; the shorter kept")
        out.append(insert_neck(poses[:, SH16_TO_H36M16])[0])
    return out


def _sh_folder(folders: list[Path], notes: list[str]) -> str | None:
    """The Stacked Hourglass release the source holds: the fine-tuned one if there, else the other, else None."""
    for name in SH_FOLDERS:
        if any((f.parents[1] / name).is_dir() for f in folders):
            notes.append(f"2D detections: S*/{name} ({'fine-tuned on' if 'FineTuned' in name else 'not tuned to'} "
                         f"Human3.6M) written as {SH_FILE}")
            return name
    return None


def convert_h36m_h5(root: str | Path, col: Collector) -> bool:
    """Read root/cameras.h5, root/S*/MyPoses/3D_positions/*.h5 (key 3D_positions, [96, N], world mm) and, where
    the folder exists, the Stacked Hourglass detections root/S*/StackedHourglass*/*.h5 (row-aligned). A camera
    without detections keeps its rows, with confidence 0. Returns whether detections were found."""
    h5py = _h5()
    root = Path(root)
    folders = sorted(p for p in root.glob("S*/MyPoses/3D_positions") if p.is_dir())
    if not folders:
        raise ToolkitError(f"{root} is not in the 3d-pose-baseline layout: expected {root}/cameras.h5 and "
                           f"{root}/S1/MyPoses/3D_positions/*.h5")
    sh = _sh_folder(folders, col.notes)
    for folder in folders:
        subject = subject_id(folder.parents[1].name, str(folder))
        if col.split_of(subject) is None:
            continue
        cams = read_h5_cameras(root / "cameras.h5", subject)
        files = sorted(folder.glob("*.h5"))
        ids = subactions([f.stem for f in files], str(folder))
        for f in tqdm(files, desc=f"S{subject}", leave=False, disable=None):
            try:
                with h5py.File(f, "r") as h:
                    pos = np.asarray(h["3D_positions"], dtype=np.float64)
            except (OSError, KeyError, ValueError) as e:
                raise ToolkitError(f"{f}: cannot read dataset '3D_positions' ({e})") from e
            if pos.ndim != 2 or pos.shape[0] != 96:
                raise ToolkitError(f"{f}: '3D_positions' has shape {pos.shape}, expected (96, frames) "
                                   f"for 32 joints x 3")
            world = pos.T.reshape(-1, 32, 3)[:, H36M_17_OF_32]
            a, sa = ids[f.stem]
            meta = {"subject": subject, "action": a, "subaction": sa, "source": str(f)}
            if sh is None:
                col.add(world, cams, meta)
                continue
            det = read_sh_detections(folder.parents[1] / sh, f.stem, len(world), f"S{subject}/{f.stem}", col.notes)
            n = min([len(world)] + [len(d) for d in det if d is not None])
            conf = insert_neck(np.zeros((n, 16, 2)))[1]  # 1, and 0 for the interpolated neck/nose
            col.add(world[:n], cams, meta, det=[np.zeros((n, 17, 2)) if d is None else d[:n] for d in det],
                    conf=[np.zeros((n, 17)) if d is None else conf for d in det])
    return sh is not None


# ---------------------------------------------------------------------------------------------------
# Human3.6M, VideoPose3D layout: data_3d_h36m.npz (+ data_2d_h36m_<name>.npz), published cameras


@functools.cache
def _camera_spec() -> dict:
    """The published calibration (lib/resources/h36m_cameras.json, source named inside), read once."""
    return json.loads(CAMERAS_JSON.read_text())


def h36m_cameras(subject: int) -> list[Camera]:
    """The four calibrated cameras of a Human3.6M subject."""
    spec = _camera_spec()
    ext = spec["extrinsics"].get(f"S{subject}")
    if ext is None:
        raise ToolkitError(f"no published camera calibration for subject S{subject}; "
                           f"known: {', '.join(spec['extrinsics'])}")
    return [Camera(rot=quaternion_matrix(e["orientation"]).T, centre=np.array(e["translation"], dtype=np.float64),
                   intrinsics=np.array(i["focal_length"] + i["center"], dtype=np.float64),
                   k=np.array(i["radial_distortion"]), p=np.array(i["tangential_distortion"]), name=i["id"])
            for i, e in zip(spec["intrinsics"], ext, strict=True)]


def load_npz_object(path: Path, key: str) -> object:
    """A pickled object array from an npz (VideoPose3D's dict of dicts), read with the restricted unpickler."""
    if not path.is_file():
        raise ToolkitError(not_found(path))
    try:
        with zipfile.ZipFile(path) as z:
            raw = z.read(f"{key}.npy")
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise ToolkitError(f"{path}: not an npz with a '{key}' entry ({e})") from e
    buf = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buf)
        header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)
        _, _, dtype = header(buf)
    except ValueError as e:
        raise ToolkitError(f"{path}: corrupt '{key}' entry ({e})") from e
    if dtype != np.dtype(object):
        raise ToolkitError(f"{path}: '{key}' is not a pickled dict (dtype {dtype})")
    obj = loads_restricted(buf.read(), f"{path}:{key}")
    return obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj


def convert_videopose3d(path_3d: str | Path, col: Collector, path_2d: str | Path | None = None) -> None:
    """positions_3d[subject][action] (N, 32, 3) world metres; optional positions_2d[subject][action][cam]."""
    path_3d = Path(path_3d)
    pos3d = load_npz_object(path_3d, "positions_3d")
    if not isinstance(pos3d, dict):
        raise ToolkitError(f"{path_3d}: positions_3d should be a dict subject -> action -> array")
    pos2d = None
    if path_2d is not None:
        pos2d = load_npz_object(Path(path_2d), "positions_2d")
        if not isinstance(pos2d, dict):
            raise ToolkitError(f"{path_2d}: positions_2d should be a dict subject -> action -> [4 arrays]")
    for subj_name, actions in sorted(pos3d.items()):
        subject = subject_id(subj_name, str(path_3d))
        if col.split_of(subject) is None:
            continue
        cams = h36m_cameras(subject)
        ids = subactions(actions, f"{path_3d} {subj_name}")
        for name, arr in tqdm(sorted(actions.items()), desc=subj_name, leave=False, disable=None):
            world = np.asarray(arr, dtype=np.float64)
            if world.ndim != 3 or world.shape[1:] not in ((32, 3), (17, 3)):
                raise ToolkitError(f"{path_3d} {subj_name}/{name}: shape {world.shape}, expected (N, 32, 3) or "
                                   f"(N, 17, 3)")
            world = (world[:, H36M_17_OF_32] if world.shape[1] == 32 else world) * 1000.0  # metres -> mm
            det = conf = None
            if pos2d is not None:
                try:
                    views = pos2d[subj_name][name]
                except KeyError as e:
                    raise ToolkitError(f"{path_2d}: no 2D detections for {subj_name}/{name}") from e
                det, conf = [], []
                n = min([world.shape[0]] + [len(v) for v in views])
                if n != world.shape[0] or any(len(v) != n for v in views):
                    col.notes.append(f"{subj_name}/{name}: 3D has {world.shape[0]} frames, 2D has "
                                     f"{[len(v) for v in views]}; truncated to {n}")
                world = world[:n]
                for v in views:
                    v = np.asarray(v, dtype=np.float64)[:n, :, :2]
                    if v.shape[1] == 16:
                        v, c = insert_neck(v)
                    elif v.shape[1] == 17:
                        c = np.ones(v.shape[:2])
                    else:
                        raise ToolkitError(f"{path_2d} {subj_name}/{name}: {v.shape[1]} joints; expected 17 "
                                           f"(Human3.6M order, e.g. CPN) or 16 (Stacked Hourglass, no nose)")
                    det.append(v)
                    conf.append(c)
            a, sa = ids[name]
            col.add(world, cams, {"subject": subject, "action": a, "subaction": sa, "source": f"{subj_name}/{name}"},
                    det=det, conf=conf)


# ---------------------------------------------------------------------------------------------------
# Pose-only data (CMU mocap): BVH files or the converted npz pack, seen by virtual cameras


def virtual_cameras(world: np.ndarray, rng: np.random.Generator, n: int = 4) -> list[Camera]:
    """Human3.6M-like views of one sequence: cameras spread in azimuth around its mean pelvis position,
    4-5.5 m away, 1.2-1.8 m above the lowest ankle, looking at the pelvis, with Human3.6M intrinsics."""
    spec = _camera_spec()["intrinsics"]
    target = world[:, 0].mean(0)
    floor = world[:, [3, 6], 2].min()
    start = rng.uniform(0, 2 * np.pi)
    cams = []
    for c in range(n):
        azim = start + 2 * np.pi * c / n + rng.uniform(-0.35, 0.35)
        dist = rng.uniform(4000.0, 5500.0)
        centre = target + np.array([dist * np.cos(azim), dist * np.sin(azim), 0.0])
        centre[2] = floor + rng.uniform(1200.0, 1800.0)
        intr = spec[c % len(spec)]
        cams.append(Camera(rot=look_at(centre, target), centre=centre,
                           intrinsics=np.array(intr["focal_length"] + intr["center"]), name=f"virtual{c + 1}"))
    return cams


CMU_BVH_TO_H36M = {  # Human3.6M joint -> CMU BVH joint (its origin); pelvis is the hip-joint midpoint
    1: "RightHip", 2: "RightKnee", 3: "RightAnkle", 4: "LeftHip", 5: "LeftKnee", 6: "LeftAnkle",
    7: "Chest", 8: "Chest2", 9: "Head", 10: "Head/End", 11: "LeftShoulder", 12: "LeftElbow", 13: "LeftWrist",
    14: "RightShoulder", 15: "RightElbow", 16: "RightWrist",
}
CMU_UNIT_MM = 25.4 / 0.45  # CMU mocap FAQ: one unit is 1/0.45 inch


def bvh_to_h36m(path: str | Path, step: int = 1) -> np.ndarray:
    """CMU BVH -> Human3.6M 17 joints [F, 17, 3], millimetres, Z up (the BVH is y-up, CMU units)."""
    bvh = parse_bvh(path)
    missing = [n for n in CMU_BVH_TO_H36M.values() if n not in bvh.names]
    if missing:
        raise ToolkitError(f"{path}: BVH lacks joint(s) {', '.join(missing)}; the CMU converter expects the CMU "
                           f"skeleton names ({', '.join(CMU_BVH_TO_H36M.values())})")
    pos = bvh_positions(bvh)[::step]
    out = np.zeros((pos.shape[0], 17, 3))
    for h, name in CMU_BVH_TO_H36M.items():
        out[:, h] = pos[:, bvh.names.index(name)]
    out[:, 0] = 0.5 * (out[:, 1] + out[:, 4])
    out = out * CMU_UNIT_MM
    return np.stack([out[..., 0], -out[..., 2], out[..., 1]], -1)  # y-up -> Z-up: +90 degrees about X


def convert_cmu(col: Collector, bvh_files: list[Path], pack: Path | None, seed: int, bvh_step: int = 4,
                test_subjects: Iterable[int] = ()) -> None:
    """BVH files (subject from the name, e.g. 131_03 -> subject 131, trial 3) and/or the converted CMU pack
    (its own train/test split), each sequence seen by four virtual cameras."""
    actions: dict[str, int] = {}

    def action_id(name: str) -> int:
        return actions.setdefault(name, len(actions) + 1)

    rng = np.random.default_rng(seed)
    test_subjects = set(test_subjects)
    for f in tqdm(bvh_files, desc="BVH", leave=False, disable=None):
        m = re.match(r"(\d+)_(\d+)", f.stem)
        subject, trial = (int(m.group(1)), int(m.group(2))) if m else (0, 1)
        if not m:
            col.notes.append(f"{f.name}: no subject and trial in the name (CMU's SUBJECT_TRIAL.bvh); taken as subject "
                             f"0, trial 1, in the {'test' if 0 in test_subjects else 'training'} split")
        world = bvh_to_h36m(f, bvh_step)
        col.add(world, virtual_cameras(world, rng), {"subject": subject, "action": action_id(f"cmu {f.stem}"),
                                                     "action_name": f"cmu {f.stem}", "subaction": trial,
                                                     "source": str(f)},
                split="test" if subject in test_subjects else "train")
    if pack is not None:
        data = _load_pack(pack)
        for c in tqdm(range(len(data["clip_names"])), desc="CMU pack", leave=False, disable=None):
            world = data["poses_3d"][data["clip"] == c].astype(np.float64)
            if len(world) == 0:
                continue
            name = str(data["action"][c])
            col.add(world, virtual_cameras(world, rng), {"subject": 0, "action": action_id(name), "action_name": name,
                                                         "subaction": c + 1, "source": str(data["clip_names"][c])},
                    split=str(data["split"][c]))


def _load_pack(path: Path) -> dict[str, np.ndarray]:
    need = ("poses_3d", "clip", "clip_names", "split", "action")
    data = load_npz(path, "the CMU pack npz")
    if set(need) - set(data):
        raise ToolkitError(f"{path}: expected the CMU pack npz with {', '.join(need)} (it lacks "
                           f"{', '.join(sorted(set(need) - set(data)))})")
    if data["poses_3d"].ndim != 3 or data["poses_3d"].shape[1:] != (17, 3):
        raise ToolkitError(f"{path}: poses_3d has shape {data['poses_3d'].shape}, expected (N, 17, 3)")
    return data
