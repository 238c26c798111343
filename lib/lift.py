"""From any 2D detector to 3D in camera millimetres (README 'Lift your own keypoints').

Pipeline:
 1. Keypoints of a format (lib/keypoints.py) in the 17 Human3.6M joints. Joints of a kind the network cannot use
    (another point, none), below `lift.min_conf`, or dropped are unseen: the prior completes them, the output flags
    them. People with fewer than `lift.min_joints` usable joints, or whose 2D is degenerate (all joints on one
    spot, or far larger than any image), are skipped with a note.
 2. Camera: the given intrinsics, else a default from the image size: f = max(W, H) (a 53 degree field of view
    across the long side), principal point at the centre.
 3. The view the network sees: each pixel's ray (u - c) / f seen through the training cameras' median intrinsics
    (the checkpoint carries them), the same camera centre and orientation. For a camera like the training data's
    the input is what `est` sees, so lifting and estimation give the same 3D (tests/test_lift.py). (Centring the
    root and scaling the 2D bones to their typical length instead was 14 mm worse on the demo data: README 'Lift
    your own keypoints'.)
 4. The prior lifts it exactly as est does (lib/tasks/observe.py, `lift.completion`): S hypotheses, one pose by
    `eval.reduce`, per-joint uncertainty.
 5. Root depth: given, or the depth at which the lifted skeleton's 3D bone lengths match the training set's mean.
    Absolute scale from one view is ambiguous: a person 10 % larger than the training average comes out 10 %
    farther away and 10 % larger (P2, which aligns scale, is unaffected).
 6. Video (`lift.smooth`, lib/video.py): a second pass from the neighbouring frames' poses, and the root depth
    averaged over `lift.smooth_window` frames of a track.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from lib.bvh import CAMERA_TO_BVH, WORLD_TO_BVH, write_bvh
from lib.camera import Frames, RowCameras, box_around_root, retarget, unproject
from lib.errors import ToolkitError
from lib.io import check_output, check_writable, json_with, npz_with, text_starting, write_json, write_npz, write_text
from lib.keypoints import NUM_JOINTS, Keypoints
from lib.robust import RobustSettings
from lib.skeleton import JOINT_NAMES, bone_lengths
from lib.video import smooth_depth, smooth_poses, tracks
from lib.world import WorldFrame, world_frame

# What a checkpoint carries for lifting when it carries nothing (official files): Human3.6M-like subjects and cameras
# (the embedded synthetic data's): mean 3D bone lengths (mm) and median 2D ones (px), in BONES order; the cameras'
# median intrinsics fx, fy, cx, cy.
DEFAULT_POSE_STATS = {
    "bone_mm": [132.3, 425.6, 449.8, 132.0, 426.2, 450.4, 230.5, 260.2, 118.3, 113.9, 152.2, 280.1, 248.1, 152.2,
                280.0, 248.3],
    "bone_px": [21.0, 90.2, 94.9, 20.9, 90.2, 95.0, 50.7, 57.6, 24.8, 25.6, 24.6, 59.5, 50.3, 24.6, 59.5, 50.2],
    "camera": [1147.3, 1146.2, 513.8, 504.7]}


def pose_stats(pose_cam: np.ndarray, pose_img: np.ndarray, cam: np.ndarray) -> dict[str, list[float]]:
    """What a checkpoint carries for lifting: the training skeleton's mean 3D bone lengths (mm) and median 2D ones
    (px), and the training cameras' median intrinsics (fx, fy, cx, cy)."""
    px = np.concatenate([pose_img[..., :2], np.zeros_like(pose_img[..., :1])], -1)
    return {"bone_mm": bone_lengths(torch.from_numpy(pose_cam)).mean(0).tolist(),
            "bone_px": bone_lengths(torch.from_numpy(px)).median(0).values.tolist(),
            "camera": np.median(cam, axis=0).tolist()}


def default_camera(image_size: tuple[float, float]) -> np.ndarray:
    """fx = fy = max(W, H), principal point at the image centre."""
    w, h = image_size
    if not (np.isfinite(w) and np.isfinite(h) and 0 < w <= 1e5 and 0 < h <= 1e5):
        raise ToolkitError(f"image size must be between 1 and 100000 px a side, got {w} x {h}")
    f = float(max(w, h))
    return np.array([f, f, w / 2.0, h / 2.0])


# The files a lift writes and how to tell them from files it must not replace (lib/io.check_output)
OUTPUTS = {"poses.npz": npz_with("pose3d", "valid"), "poses.json": json_with("camera", "frames"),
           "poses.csv": text_starting("frame,track,pelvis_x")}
BVH_OURS = text_starting("HIERARCHY\nROOT Hips")


def check_outputs(out: Path, with_csv: bool = True) -> None:
    """Before any work: OUT/poses.npz, poses.json (and poses.csv) can be written, and replace only a lift's own."""
    for name, ours in OUTPUTS.items():
        if name != "poses.csv" or with_csv:
            check_output(out / name, "--out", ours)


@dataclass
class LiftResult:
    """3D poses in camera millimetres, T frames x P people (NaN where nobody is)."""

    pose3d: np.ndarray          # [T, P, 17, 3] camera frame, mm
    completed: np.ndarray       # [T, P, 17] bool: joints the prior completed (no usable 2D)
    uncertainty: np.ndarray     # [T, P, 17] mm: spread of the hypotheses (0 with one hypothesis)
    root_depth: np.ndarray      # [T, P] mm, estimated from bone lengths (or given)
    keypoints2d: np.ndarray     # [T, P, 17, 2] the 2D input, pixels, Human3.6M order
    valid: np.ndarray           # [T, P] bool: a person was lifted (every value finite)
    track: np.ndarray           # [T, P] the input's track ids (-1: none)
    camera: np.ndarray          # [4] fx, fy, cx, cy used
    camera_given: bool
    frames: list[str]
    notes: list[str]
    world: WorldFrame | None = None   # with_world(): the gravity-aligned frame on the floor (lib/world.py)
    implausible: np.ndarray | None = None   # [T, P] bool with config.robust: people whose 2D the prior disbelieves

    @property
    def pose3d_world(self) -> np.ndarray:
        """[T, P, 17, 3] mm in the world frame (Z up, origin on the floor under the first frame's pelvis)."""
        if self.world is None:
            raise ToolkitError("no world frame: call with_world() first (run.lift --world)")
        return self.world.apply(self.pose3d)

    def with_world(self, config) -> LiftResult:
        """This result with the world frame of its clip (lib/world.py; config: the `lift` section's floor_*)."""
        return replace(self, world=world_frame(self.pose3d, self.valid, config.floor_ankle_height,
                                               config.floor_tolerance, config.floor_prior,
                                               config.floor_min_frames))

    def _exported(self) -> tuple[np.ndarray, np.ndarray]:
        """The poses [T, P, 17, 3] that exports write (in the world frame where there is one) and the map of their
        axes to the BVH's."""
        return (self.pose3d, CAMERA_TO_BVH) if self.world is None else (self.pose3d_world, WORLD_TO_BVH)

    def save(self, out: Path) -> list[Path]:
        """OUT/poses.npz and OUT/poses.json (per frame and person: 17 x 3 mm, completed joints, uncertainty; with a
        world frame also the poses in it, its rotation and origin)."""
        arrays = {k: getattr(self, k) for k in ("pose3d", "completed", "uncertainty", "root_depth", "keypoints2d",
                                                 "valid", "track", "camera")}
        if self.world is not None:
            arrays.update(pose3d_world=self.pose3d_world, world_rotation=self.world.rotation,
                          world_origin=self.world.origin)
        if self.implausible is not None:
            arrays["implausible"] = self.implausible
        check_outputs(out, with_csv=False)
        write_npz(out / "poses.npz", **arrays, frames=np.array(self.frames))
        world = None if self.world is None else self.pose3d_world
        people = [[dict({"track": int(self.track[t, p]), "pose3d_mm": np.round(self.pose3d[t, p], 1).tolist(),
                         "completed": self.completed[t, p].tolist(),
                         "uncertainty_mm": np.round(self.uncertainty[t, p], 1).tolist(),
                         "root_depth_mm": round(float(self.root_depth[t, p]), 1)},
                        **({} if world is None else {"pose3d_world_mm": np.round(world[t, p], 1).tolist()}),
                        **({} if self.implausible is None else {"implausible": bool(self.implausible[t, p])}))
                   for p in range(self.valid.shape[1]) if self.valid[t, p]] for t in range(len(self.frames))]
        header = {"camera": {"fx": self.camera[0], "fy": self.camera[1], "cx": self.camera[2], "cy": self.camera[3],
                             "given": self.camera_given},
                  "joints": "Human3.6M 17 (docs/design.md, 'Skeleton')", "notes": self.notes}
        if self.world is not None:
            header["world"] = {"rotation": self.world.rotation.tolist(), "origin_mm": self.world.origin.tolist(),
                               "axes": "Z up, X the camera's x axis on the floor, Y = Z x X; origin on the floor "
                                       "under the first frame's pelvis; world = rotation (camera - origin)"}
        write_json(out / "poses.json", dict(header, frames=[{"frame": f, "people": ps}
                                                            for f, ps in zip(self.frames, people, strict=True)]))
        return [out / "poses.npz", out / "poses.json"]

    def save_csv(self, path: str | Path) -> Path:
        """One row per frame and lifted person: frame, track, then per joint <name>_x, _y, _z (mm: camera frame, x
        right, y down, z forward; or the world frame, Z up) and <name>_uncertainty (mm)."""
        poses, _ = self._exported()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["frame", "track"] + [f"{n}_{c}" for n in JOINT_NAMES for c in ("x", "y", "z", "uncertainty")])
        for t, p in zip(*np.nonzero(self.valid), strict=True):
            values = np.concatenate([poses[t, p], self.uncertainty[t, p, :, None]], -1).ravel()  # [17 x 4]
            writer.writerow([self.frames[t], int(self.track[t, p])] + [f"{v:.2f}" for v in values])
        write_text(check_output(path, "CSV file", OUTPUTS["poses.csv"]), buf.getvalue())
        return Path(path)

    def save_bvh(self, folder: str | Path, fps: float, stem: str = "track") -> list[Path]:
        """One BVH file per track, FOLDER/<stem>_<track id>.bvh (lib/bvh.py: hierarchy, axes, units), from its first
        to its last frame at fps; a frame in between where the track is missing repeats the frame before."""
        poses, to_bvh = self._exported()
        idx = np.nonzero(self.valid)
        where = tracks(idx, self.track)
        if not where:
            raise ToolkitError("BVH export needs people followed over frames: give each person a track id in the "
                               "input (COCO / OpenPose track_id), or export csv")
        ids = sorted({i for _, i in where})
        spans = {i: sorted(t for t, k in where if k == i) for i in ids}
        short = [i for i in ids if len(spans[i]) < 2]
        if short:
            raise ToolkitError(f"track {short[0]} has one frame: a BVH file is an animation of a track over frames; "
                               f"export csv for single images")
        folder = check_writable(folder, "BVH folder", is_dir=True)
        paths = [check_output(folder / f"{stem}_{i}.bvh", "BVH file", BVH_OURS) for i in ids]  # all before any
        for i, path in zip(ids, paths, strict=True):
            rows = [where[(t, i)] for t in spans[i]]
            every = np.arange(spans[i][0], spans[i][-1] + 1)
            held = np.searchsorted(spans[i], every, side="right") - 1  # the last frame of the track at or before
            write_bvh(path, poses[idx][rows][held] @ to_bvh.T, fps)  # [F, 17, 3] in the BVH's axes
        return paths


def view_pixels(xy: np.ndarray, cam: np.ndarray, stats: dict) -> tuple[np.ndarray, np.ndarray]:
    """Pixels [M, 17, 2] of the real camera cam [4] -> the virtual cameras [M, 4] (the training cameras' median
    intrinsics) and the pixels [M, 17, 2] in them: the same rays."""
    target = np.broadcast_to(np.asarray(stats["camera"], dtype=np.float64), (len(xy), 4)).copy()
    return target, retarget(xy, cam, target)


def _rows(cam: np.ndarray, pose_px: np.ndarray, depth: np.ndarray) -> RowCameras:
    """Each person's virtual camera [M, 4], box and root depth [M], its root on the output's root pixel at depth."""
    root = unproject(pose_px[:, 0], depth, cam)  # [M, 3]
    return RowCameras(cam, box_around_root(root, cam), depth)


def estimate_depth(pose: torch.Tensor, cam: np.ndarray, frames: Frames, stats: dict) -> np.ndarray:
    """Root depths [M] at which normalised poses [M, 17, 3] seen by the virtual cameras cam [M, 4] have the training
    set's mean bone lengths: weak perspective first (depth = f sum(L_mm) / sum(L_px)), then corrected twice with the
    exact mapping."""
    px = frames.to_image(pose.double())
    total = float(np.sum(stats["bone_mm"]))
    depth = cam[:, 0] * total / np.maximum(bone_lengths(px).numpy().sum(1), 1e-9)
    for _ in range(2):
        mm = _rows(cam, px.numpy(), depth).network_to_camera(pose, frames).double()
        depth = depth * total / np.maximum(bone_lengths(mm).numpy().sum(1), 1e-9)
    return depth


def place(pose: torch.Tensor, cam: np.ndarray, frames: Frames, depth: np.ndarray) -> np.ndarray:
    """Normalised poses [M, 17, 3] seen by the virtual cameras cam [M, 4] -> camera mm [M, 17, 3], the root at
    `depth` (the virtual cameras share the real one's centre and orientation: the frame is the real camera's)."""
    return _rows(cam, frames.to_image(pose.double()).numpy(), depth).network_to_camera(pose, frames).double().numpy()


def _people(kps: Keypoints, seen: np.ndarray, min_joints: int, image_size: float) -> tuple[np.ndarray, list[str]]:
    """[T, P] people to lift, and notes on those skipped: too few usable joints, or degenerate 2D (the usable
    joints within 2 px of each other, or spread over more than 100 times the image)."""
    xy = np.nan_to_num(kps.xy)
    high = np.where(seen[..., None], xy, -np.inf).max(2)  # [T, P, 2]
    low = np.where(seen[..., None], xy, np.inf).min(2)
    spread = np.where(seen.any(-1), (high - low).max(-1), 0.0)  # [T, P]
    enough = kps.valid & (seen.sum(-1) >= min_joints)
    sane = (spread >= 2.0) & (spread <= 100.0 * image_size)
    notes = []
    if (kps.valid & ~enough).any():
        notes.append(f"{int((kps.valid & ~enough).sum())} people with fewer than lift.min_joints ({min_joints}) "
                     f"usable joints were skipped")
    if (enough & ~sane).any():
        notes.append(f"{int((enough & ~sane).sum())} people whose 2D keypoints are degenerate (all on one spot, or "
                     f"spread over more than 100 times the image) were skipped")
    return enough & sane, notes


def lift_keypoints(prior, kps: Keypoints, camera: np.ndarray | None, image_size: tuple[float, float] | None,
                   stats: dict, fast: bool = True, seed: int = 0, root_depth: np.ndarray | None = None) -> LiftResult:
    """The pipeline of the module docstring. `prior` is a lib.api.PosePrior (its config's `lift` section);
    root_depth [T, P] mm, when known, replaces the estimate from bone lengths."""
    lc = prior.config.lift
    given = camera is not None
    cam = np.asarray(camera, dtype=np.float64) if given else default_camera(_size(image_size, kps))
    seen = kps.usable(lc.min_conf)  # [T, P, 17]
    keep, notes = _people(kps, seen, lc.min_joints, float(max(_size(image_size, kps, cam))))
    notes = list(kps.notes) + ([f"{kps.empty_frames} frames with nobody in them"] if kps.empty_frames else []) + notes
    if not keep.any():
        enough = kps.valid & (seen.sum(-1) >= lc.min_joints)
        if enough.any():  # joints enough, but on one spot or beyond any image: the coordinates are the problem
            raise ToolkitError("every person's keypoints are degenerate (all on one spot, or spread over more than "
                               "100 times the image); check the coordinates and --image-size / --camera")
        lost = kps.valid[..., None] & ~np.isfinite(kps.xy).all(-1)  # [T, P, 17]: joints given as NaN / inf
        if lost.sum() * 2 > (kps.valid[..., None] & ~seen).sum():
            raise ToolkitError(f"no person has {lc.min_joints} usable joints: most of the keypoints are NaN or inf "
                               f"(not found); check the input")
        raise ToolkitError(f"no person has {lc.min_joints} usable joints (a kind the network uses, confidence >= "
                           f"lift.min_conf = {lc.min_conf}); lower it (--min-conf) if the detector's confidences are "
                           f"low")
    idx = np.nonzero(keep)
    sn = seen[idx]
    size = prior.frames.image_size
    vcam, pixels = view_pixels(np.nan_to_num(kps.xy[idx]), cam, stats)
    seen_px = np.where(sn[..., None], pixels, np.nan)
    spread = np.nanmax(seen_px, 1) - np.nanmin(seen_px, 1)  # [M, 2]: every kept person has usable joints
    if not (np.isfinite(spread).all() and (spread.max(1) >= 2.0).all() and (np.abs(pixels[sn]) < 1e5).all()):
        raise ToolkitError(f"the camera {np.round(cam, 1).tolist()} puts these keypoints on one spot or far outside "
                           f"any image ({size:g} px the training frame); check --camera / --image-size")
    cond = torch.from_numpy(np.where(sn[..., None], prior.frames.normalise(pixels), 0.0)).float()  # [M, 17, 2]
    robust = None
    if RobustSettings.from_config(prior.config) is not None:  # swaps undone, doubtful keypoints completed
        robust = prior.robust_2d(cond, ~sn, kps.conf[idx] * sn, seed)
        cond, sn = robust.condition[..., :2] / prior.frames.scale, robust.seen.numpy()
        notes += _robust_notes(robust)
    s = int(lc.hypotheses)
    # as est (no warm start: lifting must give what estimation gives on the same 2D, tests/test_lift.py)
    out = prior.complete_2d(cond, ~sn, hypotheses=s, fast=fast, pflow=s == 1, seed=seed,
                            reduce=prior.config.eval.reduce if s > 1 else None, completion=lc.completion,
                            warm_start="none")
    if s > 1:
        pose, unc = (torch.as_tensor(v) for v in out)
    else:  # one hypothesis: the pose, and no spread to measure
        pose = torch.as_tensor(out)[:, 0]
        unc = torch.zeros(pose.shape[:2])
    if robust is not None:  # how much the answer depends on the keypoints disbelieved
        unc = torch.maximum(unc, (robust.plain - robust.pose).norm(dim=-1) / prior.frames.scale)
    where = tracks(idx, kps.track)
    if lc.smooth:
        net = torch.cat([cond, torch.zeros_like(cond[..., :1])], -1) * prior.frames.scale
        pose = smooth_poses(prior, pose, net, torch.from_numpy(sn), where, seed)
    frames = Frames(size, 1.0)
    if root_depth is not None:
        depth = np.asarray(root_depth, dtype=np.float64)[idx]
    else:
        depth = estimate_depth(pose, vcam, frames, stats)
        if lc.smooth:
            depth = smooth_depth(depth, where, lc.smooth_window)
    mm = place(pose, vcam, frames, depth)
    unc_mm = unc.double().numpy() * size / 2.0 * depth[:, None] / vcam[:, :1]  # normalised -> px -> mm at depth
    result = _assemble(kps, idx, mm, depth, unc_mm, sn, cam, given, notes)
    if robust is not None:
        result.implausible = np.zeros(kps.valid.shape, bool)
        result.implausible[idx] = robust.implausible.numpy()
        result.implausible &= result.valid
    return result


def _robust_notes(robust) -> list[str]:
    """What robust conditioning changed, as notes."""
    counts = ((robust.swapped >= 0).sum(), robust.dropped.sum(), robust.implausible.sum())
    words = ("left / right swaps undone", "detected joints disbelieved and completed",
             "people flagged implausible (config robust.flag_share of their joints disbelieved)")
    return [f"robust: {int(n)} {w}" for n, w in zip(counts, words, strict=True) if n]


def _size(image_size, kps: Keypoints, cam: np.ndarray | None = None) -> tuple[float, float]:
    size = image_size or kps.image_size
    if size is None and cam is not None:
        return 2.0 * cam[2], 2.0 * cam[3]  # a known camera: its principal point is about the image centre
    if size is None:
        raise ToolkitError("no camera and no image size: give --image-size W H (or --camera fx fy cx cy); the "
                           "default intrinsics come from the image size")
    return size


def _assemble(kps: Keypoints, idx: tuple, mm: np.ndarray, depth: np.ndarray, unc: np.ndarray, seen: np.ndarray,
              cam: np.ndarray, given: bool, notes: list[str]) -> LiftResult:
    """Per frame and person; a person whose result is not finite is marked invalid (never NaN with valid)."""
    t, p = kps.valid.shape
    pose3d, completed = np.full((t, p, NUM_JOINTS, 3), np.nan), np.zeros((t, p, NUM_JOINTS), bool)
    uncertainty, root_depth = np.full((t, p, NUM_JOINTS), np.nan), np.full((t, p), np.nan)
    finite = np.isfinite(mm).all((1, 2)) & np.isfinite(depth) & (depth > 0) & np.isfinite(unc).all(1)
    valid = np.zeros((t, p), bool)
    ok = tuple(i[finite] for i in idx)
    pose3d[ok], completed[ok], uncertainty[ok], root_depth[ok] = mm[finite], ~seen[finite], unc[finite], depth[finite]
    valid[ok] = True
    if (~finite).any():
        notes = notes + [f"{int((~finite).sum())} people could not be placed (no finite depth) and are marked invalid"]
    return LiftResult(pose3d, completed, uncertainty, root_depth, kps.xy, valid, kps.track, cam, given, kps.frames,
                      notes)
