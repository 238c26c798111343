"""Each setting declared once: a field's check, short flag and help in lib/config_utils.SETTINGS, from which
validation and every command line's flags are derived; the monitor's settings moved to their own section, and older
configs migrate."""
from __future__ import annotations

import json

import pytest

from configs.default_h36m_configs import get_default_configs
from lib.config_utils import SETTINGS, VERSION, config_from_json, config_to_json, get_field, validate_config
from lib.errors import ToolkitError
from lib.loader import load_prior
from run import eval_fc_mp_adv_3d, lift, train_fc_adv_3d
from run.common import EVAL_FLAGS


@pytest.mark.parametrize("flags", [eval_fc_mp_adv_3d.FLAGS, lift.FLAGS, train_fc_adv_3d.TRAIN_FLAGS, EVAL_FLAGS])
def test_every_short_flag_is_its_settings_declaration(flags):
    defaults = get_default_configs()
    for f in flags:
        setting = SETTINGS[f.field]
        assert (f.flag, f.help) == (setting.flag, setting.help) and f.help
        default = get_field(defaults, f.field)
        assert f.type is (None if isinstance(default, bool) else type(default))  # a bool default: a switch
    assert len({f.flag for f in flags}) == len(flags)  # one field per flag within a command


def test_the_declared_checks_validate_the_config():
    config = get_default_configs()
    validate_config(config)  # the defaults pass their own checks
    for key, bad, says in (("monitor.method", "magic", "monitor.method = 'magic' must be one of em, drift"),
                           ("sampling.schedule", "weekly", "sampling.schedule = 'weekly' must be one of auto, "),
                           ("eval.reduce", "modal", "eval.reduce = 'modal' must be one of ")):
        broken = config_from_json(config_to_json(config))
        section, name = key.split(".")
        broken[section][name] = bad
        with pytest.raises(ToolkitError, match=says):
            validate_config(broken)
    assert config.version == VERSION  # the default config is the current layout


def test_the_monitors_settings_of_an_older_config_move_to_their_section():
    """Version 4 kept them as eval.train_*; they load as monitor.*, and nothing is left behind."""
    old = json.loads(config_to_json(get_default_configs()))
    old["version"] = 4
    del old["monitor"]
    old["eval"] |= {"train_method": "drift_ddim", "train_steps": 7, "train_schedule": "logsnr", "train_max_poses": 123}
    config = config_from_json(json.dumps(old))
    m = config.monitor
    assert (m.method, m.steps, m.schedule, m.max_poses) == ("drift_ddim", 7, "logsnr", 123)
    assert not any(k.startswith("train_") for k in config.eval)


def test_a_checkpoint_fixes_its_training_but_not_where_its_files_lie(trained_run):
    """The detector table of training is read again by run.distill: its path may change, its other settings not."""
    assert load_prior(trained_run, overrides={"detnoise.table": "moved.json"}).config.detnoise.table == "moved.json"
    with pytest.raises(ToolkitError, match="detnoise.p=0.2 cannot take effect: the network and its training"):
        load_prior(trained_run, overrides={"detnoise.p": 0.2})
