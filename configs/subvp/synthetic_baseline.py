"""The regression baseline beside the demo model (configs/subvp/baseline.py): Martinez et al. 2017's lifter trained
on the demo's rows and synthetic detections (configs/subvp/synthetic_small.py) for the demo's 4 minutes.

    python -m run.train_fc_adv_3d --config configs/subvp/synthetic_baseline.py --name demo_baseline
"""
import ml_collections

from configs.subvp.baseline import regression_recipe
from configs.subvp.synthetic_small import get_config as synthetic_small


def get_config() -> ml_collections.ConfigDict:
    return regression_recipe(synthetic_small())
