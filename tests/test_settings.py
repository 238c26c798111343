"""Each setting declared once: a field's default, check, help and short flag in configs/default_h36m_configs.py, from
which the default config, validation and every command line's flags are derived; the monitor's settings moved to
their own section, and older configs migrate."""
from __future__ import annotations

import json
import re

import pytest

from configs.default_h36m_configs import DECLARED, SETTINGS, get_default_configs
from lib.config_utils import VERSION, config_from_json, config_to_json, validate_config
from lib.errors import ToolkitError
from lib.loader import load_prior
from run import eval_fc_mp_adv_3d, lift, train_fc_adv_3d
from run.common import EVAL_FLAGS
from tests.helpers import ROOT, config_leaves


@pytest.mark.parametrize("flags", [eval_fc_mp_adv_3d.FLAGS, lift.FLAGS, train_fc_adv_3d.TRAIN_FLAGS, EVAL_FLAGS])
def test_every_short_flag_is_its_settings_declaration(flags):
    for f in flags:
        setting = SETTINGS[f.field]
        assert (f.flag, f.help) == (setting.flag, setting.help) and f.help
        assert f.type is (None if isinstance(setting.default, bool) else type(setting.default))  # bool: a switch
    assert len({f.flag for f in flags}) == len(flags)  # one field per flag within a command


def test_the_default_config_is_the_declarations_and_nothing_else():
    """Every field of the default config is declared once, at its declared default (no field outside the table)."""
    config = config_leaves(get_default_configs().to_dict())
    assert len(DECLARED) == len(SETTINGS) == len(config)  # no key declared twice, none undeclared
    assert config == {key: s.default for key, s in SETTINGS.items()}
    assert config["sampling.steps"] == 1000 and config["model.hidden_dim"] == 1024  # the paper's N and width
    assert SETTINGS["data.use_gt_2d"].flag == "--gt" and SETTINGS["eval.hypo"].flag == "--hypo"


@pytest.mark.parametrize("key, bad, says", [
    ("data.root", 5, "must be text"),                      # declared without a check: its default's kind
    ("sampling.noise_removal", "yes", "must be true or false"),
    ("training.log_every", 2.5, "must be a whole number"),
    ("optim.lr", "fast", "must be a number"),
    ("fast.deterministic", "magic", "must be one of em, drift"),  # a sampler, checked against the registry
    ("model.name", "Transformer", "must be one of ScoreModelFC_Adv, MartinezLifter"),
])
def test_a_field_declared_without_a_range_is_still_checked(key, bad, says):
    """A stored config (JSON) may hold a value of any kind; validation names the field and what it must be."""
    stored = json.loads(config_to_json(get_default_configs()))
    section, name = key.split(".")
    stored[section][name] = bad
    with pytest.raises(ToolkitError, match=re.escape(f"config field {key} = {bad!r} {says}")):
        validate_config(config_from_json(json.dumps(stored)))


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


def test_students_distilled_before_version_6_had_no_end_to_end_phase():
    """A version-5 config with students says end_share 0 (how they were made); one without takes today's default."""
    old = json.loads(config_to_json(get_default_configs()))
    old["version"] = 5
    del old["distill"]["end_share"]
    assert config_from_json(json.dumps(old)).distill.end_share == SETTINGS["distill.end_share"].default == 0.5
    old["distill"]["students"] = "8,4"
    assert config_from_json(json.dumps(old)).distill.end_share == 0.0


def test_stochastic_twins_trained_before_version_8_used_each_pool_once():
    """A version-7 config with students says spread_passes 1 (how their twins were made); one without takes today's
    default, 4."""
    old = json.loads(config_to_json(get_default_configs()))
    old["version"] = 7
    del old["distill"]["spread_passes"]
    assert config_from_json(json.dumps(old)).distill.spread_passes == SETTINGS["distill.spread_passes"].default == 4
    old["distill"]["students"] = "8,4"
    assert config_from_json(json.dumps(old)).distill.spread_passes == 1


def test_stochastic_twins_trained_before_version_9_used_whole_pose_distances():
    """A version-8 config with students says spread_distance 'pose' and spread_power 1 (how their twins were made);
    one without takes today's defaults, 'mpjpe' and 0.5."""
    old = json.loads(config_to_json(get_default_configs()))
    old["version"] = 8
    del old["distill"]["spread_distance"], old["distill"]["spread_power"]
    new = config_from_json(json.dumps(old)).distill
    assert (new.spread_distance, new.spread_power) == ("mpjpe", 0.5) == (
        SETTINGS["distill.spread_distance"].default, SETTINGS["distill.spread_power"].default)
    old["distill"]["students"] = "8,4"
    new = config_from_json(json.dumps(old)).distill
    assert (new.spread_distance, new.spread_power) == ("pose", 1.0)


def test_robust_conditioning_turned_on_before_version_7_stays_on():
    """Version 6 had a switch, robust.enabled: true loads as robust.mode 'on'; false (its default) as today's
    default, auto, and the switch is gone."""
    old = json.loads(config_to_json(get_default_configs()))
    old["version"] = 6
    for enabled, mode in ((True, "on"), (False, "auto")):
        old["robust"] = {k: v for k, v in old["robust"].items() if k != "mode"} | {"enabled": enabled}
        robust = config_from_json(json.dumps(old)).robust
        assert robust.mode == mode and "enabled" not in robust


def test_a_teacher_trained_before_version_4_distils_with_todays_recipe():
    """The shipped prior (version 3) stored the distill defaults of then (lr 3e-4, the noise head); it carries no
    students, so run.distill reads today's defaults. A checkpoint with students keeps what made them."""
    shipped = load_prior(ROOT / "lib" / "resources" / "cmu_prior")
    stored = json.loads(shipped.state["config"])
    assert (stored["version"], stored["distill"]["lr"], stored["distill"]["students"]) == (3, 3e-4, "")
    assert shipped.config.distill.lr == SETTINGS["distill.lr"].default == 1e-3
    old = json.loads(config_to_json(get_default_configs()))
    old["version"] = 3
    old["distill"] = {"lr": 3e-4, "students": "8,4"}
    assert config_from_json(json.dumps(old)).distill.lr == 3e-4
