"""Helpers shared by the test modules (fixtures are in conftest.py; both import from here only)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from configs.subvp.synthetic_small import get_config
from lib.model import ScoreModelFC_Adv
from lib.sde import expand_like

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"        # outputs of the paper's own code on a small prior (tests/golden/README.md)
SHARED = ROOT.parent / "shared"            # ../shared: real CMU data and detector statistics, when present
CMU_PACK = SHARED / "data" / "cmu_h36m17.npz"
needs_cmu = pytest.mark.skipif(not CMU_PACK.is_file(), reason=f"real CMU data not found at {CMU_PACK}")


def tiny_config(data_root: Path):
    """The small config shrunk to seconds: hidden 64, 30 steps, a 5-step monitor."""
    config = get_config()
    config.data.root = str(data_root)
    config.model.hidden_dim = 64
    config.model.embed_dim = 32
    config.training.batch_size = 64
    config.training.n_iters = 30
    config.training.max_minutes = 0.0
    config.training.budget_minutes = 0.0
    config.training.log_every = 10
    config.training.eval_every = 15
    config.training.snapshot_every = 10
    config.optim.warmup = 5
    config.monitor.steps = 5
    config.monitor.max_poses = 40
    config.eval.batch_size = 64
    config.sampling.steps = 20
    return config


def run_module(module: str, *args: str, torchrun: int = 0, timeout: int = 300, env: dict | None = None,
               cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python -m module args` (or under torchrun) from the repository root (or cwd)."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **(env or {}))
    cmd = [sys.executable, "-m", module, *args]
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
               "-m", module, *args]
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def run_main(module, argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Run a command line's main in-process, as `python -m` runs it (under `guarded`): exit code, stdout, stderr."""
    from run.common import guarded

    monkeypatch.setattr(sys, "argv", ["python", *argv])
    try:
        guarded(module.main)
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def overrides(config) -> list[str]:
    """--config.x.y=value items that turn the small config into `config` (for sub-process tests)."""
    base = get_config().to_dict()
    out = []
    for section, fields in config.to_dict().items():
        if isinstance(fields, dict):
            out += [f"--config.{section}.{k}={v}" for k, v in fields.items() if base[section][k] != v]
    return out


def config_leaves(node: dict, prefix: str = "") -> dict:
    """{'section.field': value} of a config's to_dict()."""
    out = {}
    for k, v in node.items():
        out |= config_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


class GaussianEps(torch.nn.Module):
    """Exact noise prediction for data N(mu, s^2 I): eps = sigma (x - alpha mu) / (alpha^2 s^2 + sigma^2)."""

    def __init__(self, sde, mu, s):
        super().__init__()
        self.sde, self.mu, self.s = sde, mu, s

    def forward(self, x, t, condition, mask):
        a, sg = expand_like(self.sde.alpha(t), x), expand_like(self.sde.sigma(t), x)
        return sg * (x - a * self.mu) / (a ** 2 * self.s ** 2 + sg ** 2)


MU = torch.linspace(-1.0, 1.0, 51).reshape(17, 3)

# A standing person facing world -Y (Z up): their left is +X. Joints in Human3.6M order, mm.
POSE = np.array([[0, 0, 1000], [-130, 0, 1000], [-130, 0, 550], [-130, 0, 100], [130, 0, 1000], [130, 0, 550],
                 [130, 0, 100], [0, 0, 1230], [0, 0, 1480], [0, -30, 1600], [0, 0, 1720], [170, 0, 1450],
                 [170, 0, 1170], [170, 0, 920], [-170, 0, 1450], [-170, 0, 1170], [-170, 0, 920]], dtype=float)


def random_model(hidden: int = 64, embed: int = 32) -> ScoreModelFC_Adv:
    torch.manual_seed(0)
    return ScoreModelFC_Adv(hidden_dim=hidden, embed_dim=embed).eval()


def cmu_clip(action: str = "walking", frames: int = 60, step: int = 1) -> np.ndarray:
    """World poses [T, 17, 3] (mm, Z up) of the first test clip of an action in the real CMU pack."""
    with np.load(CMU_PACK) as z:
        clip = next(c for c in range(len(z["clip_names"])) if z["action"][c] == action and z["split"][c] == "test")
        return z["poses_3d"][z["clip"] == clip][:frames * step:step].astype(np.float64)


def film(world: np.ndarray, focal: float = 1500.0, size: tuple[int, int] = (1920, 1080), distance: float = 4500.0):
    """A camera 1.5 m high, `distance` from the clip's mean pelvis, looking at it: (camera-frame poses [T, 17, 3],
    pixels [T, 17, 2], intrinsics [4])."""
    from lib.camera import Camera, look_at, project

    target = world[:, 0].mean(0)
    centre = target + np.array([0.0, -distance, 1500.0 - target[2]])
    cam = Camera(rot=look_at(centre, target), centre=centre,
                 intrinsics=np.array([focal, focal, size[0] / 2.0, size[1] / 2.0]))
    pose = cam.world_to_camera(world)
    return pose, project(pose, np.broadcast_to(cam.intrinsics, (len(pose), 4))), cam.intrinsics


class CorrelatedGaussianEps(torch.nn.Module):
    """Exact noise prediction for data N(0, C) with C = I + rho (P + P^T) over the 51 coordinates, P pairing
    coordinate k with k + 25 (k < 25): eps = sigma (alpha^2 C + sigma^2 I)^-1 x. The conditional mean of a hidden
    coordinate k + 25 given its partner k is rho x_k."""

    def __init__(self, sde, rho: float = 0.9):
        super().__init__()
        self.sde = sde
        cov = torch.eye(51, dtype=torch.float64)
        k = torch.arange(25)
        cov[k, k + 25] = cov[k + 25, k] = rho
        self.cov = cov

    def forward(self, x, t, condition, mask):
        t = t.double()[:1].expand(len(x)) if (t == t[0]).all() else t.double()  # a shared time: one inverse
        a, s = self.sde.alpha(t[:1] if t.stride(0) == 0 else t), self.sde.sigma(t[:1] if t.stride(0) == 0 else t)
        prec = torch.linalg.inv(a[:, None, None] ** 2 * self.cov + s[:, None, None] ** 2 * torch.eye(51))  # [B|1, ...]
        eps = s[:, None] * (x.reshape(len(x), 51).double()[:, None] @ prec.transpose(1, 2))[:, 0]
        return eps.reshape(x.shape).to(x.dtype)


# A hand-written BVH with CMU's joint names (and its Z X Y channel order at the shoulders), two frames.
BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT LHipJoint
  {
    OFFSET 0 0 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    JOINT LeftHip
    { OFFSET 2 -1 0
      CHANNELS 3 Zrotation Yrotation Xrotation
      JOINT LeftKnee
      { OFFSET 0 -8 0
        CHANNELS 3 Zrotation Yrotation Xrotation
        JOINT LeftAnkle
        { OFFSET 0 -8 0
          CHANNELS 3 Zrotation Yrotation Xrotation
          End Site
          { OFFSET 0 0 2 }
        }
      }
    }
  }
  JOINT RHipJoint
  {
    OFFSET 0 0 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    JOINT RightHip
    { OFFSET -2 -1 0
      CHANNELS 3 Zrotation Yrotation Xrotation
      JOINT RightKnee
      { OFFSET 0 -8 0
        CHANNELS 3 Zrotation Yrotation Xrotation
        JOINT RightAnkle
        { OFFSET 0 -8 0
          CHANNELS 3 Zrotation Yrotation Xrotation
          End Site
          { OFFSET 0 0 2 }
        }
      }
    }
  }
  JOINT lowerback
  {
    OFFSET 0 0 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    JOINT Chest
    { OFFSET 0 3 0
      CHANNELS 3 Zrotation Yrotation Xrotation
      JOINT Chest2
      { OFFSET 0 2 0
        CHANNELS 3 Zrotation Yrotation Xrotation
        JOINT Head
        { OFFSET 0 3 0
          CHANNELS 3 Zrotation Yrotation Xrotation
          End Site
          { OFFSET 0 2 0 }
        }
        JOINT LeftShoulder
        { OFFSET 3 0 0
          CHANNELS 3 Zrotation Xrotation Yrotation
          JOINT LeftElbow
          { OFFSET 0 -4 0
            CHANNELS 3 Zrotation Xrotation Yrotation
            JOINT LeftWrist
            { OFFSET 0 -3 0
              CHANNELS 3 Zrotation Xrotation Yrotation
              End Site
              { OFFSET 0 -1 0 }
            }
          }
        }
        JOINT RightShoulder
        { OFFSET -3 0 0
          CHANNELS 3 Zrotation Xrotation Yrotation
          JOINT RightElbow
          { OFFSET 0 -4 0
            CHANNELS 3 Zrotation Xrotation Yrotation
            JOINT RightWrist
            { OFFSET 0 -3 0
              CHANNELS 3 Zrotation Xrotation Yrotation
              End Site
              { OFFSET 0 -1 0 }
            }
          }
        }
      }
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.0083333
"""


def cmu_bvh_text() -> str:
    """The BVH above with two frames: at rest, and turned left by 90 degrees with the left arm raised."""
    n_channels = 6 + 3 * 18
    rest = np.zeros(n_channels)
    rest[1] = 17.0  # hips 17 units above the origin
    turned = rest.copy()
    turned[4] = 90.0  # root Yrotation: turn left by 90 degrees about the vertical
    # LeftShoulder channels (Z X Y order) sit after the root (6) and 12 joints x 3: Z = 90, X = 90.
    turned[42], turned[43] = 90.0, 90.0
    return BVH + "\n".join(" ".join(f"{v:g}" for v in row) for row in (rest, turned)) + "\n"
