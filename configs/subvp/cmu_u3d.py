"""The paper's U3D recipe (network, batch 1000, Adam 2e-4, 5000 warm-up steps, EMA 0.9999) on real CMU mocap
(python -m run.prepare_data cmu --pack ../shared/data/cmu_h36m17.npz --out data/cmu). Pose-only data: the 2D
conditions are the projected ground truth."""
import ml_collections

from configs.default_h36m_configs import get_default_configs


def cmu_data(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The data section for the converted CMU pack (every CMU config uses it)."""
    config.data.root = "data/cmu"
    config.data.train_file = "cmu_train.pkl"
    config.data.test_file = "cmu_test.pkl"
    config.data.det_file = ""
    config.data.use_gt_2d = True
    config.data.flip = True               # one skeleton for all clips: mirrored poses double the variety
    return config


def get_config() -> ml_collections.ConfigDict:
    config = cmu_data(get_default_configs())
    config.monitor.max_poses = 1000
    return config
