"""The budget recipe (configs/subvp/budget.py) on real CMU mocap for 20 minutes of two CPU cores, at width 512."""
import ml_collections

from configs.subvp.budget import budget_recipe
from configs.subvp.cmu_u3d import get_config as cmu_u3d


def get_config() -> ml_collections.ConfigDict:
    config = budget_recipe(cmu_u3d(), minutes=20.0)
    config.model.hidden_dim = 512           # wider for 20 minutes (README 'Robust conditioning and the regression
                                            # baseline': the width lever, chosen on validation rows)
    config.training.eval_every = 1000
    config.training.snapshot_every = 1000
    config.training.log_every = 200
    return config
