"""Which sampler runs, and in which precision: the one decision every command line and the API make here.

`resolve_sampler` maps the config, the mode the user asked for (`--fast`, `--pflow`, a task deterministic by nature)
and the sampler fields the user gave (method, steps, schedule, eta) to a `SamplerConfig` that carries its label
('paper', 'fast', 'distilled k' or the method's name) and its precision (bf16 only where it is native). Nothing
writes the result back into the config, and nothing works the label out afterwards (docs/design.md, 'How a command
runs').
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import ml_collections
import torch

from lib.builders import build_sde
from lib.errors import ToolkitError
from lib.sampling import SAMPLERS, SamplerConfig

# The mode flags, declared once: the command lines add them as switches and the API takes them as
# keyword arguments of the same names
MODE_FLAGS = {
    "pflow": "the paper's deterministic sampler (the drift-only reverse process on its grid; sampling.method=drift)",
    "fast": "the validated fast sampler of the mode asked for (stochastic, or deterministic with --pflow; config.fast "
            "and config.distill), bf16 where native",
}
SAMPLER_FIELDS = ("method", "steps", "schedule", "eta")       # what a user may set (--sampler, --steps, ...)
COMPLETION_FIELDS = ("resample", "resample_t", "guidance")    # config.sampling fields every sampler keeps


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bf16 matrix products run natively: a CUDA GPU with bf16, or a CPU with AVX-512 BF16 / AMX-BF16.

    (Elsewhere torch emulates bf16 on the CPU, which is slower than fp32.)
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    caps = getattr(torch.cpu, "get_capabilities", dict)()
    return device.type == "cpu" and bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def use_bf16(requested: bool, device: torch.device | str | None) -> bool:
    """bf16 where it was asked for and is native on the device (sampling, and training's training.amp); fp32 where
    no device is named."""
    return bool(requested) and device is not None and bf16_supported(device)


def _completion(config: ml_collections.ConfigDict) -> dict:
    return {k: config.sampling[k] for k in COMPLETION_FIELDS}


def paper_sampler(config: ml_collections.ConfigDict, deterministic: bool,
                  device: torch.device | str | None = None) -> SamplerConfig:
    """The paper's sampler: its --pflow (drift) or its default (em), N = model.num_scales on its grid, without our
    completion extras (resampling, guidance)."""
    return SamplerConfig(method="drift" if deterministic else "em", steps=config.model.num_scales,
                         eps=config.sampling.eps, schedule="paper", label="paper",
                         bf16=use_bf16(config.sampling.bf16, device))


def fast_sampler(config: ml_collections.ConfigDict, deterministic: bool,
                 device: torch.device | str | None = None, student: bool = True) -> SamplerConfig:
    """The validated fast replacement of the paper's sampler (config.fast; README 'Samplers'), or a distilled
    student where the checkpoint carries one that passed its gate (config.distill; README 'Distilled samplers')
    and `student` allows it."""
    f, d = config.fast, config.distill
    common = {"eps": config.sampling.eps, "label": "fast",
              "bf16": use_bf16(config.sampling.bf16 or f.bf16, device)} | _completion(config)
    students = [int(s) for s in d.students.split(",") if s.strip()]
    if student and d.fast_steps in students and (deterministic or d.fast_stochastic):  # a distilled student
        return SamplerConfig(method="distilled", steps=d.fast_steps, schedule="auto",
                             eta=0.0 if deterministic else 1.0, **common)
    if deterministic:
        return SamplerConfig(method=f.deterministic, steps=f.deterministic_steps, schedule=f.deterministic_schedule,
                             **common)
    return SamplerConfig(method=f.stochastic, steps=f.stochastic_steps, schedule=f.stochastic_schedule,
                         eta=f.stochastic_eta, **common)


def for_task(cfg: SamplerConfig, imputes: bool, config: ml_collections.ConfigDict) -> SamplerConfig:
    """The sampler a task runs with. --fast's student passed a gate measured on estimation, where nothing is imputed;
    on a task that imputes an observation (comp3d, comp2d unless condition-only) the students are far behind the
    paper (README 'Distilled samplers'), so there --fast is the teacher's fast sampler. Any other sampler is kept."""
    if not (imputes and cfg.label == "fast" and cfg.method == "distilled"):
        return cfg
    return dataclasses.replace(fast_sampler(config, cfg.eta == 0.0, student=False), bf16=cfg.bf16)


def _label(cfg: SamplerConfig, config: ml_collections.ConfigDict) -> str:
    if cfg.method == "distilled":
        return f"distilled {cfg.steps}"
    paper = paper_sampler(config, cfg.method == "drift")
    same = cfg.method in ("em", "drift") and (cfg.steps, cfg.grid_name) == (paper.steps, "paper")
    return "paper" if same and cfg.corrector == "none" else cfg.method  # (completion extras act on top of it)


def resolve_sampler(config: ml_collections.ConfigDict, device: torch.device | str | None = None, *,
                    fast: bool = False, pflow: bool = False, deterministic: bool = False,
                    given: Mapping[str, Any] | None = None) -> SamplerConfig:
    """The sampler for what the user asked, validated.

    fast: the validated fast replacement of the sampler of the mode (config.fast, or a distilled student).
    pflow: the paper's deterministic sampler (drift on its grid, the configured steps).
    deterministic: the task is deterministic by nature (den; lift's one pose): drift unless a method is given.
    given: the sampler fields the user set ({method, steps, schedule, eta}); they cannot be combined with fast, and
    a method not with pflow. A method given without a schedule runs on the config's schedule; eta is kept only by
    the samplers that use it. Callers that compare samplers may also give the completion fields (resample,
    resample_t, guidance), which otherwise come from config.sampling.
    """
    given = {k: v for k, v in (given or {}).items() if v is not None}
    if unknown := set(given) - set(SAMPLER_FIELDS + COMPLETION_FIELDS):
        raise ToolkitError(f"unknown sampler field(s) {', '.join(sorted(unknown))}; give "
                           f"{', '.join(SAMPLER_FIELDS + COMPLETION_FIELDS)}")
    completion = {k: given.pop(k) for k in COMPLETION_FIELDS if k in given}
    if fast and given:
        raise ToolkitError(f"--fast picks the sampler itself; drop --fast or the explicit sampling "
                           f"{', '.join(k for k in SAMPLER_FIELDS if k in given)}")
    if pflow and "method" in given:
        raise ToolkitError("--pflow picks the paper's deterministic sampler; drop --pflow or the sampler method")
    if fast:
        cfg = fast_sampler(config, deterministic or pflow, device)
    else:
        cfg = SamplerConfig.from_config(config.sampling)
        if "method" in given and given["method"] not in SAMPLERS:
            raise ToolkitError(f"unknown sampler method {given['method']!r} (--sampler / sampling.method, or method= "
                               f"in the API); choose one of {', '.join(SAMPLERS)}")
        cfg = dataclasses.replace(cfg, **given)
        if (deterministic or pflow) and "method" not in given:
            cfg.method = "drift"
            if "schedule" not in given:
                cfg.schedule = "auto"  # the paper's grid
        if "eta" not in given and not cfg.spec.uses_eta:
            cfg.eta = 0.0
        cfg = dataclasses.replace(cfg, label=_label(cfg, config), bf16=use_bf16(config.sampling.bf16, device))
    return _checked(dataclasses.replace(cfg, **completion), config)


def _checked(cfg: SamplerConfig, config: ml_collections.ConfigDict) -> SamplerConfig:
    cfg.validate(build_sde(config))
    return cfg


def monitor_sampler(config: ml_collections.ConfigDict, device: torch.device | str | None = None) -> SamplerConfig:
    """The training monitor's deterministic sampler (config.monitor), validated."""
    m = config.monitor
    cfg = SamplerConfig(method=m.method, steps=m.steps, schedule=m.schedule, eps=config.sampling.eps,
                         label="monitor", bf16=use_bf16(config.sampling.bf16, device))
    return _checked(cfg, config)


def student_sampler(config: ml_collections.ConfigDict, steps: int, device: torch.device | str | None = None
                    ) -> SamplerConfig:
    """The deterministic sampler of the student of `steps` steps (`--sampler distilled --steps k`)."""
    return resolve_sampler(config, device, deterministic=True, given={"method": "distilled", "steps": steps})
