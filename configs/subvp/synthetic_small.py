"""The demo model on the embedded synthetic data: the budget recipe (configs/subvp/budget.py) for 4 minutes of two
CPU cores; same code path as U3D."""
import ml_collections

from configs.default_h36m_configs import get_default_configs
from configs.subvp.budget import budget_recipe


def get_config() -> ml_collections.ConfigDict:
    config = budget_recipe(get_default_configs(), minutes=4.0)
    config.data.root = "data/synthetic"
    config.data.train_file = "synthetic_train.pkl"
    config.data.test_file = "synthetic_test.pkl"
    config.data.det_file = "synthetic_dt.pkl"
    config.data.det_format = "h36m"       # the synthetic detector reports Human3.6M's own joints
    config.training.log_every = 100
    config.training.eval_every = 1000
    config.training.snapshot_every = 1000
    config.eval.batch_size = 2000
    config.monitor.max_poses = 500
    return config
