"""The regression baseline beside the shipped prior (configs/subvp/baseline.py): Martinez et al. 2017's lifter
trained on the prior's rows, 2D and detector noise (configs/subvp/cmu_prior.py) for the prior's training minutes on
two CPU cores.

    python -m run.train_fc_adv_3d --config configs/subvp/cmu_baseline.py --name cmu_baseline \
        --config.detnoise.table=PATH/sh_detection_errors_h36m_train.json
"""
import ml_collections

from configs.subvp.baseline import regression_recipe
from configs.subvp.cmu_prior import get_config as cmu_prior


def get_config() -> ml_collections.ConfigDict:
    config = regression_recipe(cmu_prior())
    config.training.n_iters = 8_000       # the prior's 17.8 minutes at this network's speed on two CPU cores
    return config
