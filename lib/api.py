"""Python API: load a prior once, then estimate, complete, generate, denoise or query the score.

    from lib.api import PosePrior
    prior = PosePrior.from_checkpoint("checkpoint/demo")          # our runs carry their config
    hyps = prior.estimate(kps_norm, hypotheses=20)               # [N, 20, 17, 3] normalised coordinates
    mm = prior.estimate(kps_px, camera=(fx, fy, cx, cy), root_depth=depth)   # [N, 1, 17, 3] camera mm

Normalised coordinates are those of DESIGN.md section 3 (x, y in [-1, 1] over a 1000 px image, z
relative depth); the network sees them times data.scale. Inputs may be numpy arrays or tensors; the
output has the input's type.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ml_collections
import numpy as np
import torch

from lib import tasks as T
from lib.builders import build_sampler_config, build_score_fn, build_sde, checkpoint_path, load_model
from lib.config_utils import load_config
from lib.data import denormalize, image_to_camera, normalize
from lib.errors import ToolkitError
from lib.model import ScoreFn
from lib.sampling import sample
from lib.tasks import Task

ArrayLike = np.ndarray | torch.Tensor


class PosePrior:
    def __init__(self, model: torch.nn.Module, config: ml_collections.ConfigDict,
                 device: torch.device | str | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.config = config
        self.sde = build_sde(config)
        self.score_fn = build_score_fn(self.model, self.sde, config)
        self.scale, self.image_size = float(config.data.scale), float(config.data.image_size)
        self.num_joints = int(config.data.num_joints)

    @classmethod
    def from_checkpoint(cls, path: str | Path, config: str | Path | ml_collections.ConfigDict | None = None,
                        best: bool = True, device: torch.device | str | None = None) -> PosePrior:
        """Load from a run folder (best_model.pth, or checkpoint.pth with best=False) or a .pth file.

        Official U3D files carry no config: pass config (e.g. configs/subvp/h36m_ncsnpp_deep_continuous.py).
        """
        path = Path(path)
        file = checkpoint_path(path, best) if path.is_dir() else path
        if isinstance(config, (str, Path)):
            config = load_config(config)
        model, config = load_model(file, config)
        return cls(model, config, device)

    # ------------------------------------------------------------------------------------------ helpers
    def _tensor(self, x: ArrayLike, name: str, last: int) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
        if t.dim() == 2:
            t = t[None]
        if t.dim() != 3 or t.shape[1] != self.num_joints or t.shape[2] != last:
            raise ToolkitError(f"{name} must have shape [N, {self.num_joints}, {last}] "
                               f"(or [{self.num_joints}, {last}]), got {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise ToolkitError(f"{name} contains NaN or inf; mark unknown joints with `missing` instead")
        return t

    def _missing(self, missing: ArrayLike | Sequence[int], n: int) -> torch.Tensor:
        """[N, J] bool from a list of joint indices or a boolean array."""
        if isinstance(missing, (list, tuple)):
            if any(not 0 <= j < self.num_joints for j in missing):
                raise ToolkitError(f"missing joint indices must be in 0..{self.num_joints - 1}, got {list(missing)}")
            return T.fixed_missing(n, list(missing), self.num_joints)
        m = torch.as_tensor(np.asarray(missing) if not isinstance(missing, torch.Tensor) else missing).bool()
        m = m.expand(n, self.num_joints) if m.dim() == 1 else m
        if m.shape != (n, self.num_joints):
            raise ToolkitError(f"missing must be a joint list or a bool array [N, {self.num_joints}], "
                               f"got shape {tuple(m.shape)}")
        return m

    def _camera_to_norm(self, kps: torch.Tensor, camera, root_depth) -> tuple[torch.Tensor, tuple]:
        """Pixels -> normalised; also returns what is needed to map results back to millimetres."""
        n = kps.shape[0]
        cam = torch.as_tensor(np.asarray(camera, dtype=np.float64)).reshape(-1, 4).expand(n, 4)
        depth = torch.as_tensor(np.asarray(root_depth, dtype=np.float64)).reshape(-1).expand(n)
        if (depth <= 0).any():
            raise ToolkitError("root_depth must be positive (millimetres from the camera)")
        # box = projection of a 2 m square around the pelvis at its depth (DESIGN.md section 3)
        half = torch.stack([cam[:, 0], cam[:, 1]], -1) * 1000.0 / depth[:, None]  # [N, 2]
        root = kps[:, 0, :2].double()
        box = torch.cat([root - half, root + half], -1)
        pix = torch.cat([kps.double(), torch.zeros_like(kps[..., :1]).double()], -1)[..., :3]
        return normalize(pix, self.image_size).float(), (cam, box, depth)

    def _to_mm(self, pose_norm: torch.Tensor, back: tuple) -> torch.Tensor:
        cam, box, depth = back  # per row [N]; broadcast over the hypothesis axis of [N, S, J, 3]
        return image_to_camera(denormalize(pose_norm.double(), self.image_size), cam, box, depth).float()

    def _run(self, task: Task, hypotheses: int, method: str | None, steps: int | None, seed: int
             ) -> torch.Tensor:
        """Sample [N, S, J, 3] normalised poses for a network-space task."""
        if hypotheses < 1:
            raise ToolkitError(f"hypotheses must be >= 1, got {hypotheses}")
        cfg = build_sampler_config(self.config, self.sde, method=method, steps=steps)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        x, _ = sample(self.score_fn, self.sde, task.repeat(hypotheses).to(self.device), cfg, gen)
        return x.reshape(len(task), hypotheses, self.num_joints, 3).cpu() / self.scale

    @staticmethod
    def _like(out: torch.Tensor, ref: ArrayLike) -> ArrayLike:
        return out if isinstance(ref, torch.Tensor) else out.numpy()

    def _input_2d(self, keypoints, camera, root_depth):
        kps = self._tensor(keypoints, "keypoints", 2)
        if camera is None:
            pose = torch.cat([kps, torch.zeros_like(kps[..., :1])], -1)
            return pose, None
        return self._camera_to_norm(kps, camera, root_depth)

    # -------------------------------------------------------------------------------------------- tasks
    def estimate(self, keypoints: ArrayLike, hypotheses: int = 1, camera: Sequence[float] | None = None,
                 root_depth: ArrayLike | float | None = None, method: str | None = None,
                 steps: int | None = None, seed: int = 0) -> ArrayLike:
        """3D poses [N, S, J, 3] from 2D keypoints [N, J, 2] (normalised, or pixels with camera and root_depth)."""
        pose, back = self._input_2d(keypoints, camera, root_depth)
        out = self._run(T.estimation(pose * self.scale), hypotheses, method, steps, seed)
        return self._like(out if back is None else self._to_mm(out, back), keypoints)

    def complete_2d(self, keypoints: ArrayLike, missing: ArrayLike | Sequence[int], hypotheses: int = 1,
                    camera: Sequence[float] | None = None, root_depth: ArrayLike | float | None = None,
                    method: str | None = None, steps: int | None = None, seed: int = 0) -> ArrayLike:
        """3D poses [N, S, J, 3] from 2D keypoints with missing joints (their values are ignored)."""
        pose, back = self._input_2d(keypoints, camera, root_depth)
        miss = self._missing(missing, pose.shape[0])
        out = self._run(T.completion_2d(pose * self.scale, miss), hypotheses, method, steps, seed)
        return self._like(out if back is None else self._to_mm(out, back), keypoints)

    def complete_3d(self, pose: ArrayLike, missing: ArrayLike | Sequence[int], hypotheses: int = 1,
                    method: str | None = None, steps: int | None = None, seed: int = 0) -> ArrayLike:
        """Fill in missing joints of normalised 3D poses [N, J, 3] -> [N, S, J, 3]; observed joints are kept."""
        p = self._tensor(pose, "pose", 3)
        miss = self._missing(missing, p.shape[0])
        out = self._run(T.completion_3d(p * self.scale, miss), hypotheses, method, steps, seed)
        return self._like(out, pose)

    def generate(self, n: int, method: str | None = None, steps: int | None = None, seed: int = 0) -> np.ndarray:
        """n new normalised poses [n, J, 3]."""
        if n < 1:
            raise ToolkitError(f"n must be >= 1, got {n}")
        return self._run(T.generation(n, self.num_joints), 1, method, steps, seed)[:, 0].numpy()

    def denoise(self, pose: ArrayLike, t: float = 0.05, method: str | None = None, steps: int | None = None,
                seed: int = 0) -> ArrayLike:
        """Denoise normalised 3D poses [N, J, 3] by running the reverse process from time t."""
        if not 0.0 < t <= 1.0:
            raise ToolkitError(f"t must be in (0, 1], got {t}")
        p = self._tensor(pose, "pose", 3)
        out = self._run(T.denoising(p * self.scale, t), 1, method, steps, seed)[:, 0]
        return self._like(out, pose)

    @torch.inference_mode()
    def score(self, pose: ArrayLike, t: float | ArrayLike, condition: ArrayLike | None = None,
              mask: ArrayLike | None = None) -> ArrayLike:
        """Score grad log p_t(x | condition) in network space for normalised poses [N, J, 3]."""
        x = self._tensor(pose, "pose", 3) * self.scale
        tt = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(x.shape[0])
        cond = torch.zeros_like(x) if condition is None else self._tensor(condition, "condition", 3) * self.scale
        m = None if mask is None else torch.as_tensor(np.asarray(mask)).float().expand_as(x).to(self.device)
        s = ScoreFn(self.model, self.sde)(x.to(self.device), tt.to(self.device), cond.to(self.device), m)
        return self._like(s.cpu(), pose)
