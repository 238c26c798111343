"""2D keypoint formats: readers, joint tables onto the 17 Human3.6M joints, and what each joint of a source is.

A format declares, per Human3.6M joint, where its value comes from and what kind of point it is
(docs/design.md, 'Keypoint formats'):
  same       the same anatomical point as Human3.6M's joint: given to the network as 2D
  near       a nearby point (a detector's hip sits higher and closer to the other hip than Human3.6M's hip centre;
             a midpoint of the shoulders for the thorax): given to the network, flagged in the output
  different  a different point under the same name (Stacked Hourglass's "spine" sits 39 px above Human3.6M's in
             91 % of frames): treated as missing, the prior completes it
  absent     no counterpart, or a point made up from others (a neck/nose halfway between thorax and head top):
             treated as missing
Joints below a confidence threshold are treated as missing too, the same way (lib/tasks/observe.py).

Adding a format is one `@register_format` call with its reader and tables.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lib.errors import ToolkitError, first_line
from lib.io import not_found

NUM_JOINTS = 17
KINDS = ("same", "near", "different", "absent")
USED = ("same", "near")            # kinds given to the network as 2D
Mid = tuple[int, int]              # a joint made as the midpoint of two source joints
Table = dict[int, int | Mid | None]


@dataclass
class Keypoints:
    """2D input in Human3.6M order: T frames x P people."""

    xy: np.ndarray                          # [T, P, 17, 2] pixels
    conf: np.ndarray                        # [T, P, 17] confidence, 0 where a joint is absent
    valid: np.ndarray                       # [T, P] bool: a person is there
    track: np.ndarray                       # [T, P] track id from the input, -1 where it carries none
    frames: list[str]                       # frame names or ids
    kinds: tuple[str, ...] = ("same",) * NUM_JOINTS   # per Human3.6M joint, what the source's point is (KINDS)
    image_size: tuple[float, float] | None = None   # (W, H) when the file says
    empty_frames: int = 0                   # frames with nobody in them (kept, with no valid person)
    notes: list[str] = field(default_factory=list)

    def usable(self, min_conf: float) -> np.ndarray:
        """[T, P, 17] bool: joints given to the network: a used kind, confidence >= min_conf, finite, a person."""
        used = np.array([k in USED for k in self.kinds])
        return used & (self.conf >= min_conf) & np.isfinite(self.xy).all(-1) & self.valid[..., None]


@dataclass(frozen=True)
class KeypointFormat:
    name: str
    reader: Callable[[Path], Keypoints] | None      # a file or folder -> Keypoints (None: arrays only)
    tables: dict[int, Table]                         # source joint count -> Human3.6M joint <- source joint
    kinds: dict[int, tuple[str, ...]]                # source joint count -> kind of each Human3.6M joint
    help: str = ""


FORMATS: dict[str, KeypointFormat] = {}


def register_format(name: str, tables: dict[int, Table], kinds: dict[int, dict[int, str]], help: str = "",  # noqa: A002
                    ) -> Callable:
    """Register a reader (path -> Keypoints) for a format; kinds lists the joints that are not 'same'."""
    def deco(reader: Callable[[Path], Keypoints] | None) -> Callable[[Path], Keypoints] | None:
        full = {k: tuple(v.get(j, "same") for j in range(NUM_JOINTS)) for k, v in kinds.items()}
        for k, table in tables.items():  # joints without a counterpart are absent by definition
            full[k] = tuple("absent" if table[j] is None else full[k][j] for j in range(NUM_JOINTS))
        FORMATS[name] = KeypointFormat(name, reader, tables, full, help)
        return reader
    return deco


# Human3.6M joint <- source joint (docs/design.md, 'Skeleton' and 'Keypoint formats'). The source joints' names:
# COCO-17: 0 nose, 1-4 eyes and ears, 5/6 l/r shoulder, 7/8 elbow, 9/10 wrist, 11/12 l/r hip, 13/14 knee, 15/16 ankle.
# BODY_25: 0 nose, 1 neck, 2-4 r shoulder/elbow/wrist, 5-7 l, 8 mid hip, 9-11 r hip/knee/ankle, 12-14 l, 15-24 face
# and feet. COCO-18 (OpenPose): 0 nose, 1 neck, 2-4 r arm, 5-7 l arm, 8-10 r hip/knee/ankle, 11-13 l, 14-17 face.
COCO17 = {0: (11, 12), 1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 7: None, 8: (5, 6), 9: 0, 10: None, 11: 5, 12: 7,
          13: 9, 14: 6, 15: 8, 16: 10}
BODY25 = {0: 8, 1: 9, 2: 10, 3: 11, 4: 12, 5: 13, 6: 14, 7: None, 8: 1, 9: 0, 10: None, 11: 5, 12: 6, 13: 7, 14: 2,
          15: 3, 16: 4}
COCO18 = {0: (8, 11), 1: 8, 2: 9, 3: 10, 4: 11, 5: 12, 6: 13, 7: None, 8: 1, 9: 0, 10: None, 11: 5, 12: 6, 13: 7,
          14: 2, 15: 3, 16: 4}
H36M = {j: j for j in range(NUM_JOINTS)}
DETECTOR_HIPS = {0: "near", 1: "near", 4: "near", 8: "near"}  # detector hips, and a thorax made from the shoulders


def map_joints(xy: np.ndarray, conf: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray]:
    """Source joints [..., K, 2] / [..., K] -> Human3.6M [..., 17, 2] / [..., 17] (midpoints take the lower
    confidence; joints without a counterpart get confidence 0 and NaN)."""
    out_xy = np.full(xy.shape[:-2] + (NUM_JOINTS, 2), np.nan)
    out_conf = np.zeros(conf.shape[:-1] + (NUM_JOINTS,))
    for j, src in table.items():
        if src is None:
            continue
        a, b = (src, src) if isinstance(src, int) else src
        out_xy[..., j, :] = 0.5 * (xy[..., a, :] + xy[..., b, :])
        out_conf[..., j] = np.minimum(conf[..., a], conf[..., b])
    return out_xy, out_conf


def _people(rows: list[list[tuple[np.ndarray, np.ndarray, int]]], frames: list[str], fmt: str,
            notes: list[str] | None = None) -> Keypoints:
    """Frames of (keypoints [K, 2], confidence [K], track) lists -> Keypoints padded to the most people per frame.
    A track id given to two people of one frame is kept by the first; the second is untracked (-1), with a note."""
    spec = FORMATS[fmt]
    t, p = len(rows), max([len(r) for r in rows] + [1])
    xy, conf = np.full((t, p, NUM_JOINTS, 2), np.nan), np.zeros((t, p, NUM_JOINTS))
    valid, track = np.zeros((t, p), bool), np.full((t, p), -1)
    counts, shared = set(), []
    for i, people in enumerate(rows):
        for k, (kxy, kconf, tid) in enumerate(people):
            counts.add(len(kconf))
            xy[i, k], conf[i, k] = map_joints(kxy, kconf, spec.tables[len(kconf)])
            duplicate = tid >= 0 and tid in track[i, :k]
            valid[i, k], track[i, k] = True, -1 if duplicate else tid
            if duplicate:
                shared.append(f"{frames[i]} (track {tid})")
    notes = list(notes or [])
    if shared:
        notes.append(f"{len(shared)} people share a track id with someone else in the same frame and are not tracked "
                     f"(lifted alone, not smoothed or exported along the track): frame {', '.join(shared[:5])}"
                     f"{' ...' if len(shared) > 5 else ''}")
    kinds = spec.kinds[counts.pop()] if len(counts) == 1 else _mixed(spec, counts)
    return Keypoints(xy, conf, valid, track, frames, kinds=kinds, empty_frames=sum(not r for r in rows), notes=notes)


def frame_order(ids: list, what: str) -> tuple[list[int], list[str]]:
    """The order of frames named by ids (image ids or file names) and a note on it: numbers in numeric order, names
    with numbers in them by those numbers ('frame_2' before 'frame_10'), anything else in the order given."""
    def natural(i) -> tuple:
        return tuple(int(c) if c.isdigit() else c for c in re.split(r"(\d+)", str(i)) if c)

    if all(isinstance(i, int) for i in ids):
        return sorted(range(len(ids)), key=lambda k: ids[k]), []
    if all(re.search(r"\d", str(i)) for i in ids):
        keys = [natural(i) for i in ids]
        try:
            order = sorted(range(len(ids)), key=lambda k: keys[k])
        except TypeError:  # names whose parts do not compare (a number where another has text)
            order = None
        if order is not None:
            return order, ([] if order == list(range(len(ids))) else
                           [f"frames ordered by the numbers in their {what} ('2' before '10')"])
    return list(range(len(ids))), [f"{what} are not all numbered: frames kept in the order of the input"]


def _mixed(spec: KeypointFormat, counts: set[int]) -> tuple[str, ...]:
    """Kinds for a file mixing layouts of one format (or with nobody in it): a joint is 'same' only if it is in all."""
    if not counts:
        return next(iter(spec.kinds.values()))
    order = {k: i for i, k in enumerate(KINDS)}
    return tuple(max((spec.kinds[c][j] for c in counts), key=order.__getitem__) for j in range(NUM_JOINTS))


def _triples(values, where: str, counts: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A flat [x, y, c, ...] list -> ([K, 2], [K]); its length must be 3 K for one of the known K."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ToolkitError(f"{where}: keypoints must be numbers ({e})") from e
    if arr.ndim != 1 or arr.size not in [3 * k for k in counts]:
        raise ToolkitError(f"{where}: {arr.size} keypoint numbers; expected {' or '.join(str(3 * k) for k in counts)} "
                           f"(x, y, confidence for {' or '.join(map(str, counts))} joints)")
    arr = arr.reshape(-1, 3)
    lost = ~np.isfinite(arr).all(-1)  # NaN or inf: a joint not found, completed by the prior (as in an .npy)
    arr[lost] = 0.0
    return arr[:, :2], arr[:, 2]


def _track_id(value, where: str) -> int:
    """A track id: an integer, or a string of one (some trackers write "7"); anything else is an error."""
    try:
        tid = int(value[0] if isinstance(value, list) and value else value)
    except (TypeError, ValueError) as e:
        raise ToolkitError(f"{where}: track id {value!r} must be a whole number") from e
    return tid


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ToolkitError(f"{path}: not valid JSON ({e})") from e


@register_format("coco", {17: COCO17}, {17: DETECTOR_HIPS},
                 "COCO keypoint results JSON (MMPose, ViTPose, Detectron2, YOLO-pose) or an annotation file")
def read_coco(path: Path) -> Keypoints:
    """COCO keypoint results (a list of {"image_id", "keypoints": [x, y, v] * 17, "score", optional "track_id"}) or a
    COCO annotation file ({"images", "annotations"}, which also gives the image size). Frames are the image ids in
    order; people per frame by track id, else by score."""
    data = _load_json(path)
    size = None
    if isinstance(data, dict):
        images = data.get("images", [])
        images = {im.get("id"): (im.get("width"), im.get("height")) for im in images if isinstance(im, dict)} \
            if isinstance(images, list) else {}
        sizes = {s for s in images.values() if None not in s}
        size = next(iter(sizes)) if len(sizes) == 1 else None
        data = data.get("annotations")
    if not isinstance(data, list):
        raise ToolkitError(f"{path}: expected a COCO results list [{{'image_id', 'keypoints', ...}}] or an "
                           f"annotation file with 'annotations'")
    if not data:
        raise ToolkitError(f"{path} holds no detections (an empty list): nobody to lift")
    by_image: dict = {}
    for k, det in enumerate(data):
        if not isinstance(det, dict) or "image_id" not in det or "keypoints" not in det:
            raise ToolkitError(f"{path}: entry {k} lacks 'image_id' or 'keypoints'")
        if not isinstance(det["image_id"], (int, str)) or isinstance(det["image_id"], bool):
            raise ToolkitError(f"{path}: entry {k} has image_id {det['image_id']!r}; expected a number or a name")
        kxy, kconf = _triples(det["keypoints"], f"{path} entry {k}", (17,))
        score = det.get("score", 0.0)
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise ToolkitError(f"{path}: entry {k} has score {score!r}; expected a number")
        by_image.setdefault(det["image_id"], []).append(
            (kxy, kconf, _track_id(det.get("track_id", -1), f"{path} entry {k}"), float(score)))
    seen = list(by_image)  # in the order of the file
    order, notes = frame_order(seen, "image ids")
    ids = [seen[k] for k in order]
    rows = [[p[:3] for p in sorted(by_image[i], key=lambda p: (p[2] if p[2] >= 0 else 0, -p[3]))] for i in ids]
    kps = _people(rows, [str(i) for i in ids], "coco", notes)
    if size is not None:
        kps.image_size = tuple(float(v) for v in size)
    return kps


@register_format("openpose", {25: BODY25, 18: COCO18}, {25: DETECTOR_HIPS, 18: DETECTOR_HIPS},
                 "OpenPose JSON (BODY_25 or COCO-18), one file per frame or a folder of them")
def read_openpose(path: Path) -> Keypoints:
    """OpenPose JSON, one file per frame ({"people": [{"pose_keypoints_2d": [x, y, c] * 25 or 18}]}), a folder of
    them in name order or one file. BODY_25 or COCO-18 by the count; a joint not found is (0, 0, 0)."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise ToolkitError(f"{path} holds no .json files (OpenPose writes one per frame)")
    order, notes = frame_order([f.stem for f in files], "file names")
    files = [files[k] for k in order]
    rows = []
    for f in files:
        data = _load_json(f)
        people = data.get("people") if isinstance(data, dict) else None
        if not isinstance(people, list):
            raise ToolkitError(f"{f}: expected {{'people': [{{'pose_keypoints_2d': [...]}}]}}")
        frame = []
        for k, person in enumerate(people):
            if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
                raise ToolkitError(f"{f}: person {k} lacks 'pose_keypoints_2d'")
            kxy, kconf = _triples(person["pose_keypoints_2d"], f"{f} person {k}", (25, 18))
            kconf = np.where((kxy == 0).all(-1), 0.0, kconf)  # (0, 0, c): not found, whatever c says
            frame.append((kxy, kconf, _track_id(person.get("person_id", -1), f"{f} person {k}")))
        rows.append(frame)
    return _people(rows, [f.stem for f in files], "openpose", notes)


def _read_npy(path: Path, fmt: str) -> Keypoints:
    """An .npy of [T, 17, 2] or [T, 17, 3] (x, y, confidence) in Human3.6M order, one person."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ToolkitError(f"{path}: not a numeric .npy array ({first_line(e)})") from e
    if not isinstance(arr, np.ndarray):  # an .npz archive (an eval's results.npz, a lift's poses.npz)
        arr.close()
        raise ToolkitError(f"{path} is an .npz archive, not an .npy keypoints array; save the 2D keypoints [T, 17, 2 "
                           f"or 3] with numpy.save (for a lift's or an evaluation's results: run.visualize)")
    if arr.ndim != 3 or arr.shape[1] != NUM_JOINTS or arr.shape[2] not in (2, 3) or arr.dtype.kind not in "fiu":
        raise ToolkitError(f"{path}: shape {arr.shape} ({arr.dtype}); expected numbers [T, 17, 2] or [T, 17, 3] "
                           f"in Human3.6M joint order")
    if len(arr) == 0:
        raise ToolkitError(f"{path}: holds no frames")
    conf = arr[..., 2] if arr.shape[2] == 3 else np.ones(arr.shape[:2])
    rows = [[(a[:, :2].astype(np.float64), c, -1)] for a, c in zip(arr, conf, strict=True)]
    return _people(rows, [str(i) for i in range(len(arr))], fmt)


register_format("h36m", {17: H36M}, {17: {}}, "an .npy [T, 17, 2 | 3] in Human3.6M order (ground truth, or a "
                "detector fine-tuned on Human3.6M's joints)")(lambda path: _read_npy(path, "h36m"))
# Stacked Hourglass (3d-pose-baseline; the paper's h36m_sh_dt_ft.pkl) written in Human3.6M order: its "spine" is a
# different point (docs/design.md, 'Keypoint formats'), and it has no neck/nose (made halfway from thorax to head).
register_format("sh", {17: H36M}, {17: {7: "different", 9: "absent"}},
                "Stacked Hourglass 2D in Human3.6M order, as .npy [T, 17, 2 | 3]")(lambda path: _read_npy(path, "sh"))


def keypoints_from(source, fmt: str) -> Keypoints:
    """Keypoints from a file of format `fmt`, a Keypoints, or an array [T, K, 2|3] / [T, P, K, 2|3] (x, y and
    optionally confidence) in that format's joint order."""
    if fmt not in FORMATS:
        raise ToolkitError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if isinstance(source, Keypoints):
        return source
    spec = FORMATS[fmt]
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ToolkitError(not_found(path))
        return spec.reader(path)
    try:
        arr = np.asarray(source, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ToolkitError(f"keypoints must be an array of numbers ({e})") from e
    arr = arr[:, None] if arr.ndim == 3 else arr
    if arr.ndim != 4 or arr.shape[-1] not in (2, 3) or arr.shape[2] not in spec.tables or arr.shape[0] == 0:
        raise ToolkitError(f"keypoints array of shape {tuple(np.shape(source))}: expected [T, K, 2 or 3] or "
                           f"[T, P, K, 2 or 3] with T >= 1 and K in {sorted(spec.tables)} for format {fmt}")
    conf = arr[..., 2] if arr.shape[-1] == 3 else np.ones(arr.shape[:-1])
    xy, c = map_joints(arr[..., :2], conf, spec.tables[arr.shape[2]])
    t, p = arr.shape[:2]
    return Keypoints(xy, c, np.ones((t, p), bool), np.full((t, p), -1), [str(i) for i in range(t)],
                     kinds=spec.kinds[arr.shape[2]])


def coco_from_h36m(xy: np.ndarray) -> np.ndarray:
    """Human3.6M 2D joints [..., 17, 2] -> COCO-17 [..., 17, 2] (examples): the mapped joints, and the eyes and ears,
    which Human3.6M lacks, placed around the head (between neck/nose and head top, across by a tenth and a fifth of
    the shoulder width)."""
    out = np.zeros(xy.shape[:-2] + (17, 2))
    for h, src in COCO17.items():
        if isinstance(src, int):
            out[..., src, :] = xy[..., h, :]
    head = 0.5 * (xy[..., 9, :] + xy[..., 10, :])
    across = xy[..., 11, :] - xy[..., 14, :]  # right shoulder to left shoulder
    for c, k in ((1, 0.1), (2, -0.1), (3, 0.2), (4, -0.2)):  # left eye, right eye, left ear, right ear
        out[..., c, :] = head + k * across
    return out
