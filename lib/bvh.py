"""BVH motion files: reading (any skeleton) and writing lifted 17-joint poses as an animated skeleton.

Writing (docs/design.md, 'Export'): the hierarchy is rooted at the pelvis ("Hips", position and rotation channels);
every other joint has three rotation channels in the order Z, X, Y. Rest offsets are the median bone lengths of the
track, laid out as a T-pose facing +Z with Y up and the subject's left along +X. Each bone gets a joint of its own
at its start, so that every bone of every frame points exactly where the lifted bone points: the pelvis' hip bones
start at "RHipJoint" / "LHipJoint" and the thorax's shoulder bones at "RightCollar" / "LeftCollar" (zero offsets, as
in CMU's BVH files). A joint's rotation turns its rest frame into the bone's frame in the pose, whose twist is taken
from the plane of the hips (legs, spine, neck and head) or of the body's up axis and the shoulders (hips and arms).
Because the skeleton is rigid, the file's joint positions are the lifted ones with each bone at its median length;
the direction of every bone is kept.

Axes: the BVH frame has Y up. From camera millimetres (x right, y down, z forward) it is (x, -y, -z); from the
world frame of lib/world.py (Z up) it is (x, z, -y). Units: millimetres.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib.errors import ToolkitError, first_line
from lib.io import write_text
from lib.skeleton import BONES


@dataclass
class Bvh:
    names: list[str]              # joints and end sites ('Parent/End'), in file order
    parents: list[int]
    offsets: np.ndarray           # [K, 3]
    channels: list[list[str]]     # per joint, e.g. ['Zrotation', 'Yrotation', 'Xrotation']
    motion: np.ndarray            # [F, C]
    frame_time: float


def parse_bvh(path: str | Path) -> Bvh:
    """Read a BVH file (hierarchy and motion)."""
    path = Path(path)
    try:
        tokens = path.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as e:
        raise ToolkitError(f"cannot read BVH {path}: {first_line(e)}") from e
    names, parents, offsets, channels, stack = [], [], [], [], []
    i = 0
    try:
        if tokens[0] != "HIERARCHY":
            raise ValueError("no HIERARCHY section")
        i = 1
        while tokens[i] != "MOTION":
            tok = tokens[i]
            if tok in ("ROOT", "JOINT", "End"):
                name = tokens[i + 1] if tok != "End" else f"{names[stack[-1]]}/End"
                names.append(name)
                parents.append(stack[-1] if stack else -1)
                channels.append([])
                stack.append(len(names) - 1)
                i += 2
            elif tok == "OFFSET":
                offsets.append([float(v) for v in tokens[i + 1:i + 4]])
                i += 4
            elif tok == "CHANNELS":
                k = int(tokens[i + 1])
                channels[stack[-1]] = tokens[i + 2:i + 2 + k]
                i += 2 + k
            elif tok == "}":
                stack.pop()
                i += 1
            else:
                i += 1
        frames = int(tokens[tokens.index("Frames:", i) + 1])
        ft = float(tokens[tokens.index("Time:", i) + 1])
        start = tokens.index("Time:", i) + 2
        n_ch = sum(len(c) for c in channels)
        values = np.array(tokens[start:start + frames * n_ch], dtype=np.float64)
        if frames < 1 or n_ch < 1:
            raise ValueError(f"{frames} frames of {n_ch} channels: no motion to convert")
        if values.size != frames * n_ch or len(offsets) != len(names):
            raise ValueError(f"expected {frames} frames x {n_ch} channels, found {values.size} values")
    except (ValueError, IndexError) as e:
        raise ToolkitError(f"{path}: not a valid BVH file ({e})") from e
    return Bvh(names, parents, np.array(offsets), channels, values.reshape(frames, n_ch), ft)


def _axis_rotation(axis: str, deg: np.ndarray) -> np.ndarray:
    """[F, 3, 3] rotations about X, Y or Z by deg degrees."""
    a = np.radians(deg)
    c, s, one, zero = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    m = {"X": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
         "Y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
         "Z": [[c, -s, zero], [s, c, zero], [zero, zero, one]]}[axis]
    return np.moveaxis(np.array(m), [0, 1], [-2, -1])


def bvh_positions(bvh: Bvh) -> np.ndarray:
    """World positions [F, K, 3] of every joint and end site (forward kinematics, channel order as listed)."""
    f = bvh.motion.shape[0]
    pos = np.zeros((f, len(bvh.names), 3))
    rot = np.zeros((f, len(bvh.names), 3, 3))
    col = 0
    for j, (parent, chans) in enumerate(zip(bvh.parents, bvh.channels, strict=True)):
        local, trans = np.broadcast_to(np.eye(3), (f, 3, 3)), bvh.offsets[j] + np.zeros((f, 3))
        for ch in chans:
            v = bvh.motion[:, col]
            col += 1
            if ch.endswith("position"):
                trans = trans + np.outer(v, np.eye(3)["XYZ".index(ch[0])])
            else:
                local = local @ _axis_rotation(ch[0], v)
        if parent < 0:
            pos[:, j], rot[:, j] = trans, local
        else:
            pos[:, j] = pos[:, parent] + np.einsum("fij,fj->fi", rot[:, parent], trans)
            rot[:, j] = rot[:, parent] @ local
    return pos




# ------------------------------------------------------------------------------------------------ writing

_X, _Y, _Z = np.eye(3)
# (BVH joint, the Human3.6M joint it sits on, its parent, the bone its rotation drives as (from, to) Human3.6M joints
# and that bone's direction in the rest pose; an end joint drives none and gives its end site's direction instead,
# and the twist reference of the driven bone's frame: the hip line or the body's up axis)
SKELETON = (
    ("Hips", 0, None, (0, 7), _Y, "hips"),
    ("RHipJoint", 0, "Hips", (0, 1), -_X, "up"),
    ("RightHip", 1, "RHipJoint", (1, 2), -_Y, "hips"),
    ("RightKnee", 2, "RightHip", (2, 3), -_Y, "hips"),
    ("RightAnkle", 3, "RightKnee", None, _Z, None),
    ("LHipJoint", 0, "Hips", (0, 4), _X, "up"),
    ("LeftHip", 4, "LHipJoint", (4, 5), -_Y, "hips"),
    ("LeftKnee", 5, "LeftHip", (5, 6), -_Y, "hips"),
    ("LeftAnkle", 6, "LeftKnee", None, _Z, None),
    ("Spine", 7, "Hips", (7, 8), _Y, "hips"),
    ("Thorax", 8, "Spine", (8, 9), _Y, "hips"),
    ("Neck", 9, "Thorax", (9, 10), _Y, "hips"),
    ("HeadTop", 10, "Neck", None, _Y, None),
    ("LeftCollar", 8, "Thorax", (8, 11), _X, "up"),
    ("LeftShoulder", 11, "LeftCollar", (11, 12), _X, "up"),
    ("LeftElbow", 12, "LeftShoulder", (12, 13), _X, "up"),
    ("LeftWrist", 13, "LeftElbow", None, _X, None),
    ("RightCollar", 8, "Thorax", (8, 14), -_X, "up"),
    ("RightShoulder", 14, "RightCollar", (14, 15), -_X, "up"),
    ("RightElbow", 15, "RightShoulder", (15, 16), -_X, "up"),
    ("RightWrist", 16, "RightElbow", None, -_X, None),
)
# The BVH joint of each Human3.6M joint (the branch joints RHipJoint, LHipJoint, LeftCollar and RightCollar sit on
# the pelvis and the thorax as well)
BVH_OF_H36M = {j: name for name, j, *_ in reversed(SKELETON)}
END_SITE = 50.0  # mm: the end sites' offsets (cosmetic: toes, fingers, top of the head)
CAMERA_TO_BVH = np.diag([1.0, -1.0, -1.0])                                      # (x, -y, -z)
WORLD_TO_BVH = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])    # (x, z, -y)


def _frame(a: np.ndarray, ref: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Orthonormal frames [F, 3, 3] with columns a, b, a x b: a the bone directions [F, 3], b the part of ref [F, 3]
    normal to a, or of fallback [F, 3] where ref is nearly parallel to a."""
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)

    def normal(v: np.ndarray) -> np.ndarray:
        return v - (v * a).sum(-1, keepdims=True) * a

    b, alt = normal(ref), normal(fallback)
    weak = np.linalg.norm(b, axis=-1, keepdims=True) < 1e-3 * np.linalg.norm(ref, axis=-1, keepdims=True)
    b = np.where(weak, alt, b)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return np.stack([a, b, np.cross(a, b)], -1)


def _euler_zxy(r: np.ndarray) -> np.ndarray:
    """Rotations [F, 3, 3] = Rz(z) Rx(x) Ry(y) -> degrees [F, 3] in channel order (z, x, y)."""
    x = np.arcsin(np.clip(r[:, 2, 1], -1.0, 1.0))
    z = np.arctan2(-r[:, 0, 1], r[:, 1, 1])
    y = np.arctan2(-r[:, 2, 0], r[:, 2, 2])
    return np.degrees(np.stack([z, x, y], -1))


def median_bones(poses: np.ndarray) -> np.ndarray:
    """Median length [16] of each bone (BONES order) over the frames of poses [F, 17, 3]."""
    ends = np.array(BONES)
    return np.median(np.linalg.norm(poses[:, ends[:, 1]] - poses[:, ends[:, 0]], axis=-1), 0)


def rigid_poses(poses: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Poses [F, 17, 3] with every bone's direction kept, its length set to lengths [16] (BONES order) and the pelvis
    where it is: the joint positions that a BVH of these poses holds."""
    out = poses.copy()
    for k, (p, c) in enumerate(BONES):  # a parent comes before its children in BONES
        d = poses[:, c] - poses[:, p]
        out[:, c] = out[:, p] + lengths[k] * d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)
    return out


def _num(v: np.ndarray) -> str:
    return " ".join(f"{x:.6f}" for x in v)


def bvh_text(poses: np.ndarray, fps: float, lengths: np.ndarray | None = None) -> str:
    """A BVH file of poses [F, 17, 3] in millimetres with Y up (map camera or world coordinates with CAMERA_TO_BVH or
    WORLD_TO_BVH first) at fps frames per second; bone lengths [16] (BONES order) default to the median over the
    frames (median_bones)."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (17, 3) or len(poses) < 1 or not np.isfinite(poses).all():
        raise ToolkitError(f"BVH export needs finite poses [F, 17, 3], got shape {poses.shape}")
    if not (np.isfinite(fps) and 0 < fps <= 1000):
        raise ToolkitError(f"the frame rate must be between 0 and 1000 frames per second, got {fps}")
    lengths = median_bones(poses) if lengths is None else np.asarray(lengths, dtype=np.float64)
    bone = {b: k for k, b in enumerate(BONES)}
    joint = {s[0]: s for s in SKELETON}
    refs = {"hips": poses[:, 4] - poses[:, 1], "up": poses[:, 8] - poses[:, 0]}  # [F, 3] each, in the pose
    rest_refs = {"hips": _X[None], "up": _Y[None]}                                # ... and in the rest pose
    forward, rest_forward = np.cross(refs["hips"], refs["up"]), _Z[None]          # where a reference fails
    glob, local = {}, []
    for name, _, parent, drives, rest, ref in SKELETON:
        if drives is None:  # an end joint turns with its parent
            glob[name] = glob[parent]
        else:
            pose_frame = _frame(poses[:, drives[1]] - poses[:, drives[0]], refs[ref], forward)
            rest_frame = _frame(rest[None], rest_refs[ref], rest_forward)
            glob[name] = pose_frame @ np.swapaxes(rest_frame, -1, -2)  # [F, 3, 3]: rest direction -> the bone's
        local.append(glob[name] if parent is None else np.swapaxes(glob[parent], -1, -2) @ glob[name])

    children: dict[str | None, list[str]] = {}
    for s in SKELETON:
        children.setdefault(s[2], []).append(s[0])

    def emit(name: str, depth: int) -> list[str]:
        _, j, parent, drives, rest, _ = joint[name]
        pad = "  " * depth
        if parent is None:
            head = [f"{pad}ROOT {name}", f"{pad}{{", f"{pad}  OFFSET {_num(np.zeros(3))}",
                    f"{pad}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"]
        else:
            _, pj, _, _, prest, _ = joint[parent]
            offset = lengths[bone[(pj, j)]] * prest if pj != j else np.zeros(3)  # the bone from the parent, at rest
            head = [f"{pad}JOINT {name}", f"{pad}{{", f"{pad}  OFFSET {_num(offset)}",
                    f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation"]
        body = [line for c in children.get(name, []) for line in emit(c, depth + 1)]
        if drives is None:
            body = [f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {_num(END_SITE * rest)}", f"{pad}  }}"]
        return head + body + [f"{pad}}}"]

    motion = np.concatenate([poses[:, 0]] + [_euler_zxy(r) for r in local], -1)  # [F, 3 + 3 x joints]
    lines = ["HIERARCHY"] + emit("Hips", 0) + ["MOTION", f"Frames: {len(poses)}", f"Frame Time: {1.0 / fps:.8f}"]
    return "\n".join(lines + [_num(row) for row in motion]) + "\n"


def write_bvh(path: str | Path, poses: np.ndarray, fps: float, lengths: np.ndarray | None = None) -> None:
    """Write bvh_text(poses, fps, lengths) to path atomically."""
    write_text(path, bvh_text(poses, fps, lengths))


def h36m_positions(bvh: Bvh) -> np.ndarray:
    """The 17 Human3.6M joints [F, 17, 3] of a BVH file this module wrote (the positions of their BVH joints)."""
    missing = [n for n in BVH_OF_H36M.values() if n not in bvh.names]
    if missing:
        raise ToolkitError(f"the BVH file lacks joint(s) {', '.join(missing)}; it was not written by this toolkit")
    pos = bvh_positions(bvh)
    return pos[:, [bvh.names.index(BVH_OF_H36M[j]) for j in range(17)]]
