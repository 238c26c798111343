"""The regression baseline's recipe (lib/regression.py): Martinez et al. 2017's lifter in place of the score network,
trained by the toolkit's trainer on a prior's rows, 2D and detector noise for the prior's minutes. Its own recipe
where the paper gives one: width 1024, two residual blocks, dropout 0.5, Adam 1e-3; the schedule (warm-up, cosine
decay, EMA) is the prior's recipe's, at this learning rate."""
import ml_collections


def regression_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config.model.name = "MartinezLifter"
    config.model.hidden_dim = 1024
    config.model.n_blocks = 2
    config.model.dropout = 0.5
    config.model.num_groups = 1           # (the score network's GroupNorm; the lifter uses batch norm)
    config.optim.lr = 1e-3
    return config
