"""How a 2D detector errs: a per-joint error table, a noise model drawn from it, and the table fitted from data.

The table (JSON; ../shared's Stacked Hourglass statistics have this layout, `fit_table` writes it):
  pose_size_px_median    median 2D pose size of the rows it was measured on (max of the joints' box width, height)
  joints[j]              bias_px [2], std_px [2], error_px_quantiles {"50", "90", "99"} of the error's norm,
                         share_over_30px, share_over_60px, and (optional) missing_share: rows without the joint
  left_right_swaps       [{"pair": [name, name], "share"}]: rows where the detector swapped the two
  error_correlation_xy_flat   [34, 34] correlation of the error coordinates (x0, y0, x1, y1, ...)

The model (docs/design.md, 'Detector noise'): the error of joint j is bias_j + A_j s_j z, scaled by the row's pose
size over the table's. z is a Gaussian correlated over all 34 coordinates (the table's correlation); A_j the
table's x / y spread ratio; s_j = c_j for a hit and r_j c_j for an outlier, which happens with probability o_j (a
heavy tail). c_j, o_j and r_j are fitted so that the error norm's 50 / 90 / 99 % quantiles (with the bias) are the
table's. Then left and right are swapped at the table's rates and joints dropped at their missing share.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lib.errors import ToolkitError
from lib.skeleton import LEFT_JOINTS, RIGHT_JOINTS

OUTLIER_SHARES = (0.0, 0.003, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3)   # o_j tried
OUTLIER_RATIOS = (2.0, 3.0, 5.0, 8.0, 12.0, 20.0)                           # r_j tried
TABLE_NAMES = ("pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine", "thorax", "neck_nose",
               "head_top", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist")  # Human3.6M order
_INDEX = {name: j for j, name in enumerate(TABLE_NAMES)}


def pose_size(xy: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """2D pose size [...]: the larger side of the box around the joints [..., J, 2]."""
    return (xy.max(-2).values - xy.min(-2).values).max(-1).values if isinstance(xy, torch.Tensor) else \
        (xy.max(-2) - xy.min(-2)).max(-1)


def given_size(xy: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """The pose size [N] of the given joints only (xy [N, J, 2], seen [N, J] bool; a joint not given may sit
    anywhere): the larger side of their box, at least 1e-6 (one joint or none gives no size)."""
    high = torch.where(seen[..., None], xy, -torch.inf).max(1).values
    low = torch.where(seen[..., None], xy, torch.inf).min(1).values
    return torch.nan_to_num((high - low).max(-1).values, posinf=0.0, neginf=0.0).clamp_min(1e-6)


def load_table(path: str | Path) -> dict:
    """Read and check an error table (module docstring); one line names what is wrong."""
    path = Path(path)
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ToolkitError(f"detector error table {path}: cannot read it as JSON ({e})") from e
    try:
        joints = table["joints"]
        assert len(joints) == len(TABLE_NAMES) and float(table["pose_size_px_median"]) > 0
        for j in joints:
            assert len(j["bias_px"]) == 2 and all(float(v) >= 0 for v in j["std_px"])
            q = j["error_px_quantiles"]
            assert 0 <= float(q["50"]) <= float(q["90"]) <= float(q["99"])
        for s in table.get("left_right_swaps", []):
            assert s["pair"][0] in _INDEX and s["pair"][1] in _INDEX and 0 <= float(s["share"]) <= 1
        corr = np.asarray(table.get("error_correlation_xy_flat", np.eye(34)), dtype=np.float64)
        assert corr.shape == (34, 34) and np.isfinite(corr).all()
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        raise ToolkitError(f"detector error table {path}: expected 17 joints with bias_px, std_px, "
                           f"error_px_quantiles 50 <= 90 <= 99, a positive pose_size_px_median, known swap pairs and "
                           f"a 34 x 34 correlation (see python -m run.prepare_data detector-errors)") from e
    return table


def _fit_joint(bias: np.ndarray, aniso: np.ndarray, q: dict, z: np.ndarray, u: np.ndarray
               ) -> tuple[float, float, float]:
    """(c, o, r): for every outlier share o and ratio r at once, the core scale c whose error norm |bias + A s z| has
    the median q['50'] (bisection), and of those the (o, r) whose 90 / 99 % quantiles are nearest q's (log scale).
    z [K, 2] normal, u [K] uniform draws."""
    combos = np.array([(0.0, 1.0)] + [(o, r) for o in OUTLIER_SHARES[1:] for r in OUTLIER_RATIOS])  # [C, 2]
    wide = np.where(u[None] < combos[:, :1], combos[:, 1:], 1.0)  # [C, K]
    t = z[None] * aniso * wide[..., None]  # [C, K, 2]
    lo, hi = np.full(len(combos), 1e-3), np.full(len(combos), 1e3)
    for _ in range(20):  # the median grows with c (the bracket shrinks to a factor 1.00001)
        c = np.sqrt(lo * hi)
        below = np.median(np.linalg.norm(bias + c[:, None, None] * t, axis=-1), axis=1) < q["50"]
        lo, hi = np.where(below, c, lo), np.where(below, hi, c)
    norm = np.linalg.norm(bias + c[:, None, None] * t, axis=-1)  # [C, K]
    loss = sum(np.log(np.maximum(np.quantile(norm, p / 100, axis=1), 1e-9) / max(float(q[str(p)]), 1e-9)) ** 2
               for p in (90, 99))
    best = int(np.argmin(loss))
    return float(c[best]), float(combos[best, 0]), float(combos[best, 1])


@dataclass
class DetectorNoise:
    """The fitted model, in units of the pose size (module docstring)."""

    bias: torch.Tensor        # [J, 2] relative to the pose size
    scale: torch.Tensor       # [J, 2] c_j A_j relative to the pose size
    outlier: torch.Tensor     # [J] o_j, the share of outliers
    ratio: torch.Tensor       # [J] r_j, how much wider an outlier's error is
    root: torch.Tensor        # [34, 34] a square root of the correlation
    swaps: list[tuple[int, int, float]]
    missing: torch.Tensor     # [J] share of rows without the joint

    @classmethod
    def from_table(cls, table: dict, tail: float = 1.0, samples: int = 4000, seed: int = 0) -> DetectorNoise:
        """Fit c_j, o_j, r_j to the table's quantiles (a fixed Monte-Carlo sample, so the fit is reproducible).
        tail > 1 makes the tail heavier than the table's: tail times as many outliers (at most half the rows)."""
        size = float(table["pose_size_px_median"])
        corr = np.asarray(table.get("error_correlation_xy_flat", np.eye(34)), dtype=np.float64)
        rng = np.random.default_rng(seed)
        bias, scale, outlier, ratio = [], [], [], []
        for j, stats in enumerate(table["joints"]):
            block = corr[2 * j:2 * j + 2, 2 * j:2 * j + 2] + 1e-6 * np.eye(2)
            z = rng.standard_normal((samples, 2)) @ np.linalg.cholesky(block).T
            std = np.maximum(np.asarray(stats["std_px"], dtype=np.float64), 1e-6)
            aniso = std / np.sqrt((std ** 2).mean())
            b = np.asarray(stats["bias_px"], dtype=np.float64)
            c, o, r = _fit_joint(b, aniso, stats["error_px_quantiles"], z, rng.random(samples))
            bias.append(b / size)
            scale.append(c * aniso / size)
            outlier.append(min(o * tail, 0.5))
            ratio.append(r)
        w, v = np.linalg.eigh(0.5 * (corr + corr.T))  # a square root of the correlation, made positive definite
        swaps = [(_INDEX[s["pair"][0]], _INDEX[s["pair"][1]], float(s["share"]))
                 for s in table.get("left_right_swaps", [])]
        missing = [float(j.get("missing_share", 0.0)) for j in table["joints"]]
        as_t = lambda a: torch.tensor(np.asarray(a, dtype=np.float64)).float()  # noqa: E731
        return cls(as_t(bias), as_t(scale), as_t(outlier), as_t(ratio), as_t(v * np.sqrt(np.clip(w, 1e-6, None))),
                   swaps, as_t(missing))

    def errors(self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
               ) -> torch.Tensor:
        """Relative errors [n, J, 2] (multiply by the pose size)."""
        z = (torch.randn(n, 34, generator=generator, device=device) @ self.root.to(device).T).reshape(n, 17, 2)
        out = torch.rand(n, 17, generator=generator, device=device) < self.outlier.to(device)
        wide = torch.where(out, self.ratio.to(device), 1.0)[..., None]
        return self.bias.to(device) + self.scale.to(device) * wide * z

    def apply(self, xy: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Detector-like 2D for clean joints xy [B, J, 2] (any units): (noisy [B, J, 2], dropped [B, J] bool)."""
        b, dev = xy.shape[0], xy.device
        noisy = xy + self.errors(b, generator, dev) * pose_size(xy)[:, None, None]
        for a, c, share in self.swaps:
            swap = (torch.rand(b, generator=generator, device=dev) < share)[:, None]
            noisy[:, a], noisy[:, c] = torch.where(swap, noisy[:, c], noisy[:, a]), torch.where(swap, noisy[:, a],
                                                                                                noisy[:, c])
        dropped = torch.rand(b, 17, generator=generator, device=dev) < self.missing.to(dev)
        return noisy, dropped


def detector_noise(path: str) -> DetectorNoise | None:
    """The error model of a table file (eval.detector_table), None for ""."""
    return DetectorNoise.from_table(load_table(path)) if path else None


def fit_table(gt: np.ndarray, det: np.ndarray, conf: np.ndarray, what: str) -> dict:
    """The error table of detections det [N, J, 2] (confidence conf [N, J], 0 = not given) against ground truth
    gt [N, J, 2], both pixels, in the layout of the module docstring."""
    given = (conf > 0) & np.isfinite(det).all(-1)
    err = np.where(given[..., None], det - gt, np.nan)  # [N, J, 2]
    norm = np.linalg.norm(err, axis=-1)
    size = pose_size(gt)
    joints = []
    for j, name in enumerate(TABLE_NAMES):
        e, r = err[given[:, j], j], norm[given[:, j], j]
        if len(e) == 0:
            raise ToolkitError(f"no row gives joint {name}: cannot fit its error")
        joints.append({"index": j, "name": name, "bias_px": np.round(e.mean(0), 3).tolist(),
                       "std_px": np.round(e.std(0), 3).tolist(),
                       "error_px_quantiles": {str(q): round(float(np.quantile(r, q / 100)), 3) for q in (50, 90, 99)},
                       "error_over_pose_size_median": round(float(np.median(r / size[given[:, j]])), 4),
                       "share_over_30px": round(float((r > 30).mean()), 4),
                       "share_over_60px": round(float((r > 60).mean()), 4),
                       "missing_share": round(float(1.0 - given[:, j].mean()), 4)})
    swaps = []
    for lj, rj in zip(LEFT_JOINTS, RIGHT_JOINTS, strict=True):
        both = given[:, lj] & given[:, rj]
        crossed = (np.linalg.norm(det[:, lj] - gt[:, rj], axis=-1) < np.linalg.norm(det[:, lj] - gt[:, lj], axis=-1)) \
            & (np.linalg.norm(det[:, rj] - gt[:, lj], axis=-1) < np.linalg.norm(det[:, rj] - gt[:, rj], axis=-1))
        swaps.append({"pair": [TABLE_NAMES[lj], TABLE_NAMES[rj]],
                      "share": round(float((crossed & both).sum() / max(both.sum(), 1)), 4)})
    full = given.all(1)
    flat = err[full].reshape(-1, 34)
    corr = np.corrcoef(flat, rowvar=False) if len(flat) > 2 else np.eye(34)
    return {"what": what, "rows": int(len(gt)), "pose_size_px_median": round(float(np.median(size)), 2),
            "mean_error_px": round(float(np.nanmean(norm)), 3), "median_error_px": round(float(np.nanmedian(norm)), 3),
            "joints": joints, "left_right_swaps": swaps,
            "error_correlation_xy_flat": np.round(np.nan_to_num(corr), 3).tolist()}


@dataclass
class SequenceFailures:
    """How a detector fails by whole stretches of a video, not by frames (on top of the per-frame errors):
    a share of the sequences is offset in time by 1 to max_offset frames (the detections of another frame: a
    synchronisation error), and runs of run_length frames, covering about run_share of all frames, have their
    errors run_scale times larger (a detector that has lost the person or a limb). Confidences stay as the
    per-frame model made them: a failing detector is often sure of itself."""

    offset_share: float = 0.0
    max_offset: int = 5
    run_share: float = 0.0
    run_length: int = 25
    run_scale: float = 4.0

    def apply(self, gt: np.ndarray, noisy: np.ndarray, sequence: np.ndarray, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
        """Detections [N, J, 2] with the failures, and [N] bool: the rows they touched. gt, noisy [N, J, 2];
        sequence [N] ids, each sequence's rows consecutive and in time order."""
        out, touched = noisy.copy(), np.zeros(len(gt), bool)
        starts = np.flatnonzero(np.r_[True, sequence[1:] != sequence[:-1]])
        ends = np.r_[starts[1:], len(gt)]
        for a, b in zip(starts, ends, strict=True):
            if rng.random() < self.offset_share and b - a > 1:  # the whole sequence k frames late or early
                k = int(rng.integers(1, self.max_offset + 1)) * (1 if rng.random() < 0.5 else -1)
                src = np.clip(np.arange(a, b) + k, a, b - 1)
                out[a:b] = noisy[src]  # the detections of frame t + k
                touched[a:b] = True
            n_runs = rng.poisson(self.run_share * (b - a) / self.run_length) if self.run_share > 0 else 0
            for _ in range(n_runs):  # runs of heavy error
                r0 = int(rng.integers(a, b))
                r1 = min(b, r0 + self.run_length)
                out[r0:r1] = gt[r0:r1] + self.run_scale * (out[r0:r1] - gt[r0:r1])
                touched[r0:r1] = True
        return out, touched


def simulate(gt: np.ndarray, noise: DetectorNoise, seed: int, unused: np.ndarray,
             failures: SequenceFailures | None = None, sequence: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Detections [N, J, 2] and confidences [N, J] for clean 2D gt [N, J, 2] (pixels): the model's errors, and a
    confidence that falls with the error relative to the pose size, blurred (1 - rel / 0.25 + N(0, 0.15), clipped
    to [0.02, 1]; real detectors' confidences track their errors loosely too). Dropped joints and the joints the
    detector does not give (`unused` [J] bool) get confidence 0. With `failures` and the rows' sequence ids [N],
    the sequence-level failures of SequenceFailures follow."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.from_numpy(gt).double()
    noisy, dropped = noise.apply(xy.float(), g)
    noisy = noisy.double()
    rel = (noisy - xy).norm(dim=-1) / pose_size(xy)[:, None]
    conf = (1.0 - rel / 0.25 + 0.15 * torch.randn(rel.shape, generator=g, dtype=torch.float64)).clamp(0.02, 1.0)
    conf = torch.where(dropped | torch.from_numpy(unused)[None], 0.0, conf)
    out = noisy.numpy()
    if failures is not None and sequence is not None:
        out, _ = failures.apply(gt, out, sequence, np.random.default_rng(seed))
    return out, conf.numpy()
