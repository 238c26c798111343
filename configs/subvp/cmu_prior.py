"""The shipped prior of real motion (lib/resources/cmu_prior/README.md): the budget recipe (configs/subvp/budget.py)
on CMU mocap, trained with a detector's error table so that it expects detector keypoints.

Its length is a number of steps, not minutes, so that a rebuild on any machine runs the same schedule (a budget run
takes as many steps as the machine manages). The table is given on the command line (make prior):

    python -m run.train_fc_adv_3d --config configs/subvp/cmu_prior.py --name cmu_prior \
        --config.detnoise.table=PATH/sh_detection_errors_h36m_train.json
"""
import ml_collections

from configs.subvp.budget import budget_recipe
from configs.subvp.cmu_u3d import get_config as cmu_u3d


def get_config() -> ml_collections.ConfigDict:
    config = budget_recipe(cmu_u3d(), minutes=0.0)
    config.training.n_iters = 30_000            # about 20 minutes on two CPU cores
    config.training.eval_every = 2000
    config.training.snapshot_every = 2000
    config.training.log_every = 500
    config.detnoise.format = "sh"
    return config
