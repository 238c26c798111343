"""The small CPU model on real CMU mocap (python -m run.prepare_data cmu ... --out data/cmu).

Pose-only data: four virtual cameras per clip, 2D conditions are the projected ground truth.
"""
import ml_collections

from configs.subvp.cmu_u3d import cmu_data
from configs.subvp.synthetic_small import get_config as small_config


def get_config() -> ml_collections.ConfigDict:
    return cmu_data(small_config())
