"""The small CPU model on real CMU mocap (python -m run.prepare_data cmu ... --out data/cmu).

Pose-only data: four virtual cameras per clip, 2D conditions are the projected ground truth.
"""
import ml_collections

from configs.subvp.synthetic_small import get_config as small_config


def get_config() -> ml_collections.ConfigDict:
    config = small_config()
    config.data.root = "data/cmu"
    config.data.train_file = "cmu_train.pkl"
    config.data.test_file = "cmu_test.pkl"
    config.data.det_file = ""
    config.data.use_gt_2d = True
    config.data.flip = True               # one skeleton for all clips: mirrored poses double the variety
    return config
