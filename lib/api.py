"""Python API: load a prior once, then estimate, complete, generate, denoise or query the score.

    from lib.api import PosePrior
    prior = PosePrior.from_checkpoint("checkpoint/demo")          # our runs carry their config
    hyps = prior.estimate(kps_norm, hypotheses=20)               # [N, 20, 17, 3] normalised coordinates
    hyps = prior.estimate(kps_norm, hypotheses=20, fast=True)    # 50 instead of 1000 network evaluations
    one = prior.estimate(kps_norm, pflow=True, fast=True)        # the paper's deterministic sampler, fast form
    mm = prior.estimate(kps_px, camera=(fx, fy, cx, cy), root_depth=depth)   # [N, 1, 17, 3] camera mm

Normalised coordinates are those of docs/design.md, 'Data and coordinate frames' (x, y in [-1, 1] over a 1000 px
image, z relative depth); the network sees them times data.scale. Inputs may be numpy arrays or tensors; the
output has the input's type. Large inputs are sampled in chunks of eval.batch_size rows; bad input raises
ToolkitError (a ValueError) with a one-line message.
"""
from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import NamedTuple

import ml_collections
import numpy as np
import torch

from lib.aggregate import AGGREGATORS, Evidence, aggregate, uncertainty
from lib.builders import build_score_fn, build_sde, frames_of
from lib.camera import box_around_root, image_to_camera, unproject
from lib.checks import MAX_SEED
from lib.config_utils import validate_config
from lib.detnoise import DetectorNoise, detector_noise
from lib.errors import ToolkitError, first_line
from lib.keypoints import keypoints_from
from lib.lift import DEFAULT_POSE_STATS, LiftResult, lift_keypoints
from lib.loader import load_prior
from lib.model import ScoreFn
from lib.refine import refine, warm_start
from lib.resolve import for_task, resolve_sampler
from lib.robust import RobustResult, RobustSettings, robust_condition
from lib.sampling import SamplerConfig
from lib.sharded import check_fits, sample_task
from lib.tasks import Task
from lib.tasks.base import WARM_STARTS
from lib.tasks.completion import fixed_missing
from lib.tasks.den import denoising
from lib.tasks.gen import generation
from lib.tasks.observe import observe_2d, observe_3d

ArrayLike = np.ndarray | torch.Tensor
# Normalised coordinates lie within about +-1 (x, y over the 1000-px training frame; z relative depth); beyond this
# the values are pixels or millimetres passed without a camera
NORMALISED_LIMIT = 10.0


def _int(value, name: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
            high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise ToolkitError(f"{name} must be a whole number {bound}, got {value!r}")
    return int(value)


def _image_size(value) -> tuple[float, float]:
    """(W, H) in pixels: two positive numbers."""
    ok = not isinstance(value, (str, bytes)) and np.ndim(value) == 1 and len(value) == 2 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v) and v > 0 for v in value)
    if not ok:
        raise ToolkitError(f"image_size must be (width, height): two positive numbers of pixels, got {value!r}")
    return float(value[0]), float(value[1])


def _seed(value) -> int:
    """A seed as the command lines take it (config field `seed`): larger ones would repeat smaller ones' draws."""
    return _int(value, "seed", 0, MAX_SEED)


def _time(value, name: str, low: float, closed: bool = False) -> float:
    """A time in (low, 1] (or [low, 1] when closed)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value <= 1.0 and (
        value >= low if closed else value > low)
    if not ok:
        raise ToolkitError(f"{name} must be a number in {'[' if closed else '('}{low:g}, 1], got {value!r}")
    return float(value)


def _check_intrinsics(cam: np.ndarray) -> None:
    """Intrinsics [..., 4] (fx, fy, cx, cy) in pixels: finite, fx, fy > 0, none beyond 1e6."""
    if not (np.isfinite(cam).all() and (cam[..., :2] > 0).all() and (np.abs(cam) <= 1e6).all()):
        raise ToolkitError("camera must be (fx, fy, cx, cy) in pixels: finite, fx, fy > 0, none beyond 1e6")


def _check_depth(depth: np.ndarray) -> None:
    """Root depths in mm: positive and finite."""
    if not (np.isfinite(depth).all() and (depth > 0).all()):
        raise ToolkitError("root_depth must be positive and finite (millimetres from the camera)")


class ToMillimetres(NamedTuple):
    """What maps normalised poses of pixel keypoints back to camera millimetres, per row."""

    cam: torch.Tensor     # [N, 4] fx, fy, cx, cy
    box: torch.Tensor     # [N, 4] the 2 m square around the root, in pixels
    depth: torch.Tensor   # [N] root depth, mm


class PosePrior:
    def __init__(self, model: torch.nn.Module, config: ml_collections.ConfigDict,
                 device: torch.device | str | None = None, pose_stats: dict | None = None,
                 pose_bank: torch.Tensor | None = None, students: dict[int, torch.nn.Module] | None = None):
        """pose_stats: the training skeleton (bone lengths) and cameras that lifting assumes; pose_bank [R, J, 3]:
        normalised training poses for the 'nearest' warm start of completion; students: networks distilled from the
        model by their steps (the 'distilled' sampler). Checkpoints of ours carry them."""
        if not isinstance(model, torch.nn.Module):
            raise ToolkitError(f"model must be a torch.nn.Module (the score network), got {type(model).__name__}; "
                               f"load a checkpoint with PosePrior.from_checkpoint(path)")
        if not isinstance(config, ml_collections.ConfigDict):
            raise ToolkitError(f"config must be an ml_collections.ConfigDict, got {type(config).__name__}")
        validate_config(config)
        self.pose_stats = {**DEFAULT_POSE_STATS, **(pose_stats or {})}  # older checkpoints carry no camera
        self.pose_bank = pose_bank
        try:
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            if self.device.type == "cuda" and not (torch.cuda.is_available() and
                                                   (self.device.index or 0) < torch.cuda.device_count()):
                raise RuntimeError("no such CUDA device here")
            self.model = model.to(self.device).eval()
        except (RuntimeError, AssertionError, TypeError) as e:
            raise ToolkitError(f"device {device!r} cannot be used: {first_line(e)}; use 'cpu' or a CUDA "
                               f"device that exists") from e
        self.students = {k: v.to(self.device).eval() for k, v in (students or {}).items()}
        self.config = config
        self.sde = build_sde(config)
        self.frames = frames_of(config)
        self.num_joints = int(config.data.num_joints)
        self._score_fn: ScoreFn | None = None
        self.progress = False  # show the progress of sampling (run.lift turns it on)
        self._noise: tuple[str, DetectorNoise | None] = ("", None)  # eval.detector_table and its model

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None,
                        config: str | Path | ml_collections.ConfigDict | None = None, best: bool = True,
                        device: torch.device | str | None = None) -> PosePrior:
        """Load from a run folder (best_model.pth, or checkpoint.pth with best=False) or a .pth file; without a path,
        the shipped prior of real motion (lib/resources/cmu_prior).

        Official U3D files carry no config: pass config (e.g. configs/subvp/h36m_ncsnpp_deep_continuous.py).
        """
        if not isinstance(path, (str, Path, type(None))):
            raise ToolkitError(f"path must be a run folder or a .pth file (str or Path), got {type(path).__name__}")
        if config is not None and not isinstance(config, (str, Path, ml_collections.ConfigDict)):
            raise ToolkitError(f"config must be a config file or an ml_collections.ConfigDict, got "
                               f"{type(config).__name__}")
        prior = load_prior(path, best and path is not None, config)
        return cls(prior.model, prior.config, device, prior.pose_stats, prior.pose_bank, prior.students)

    # ------------------------------------------------------------------------------------------ inputs
    def _tensor(self, x: ArrayLike, name: str, last: int, missing: torch.Tensor | None = None,
                normalised: bool = True) -> torch.Tensor:
        """x as float [N, J, last] (or [J, last]) on the CPU; NaN / inf only where `missing` [N, J] says (they become
        0); normalised: the values must lie within NORMALISED_LIMIT (pixels, metres or mm passed as normalised
        coordinates are refused)."""
        if (x.is_complex() if isinstance(x, torch.Tensor) else np.iscomplexobj(x)):
            raise ToolkitError(f"{name} must hold real numbers, got complex ones")
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x)
            t = t.detach().to("cpu", torch.float32)
        except (TypeError, ValueError, RuntimeError, NotImplementedError) as e:
            raise ToolkitError(f"{name} must be an array of numbers in memory ({first_line(e)})") from e
        if t.dim() == 2:
            t = t[None]
        if t.dim() != 3 or t.shape[1] != self.num_joints or t.shape[2] != last:
            raise ToolkitError(f"{name} must have shape [N, {self.num_joints}, {last}] "
                               f"(or [{self.num_joints}, {last}]), got {tuple(t.shape)}")
        if missing is not None:
            if missing.shape[0] != t.shape[0]:
                raise ToolkitError(f"`missing` has {missing.shape[0]} rows but {name} has {t.shape[0]}")
            t = torch.where(missing[..., None], 0.0, t)
        if not torch.isfinite(t).all():
            raise ToolkitError(f"{name} contains NaN or inf; mark unknown joints with `missing` instead")
        if normalised and t.numel() and float(t.abs().max()) > NORMALISED_LIMIT:
            raise ToolkitError(f"{name} holds values up to {float(t.abs().max()):.4g}, but normalised coordinates "
                               f"(docs/design.md, 'Data and coordinate frames') lie within about +-1; for pixels pass "
                               f"camera=(fx, fy, cx, cy) and root_depth")
        return t

    def _rows(self, x: ArrayLike) -> int:
        """The number of poses in an [N, J, C] (or [J, C]) array, before its values are checked."""
        shape = np.shape(x)
        return int(shape[0]) if len(shape) == 3 else 1

    def _missing(self, missing, n: int) -> torch.Tensor:
        """[N, J] bool from joint indices (a list, tuple or integer array) or a boolean array [J] or [N, J]."""
        arr = missing.cpu().numpy() if isinstance(missing, torch.Tensor) else np.asarray(missing)
        if arr.dtype == bool:
            m = torch.from_numpy(arr)
            m = m.expand(n, self.num_joints) if m.dim() == 1 and m.shape[0] == self.num_joints else m
            if tuple(m.shape) != (n, self.num_joints):
                raise ToolkitError(f"a boolean `missing` must have shape [{self.num_joints}] or [N, "
                                   f"{self.num_joints}], got {tuple(arr.shape)}")
            return m.clone()
        if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
            raise ToolkitError(f"missing must be joint indices (whole numbers) or a boolean mask, got {missing!r}")
        joints = [int(j) for j in arr]
        if any(not 0 <= j < self.num_joints for j in joints):
            raise ToolkitError(f"missing joint indices must be in 0..{self.num_joints - 1}, got {joints}")
        return fixed_missing(n, joints, self.num_joints) if joints else torch.zeros(n, self.num_joints, dtype=bool)

    def _completion(self, completion: str | None) -> str:
        return self.config.eval.completion if completion is None else completion

    def _camera(self, kps: torch.Tensor, camera, root_depth) -> ToMillimetres:
        """Per-row intrinsics, box and root depth for pixel keypoints [N, J, 2]."""
        n = kps.shape[0]
        try:
            cam = torch.as_tensor(np.asarray(camera, dtype=np.float64)).reshape(-1, 4).expand(n, 4)
            if root_depth is None:
                raise ToolkitError("with camera=..., give root_depth (mm from the camera to the pelvis) too; "
                                   "without a camera pass normalised keypoints")
            depth = torch.as_tensor(np.asarray(root_depth, dtype=np.float64)).reshape(-1).expand(n)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ToolkitError(f"camera must be (fx, fy, cx, cy) or [N, 4] and root_depth a number or [N] ({e})") from e
        _check_intrinsics(cam.numpy())
        _check_depth(depth.numpy())
        # the root sits at its keypoint at root_depth; the box is the 2 m square around it (docs/design.md,
        # 'Data and coordinate frames')
        root = unproject(kps[:, 0].double(), depth, cam)
        return ToMillimetres(cam, box_around_root(root, cam), depth)

    def _input_2d(self, keypoints, camera, root_depth, missing: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, ToMillimetres | None]:
        """Network-space 2D pose [N, J, 3] (z = 0) and, with a camera, what maps results to millimetres."""
        kps = self._tensor(keypoints, "keypoints", 2, missing, normalised=camera is None)
        mm = None
        if camera is not None:
            mm = self._camera(kps, camera, root_depth)
            kps = self.frames.normalise(kps.double()).float()
        elif root_depth is not None:
            raise ToolkitError("root_depth is only used with camera=(fx, fy, cx, cy) and pixel keypoints")
        return torch.cat([kps, torch.zeros_like(kps[..., :1])], -1) * self.frames.scale, mm

    def _confidence(self, confidence, n: int) -> torch.Tensor | None:
        """[N, J] confidences in [0, 1] of the 2D keypoints (used by the 'reproj' aggregate), or None."""
        if confidence is None:
            return None
        try:
            c = torch.as_tensor(np.asarray(confidence, dtype=np.float32)).reshape(n, self.num_joints)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ToolkitError(f"confidence must be numbers of shape [N, {self.num_joints}] ({e})") from e
        if not (torch.isfinite(c).all() and (c >= 0).all()):
            raise ToolkitError("confidence must be finite and >= 0")
        return c

    def _to_mm(self, pose_norm: torch.Tensor, mm: ToMillimetres) -> torch.Tensor:
        # per row [N]; broadcast over the hypothesis axis of [N, S, J, 3]
        return image_to_camera(self.frames.denormalise(pose_norm.double()), mm.cam, mm.box, mm.depth).float()

    def _detector(self) -> DetectorNoise | None:
        """The error model of eval.detector_table (the 'reproj' aggregate), fitted once."""
        path = self.config.eval.detector_table
        if self._noise[0] != path:
            self._noise = (path, detector_noise(path))
        return self._noise[1]

    # ------------------------------------------------------------------------------------------ sampling
    def score_fn(self) -> ScoreFn:
        """The network's score for sampling (built once; lib/builders.build_score_fn)."""
        if self._score_fn is None:
            self._score_fn = build_score_fn(self.model, self.sde, self.config, self.students)
        return self._score_fn

    def sampler(self, method: str | None = None, steps: int | None = None, fast: bool = False, pflow: bool = False,
                deterministic: bool = False) -> SamplerConfig:
        """The sampler these arguments ask for (lib/resolve.resolve_sampler, as the command lines resolve theirs)."""
        if steps is not None:
            steps = _int(steps, "steps", 1)
        return resolve_sampler(self.config, self.device, fast=bool(fast), pflow=bool(pflow),
                               deterministic=deterministic, given={"method": method, "steps": steps})

    def _finish(self, out: torch.Tensor, task: Task, reduce: str | None, mm: ToMillimetres | None, ref,
                cfg: SamplerConfig, ev: Evidence | None = None) -> ArrayLike | tuple:
        """Hypotheses [N, S, J, 3] (normalised, or mm with a camera) as the input's array type; with `reduce` one
        pose [N, J, 3] and its per-joint uncertainty [N, J] (lib/aggregate.py) instead. ev: the 2D evidence in
        network space; cfg: the sampler that made them (the 'refined' aggregate keeps its precision)."""
        if reduce is None:
            return self._like(out if mm is None else self._to_mm(out, mm), ref)
        if reduce not in AGGREGATORS:
            raise ToolkitError(f"reduce must be one of {', '.join(AGGREGATORS)} or None, got {reduce!r}")
        if out.shape[1] == 1:
            warnings.warn(f"reduce={reduce!r} with one hypothesis: the pose is that hypothesis and its uncertainty "
                          f"is 0; ask for hypotheses > 1 to measure one", stacklevel=3)
        ev = ev or Evidence()
        scale = self.frames.scale
        if reduce == "refined" and out.shape[1] > 1 and len(task):
            e = self.config.eval
            ev.refined = refine(self.score_fn(), self.sde, task, out * scale, e.refine_t, e.refine_steps,
                                e.batch_size, self.device, cfg.bf16) / scale
        if ev.input2d is not None:  # network space -> normalised, as the hypotheses
            ev.input2d = ev.input2d / scale
            ev.sigma = self.config.eval.reproj_sigma / self.frames.image_size * 2.0
        pose = aggregate(out, reduce, ev)
        if mm is not None:
            out, pose = self._to_mm(out, mm), self._to_mm(pose[:, None], mm)[:, 0]
        return self._like(pose, ref), self._like(uncertainty(out), ref)

    def run_task(self, task: Task, hypotheses: int = 1, method: str | None = None, steps: int | None = None,
                 fast: bool = False, pflow: bool = False, seed: int = 0, deterministic: bool = False,
                 warm: str = "none") -> torch.Tensor:
        """Sample any Task (network space, lib/tasks) -> normalised poses [N, S, J, 3], in chunks of
        eval.batch_size rows. deterministic: the task is deterministic by nature (the paper's drift by default);
        warm: a warm start of a completion task (lib/refine.warm_start: none, nearest, mean)."""
        if not isinstance(task, Task):
            raise ToolkitError(f"task must be a lib.tasks.Task (condition, mask, ...), got {type(task).__name__}; "
                               f"build one with lib.tasks (observe_2d, observe_3d, generation, denoising)")
        bad = [f.name for f in fields(task) if isinstance(v := getattr(task, f.name), torch.Tensor)
               and not bool(torch.isfinite(v).all())]
        if bad:
            raise ToolkitError(f"task.{bad[0]} contains NaN or inf; zero the coordinates the mask hides")
        return self._sample(task, self.sampler(method, steps, fast, pflow, deterministic), hypotheses, seed, warm)

    def _sample(self, task: Task, cfg: SamplerConfig, hypotheses: int, seed: int, warm: str = "none"
                ) -> torch.Tensor:
        """A checked task sampled with a resolved sampler -> normalised poses [N, S, J, 3]."""
        hypotheses, seed = _int(hypotheses, "hypotheses", 1), _seed(seed)
        if warm not in WARM_STARTS:
            raise ToolkitError(f"warm_start must be one of {', '.join(WARM_STARTS)}, got {warm!r}")
        if len(task) == 0:
            return torch.zeros(0, hypotheses, self.num_joints, 3)
        check_fits(len(task), hypotheses, self.device)
        cfg = for_task(cfg, task.observed is not None, self.config)
        e, score_fn = self.config.eval, self.score_fn()
        bank = None if self.pose_bank is None else self.pose_bank.float().to(self.device) * self.frames.scale
        task, _ = warm_start(score_fn, self.sde, task.to(self.device), warm, e.warm_t, bank, e.warm_hypotheses,
                             e.refine_steps, e.batch_size, self.device, cfg.bf16)
        out, _, _ = sample_task(score_fn, self.sde, task, cfg, hypotheses, e.batch_size, seed, self.device,
                                progress=self.progress)
        return out / self.frames.scale

    @staticmethod
    def _like(out: torch.Tensor, ref) -> ArrayLike:
        return out if isinstance(ref, torch.Tensor) else out.numpy()

    # -------------------------------------------------------------------------------------------- tasks
    def estimate(self, keypoints: ArrayLike, hypotheses: int = 1, camera: Sequence[float] | None = None,
                 root_depth: ArrayLike | float | None = None, method: str | None = None, steps: int | None = None,
                 fast: bool = False, pflow: bool = False, seed: int = 0, reduce: str | None = None,
                 confidence: ArrayLike | None = None) -> ArrayLike | tuple:
        """3D poses [N, S, J, 3] from 2D keypoints [N, J, 2] (normalised, or pixels with camera and root_depth);
        with reduce (lib/aggregate.py: 'refined', 'reproj', 'median', 'mean', 'jpma') one pose [N, J, 3] and its
        uncertainty [N, J]; confidence [N, J] of the keypoints weighs them in 'reproj'."""
        return self.complete_2d(keypoints, np.zeros(self.num_joints, bool), hypotheses, camera, root_depth, method,
                                steps, fast, pflow, seed, reduce, "condition-only", confidence, "none")

    def complete_2d(self, keypoints: ArrayLike, missing, hypotheses: int = 1, camera: Sequence[float] | None = None,
                    root_depth: ArrayLike | float | None = None, method: str | None = None, steps: int | None = None,
                    fast: bool = False, pflow: bool = False, seed: int = 0, reduce: str | None = None,
                    completion: str | None = None, confidence: ArrayLike | None = None,
                    warm_start: str | None = None) -> ArrayLike | tuple:
        """3D poses [N, S, J, 3] from 2D keypoints of which the joints `missing` are unknown (their values, NaN
        or not, are ignored); reduce and confidence as estimate; completion (lib/tasks/observe.py) 'condition',
        'impute' or 'condition-only' (default eval.completion, README 'Completion'). est is this with no joint
        missing and 'condition-only': one code path for hidden, low-confidence and absent joints."""
        miss = self._missing(missing, self._rows(keypoints))
        cond, mm = self._input_2d(keypoints, camera, root_depth, miss)
        task = observe_2d(cond, ~miss, self._completion(completion))
        ev = Evidence(cond[..., :2], ~miss, self._confidence(confidence, cond.shape[0]), noise=self._detector(),
                      temper=self.config.eval.reproj_temper)
        cfg = self.sampler(method, steps, fast, pflow)
        out = self._sample(task, cfg, hypotheses, seed, self._warm(warm_start, miss))
        return self._finish(out, task, reduce, mm, keypoints, cfg, ev)

    def robust_2d(self, keypoints: ArrayLike, missing, confidence: ArrayLike | None = None, seed: int = 0
                  ) -> RobustResult:
        """Robust conditioning (lib/robust.py, the config's `robust` section) of normalised 2D keypoints [N, J, 2]
        whose joints `missing` are not given: left / right swaps undone, keypoints the prior does not believe made
        missing, implausible people flagged. Each pass is the deterministic fast sampler. The result is in network
        space (divide by frames.scale for normalised coordinates)."""
        settings = RobustSettings.from_config(self.config)
        if settings is None:
            raise ToolkitError("robust conditioning is off in this prior's config: set config.robust.mode = 'on', or "
                               "give the detector's table (config.eval.detector_table)")
        miss = self._missing(missing, self._rows(keypoints))
        cond, _ = self._input_2d(keypoints, None, None, miss)
        conf = self._confidence(confidence, cond.shape[0])

        def lift(c: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
            return self.run_task(observe_2d(c, seen), 1, fast=True, pflow=True, seed=seed)[:, 0] * self.frames.scale

        return robust_condition(lift, cond, ~miss, conf, settings)

    def complete_3d(self, pose: ArrayLike, missing, hypotheses: int = 1, method: str | None = None,
                    steps: int | None = None, fast: bool = False, pflow: bool = False, seed: int = 0,
                    reduce: str | None = None, completion: str | None = None, warm_start: str | None = None
                    ) -> ArrayLike | tuple:
        """Fill in missing joints of normalised 3D poses [N, J, 3] -> [N, S, J, 3]; observed joints are kept;
        reduce, completion and warm_start as complete_2d."""
        miss = self._missing(missing, self._rows(pose))
        p = self._tensor(pose, "pose", 3, miss)
        task = observe_3d(p * self.frames.scale, miss, self._completion(completion))
        cfg = self.sampler(method, steps, fast, pflow)
        out = self._sample(task, cfg, hypotheses, seed, self._warm(warm_start, miss))
        return self._finish(out, task, reduce, None, pose, cfg)

    def _warm(self, warm_start: str | None, missing: torch.Tensor) -> str:
        """The warm start to use: the argument, else eval.warm_start; none when nothing is missing."""
        how = self.config.eval.warm_start if warm_start is None else warm_start
        return how if bool(missing.any()) else "none"

    def generate(self, n: int, method: str | None = None, steps: int | None = None, fast: bool = False,
                 pflow: bool = False, seed: int = 0) -> np.ndarray:
        """n new normalised poses [n, J, 3]."""
        check_fits(_int(n, "n"), 1, self.device)
        task = generation(n, self.num_joints)
        return self.run_task(task, 1, method, steps, fast, pflow, seed)[:, 0].numpy()

    def denoise(self, pose: ArrayLike, t: float = 0.05, method: str | None = None, steps: int | None = None,
                fast: bool = False, seed: int = 0) -> ArrayLike:
        """Denoise normalised 3D poses [N, J, 3] by running the deterministic reverse process from time t
        (the paper's: 1000 steps of 1/N; fast=True: the drift integrated from t to eps)."""
        t = _time(t, "t", self.config.sampling.eps)
        p = self._tensor(pose, "pose", 3)
        out = self.run_task(denoising(p * self.frames.scale, t), 1, method, steps, fast, seed=seed, deterministic=True)
        return self._like(out[:, 0], pose)

    def lift(self, keypoints, format: str = "h36m", image_size: tuple[float, float] | None = None,  # noqa: A002
             camera: Sequence[float] | None = None, fast: bool = True, seed: int = 0,
             root_depth: ArrayLike | float | None = None) -> LiftResult:
        """Keypoints of any 2D detector -> 3D poses in camera millimetres (lib/lift.py): a file of `format`
        (lib/keypoints.py: coco, openpose, h36m, sh), or an array [T, K, 2 or 3] / [T, P, K, 2 or 3] in that
        format's joint order. The camera is optional (default intrinsics from image_size); the root depth (mm, a
        number, [T] or [T, P]) is estimated from bone lengths unless given."""
        if image_size is not None:
            image_size = _image_size(image_size)
        kps = keypoints_from(keypoints, format)
        cam = None
        if camera is not None:
            try:
                cam = np.asarray(camera, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError) as e:
                raise ToolkitError(f"camera must be (fx, fy, cx, cy) numbers ({e})") from e
            if cam.shape != (4,):
                raise ToolkitError(f"camera must be (fx, fy, cx, cy): 4 numbers, got {cam.size}")
            _check_intrinsics(cam)
        depth = None
        if root_depth is not None:
            t, p = kps.valid.shape
            try:
                depth = np.asarray(root_depth, dtype=np.float64)
                depth = np.broadcast_to(depth.reshape(t, 1) if depth.ndim == 1 else depth, (t, p))
            except (TypeError, ValueError) as e:
                raise ToolkitError(f"root_depth must be a number, [T] or [T, P] millimetres ({e})") from e
            _check_depth(depth)
        return lift_keypoints(self, kps, cam, image_size, self.pose_stats, fast, _seed(seed), depth)

    @torch.inference_mode()
    def score(self, pose: ArrayLike, t: float, condition: ArrayLike | None = None,
              mask: ArrayLike | None = None) -> ArrayLike:
        """Score grad log p_t(x | condition) in network space for normalised poses [N, J, 3], t in
        [training.eps, 1] (the times the network was trained on)."""
        t = _time(t, "t", self.config.training.eps, closed=True)
        x = self._tensor(pose, "pose", 3) * self.frames.scale
        cond = torch.zeros_like(x) if condition is None else self._tensor(condition, "condition", 3) * self.frames.scale
        m = None if mask is None else self._tensor(mask, "mask", 3)
        for name, v in (("condition", cond), ("mask", m)):
            if v is not None and v.shape[0] not in (x.shape[0], 1):
                raise ToolkitError(f"{name} has {v.shape[0]} rows but pose has {x.shape[0]}; give one per pose or one")
        cond = cond.expand_as(x)
        m = None if m is None else m.expand_as(x)
        if m is not None and not ((m == 0) | (m == 1)).all():
            raise ToolkitError("mask must hold 0 and 1 only")
        if len(x) == 0:
            return self._like(torch.zeros(0, self.num_joints, 3), pose)
        tt = torch.full((x.shape[0],), t)
        s = self.score_fn()(x.to(self.device), tt.to(self.device), cond.to(self.device),
                                  None if m is None else m.to(self.device))
        return self._like(s.cpu(), pose)

