"""The regression baseline beside the shipped prior (lib/regression.py): Martinez et al. 2017's lifter, trained by
the toolkit's trainer on the prior's rows, 2D and detector noise (configs/subvp/cmu_prior.py) for the prior's
training minutes on two CPU cores. Its own recipe where the paper gives one: width 1024, two residual blocks,
dropout 0.5, Adam 1e-3; the schedule (warm-up, cosine decay, EMA) is the budget recipe's, at its learning rate.

    python -m run.train_fc_adv_3d --config configs/subvp/cmu_baseline.py --name cmu_baseline \
        --config.detnoise.table=PATH/sh_detection_errors_h36m_train.json
"""
import ml_collections

from configs.subvp.cmu_prior import get_config as cmu_prior


def get_config() -> ml_collections.ConfigDict:
    config = cmu_prior()
    config.model.name = "MartinezLifter"
    config.model.hidden_dim = 1024
    config.model.n_blocks = 2
    config.model.dropout = 0.5
    config.model.num_groups = 1           # (the score network's GroupNorm; the lifter uses batch norm)
    config.optim.lr = 1e-3
    config.training.n_iters = 8_000       # the prior's 17.8 minutes at this network's speed on two CPU cores
    return config
