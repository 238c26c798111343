"""GFPose U3D: the paper's sub-VP model on Human3.6M (hidden 1024, two residual blocks)."""
import ml_collections

from configs.default_h36m_configs import get_default_configs


def get_config() -> ml_collections.ConfigDict:
    return get_default_configs()
