"""Small CPU model on the embedded synthetic data: same code path as U3D, trains in minutes on 2 cores."""
import ml_collections

from configs.default_h36m_configs import get_default_configs


def get_config() -> ml_collections.ConfigDict:
    config = get_default_configs()
    config.data.root = "data/synthetic"
    config.data.train_file = "synthetic_train.pkl"
    config.data.test_file = "synthetic_test.pkl"
    config.data.det_file = "synthetic_dt.pkl"
    config.model.hidden_dim = 256
    config.model.embed_dim = 128
    config.model.dropout = 0.0            # small model, short run: dropout only slows learning
    config.model.ema_rate = 0.999
    config.training.batch_size = 256
    config.training.n_iters = 6000
    config.training.max_minutes = 4.0
    config.training.log_every = 50
    config.training.eval_every = 1000
    config.training.snapshot_every = 1000
    config.optim.lr = 1e-3
    config.optim.warmup = 500
    config.eval.batch_size = 2000
    config.eval.train_max_poses = 500
    return config
