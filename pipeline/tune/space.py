"""The search space of ``mnist-pipeline tune``: which config keys vary, and how.

``tune.space`` maps a config key (``optimizer.learning_rate``; ``model.dense_units.0`` for one element
of a list) to a distribution:

    {type: float, low: 1.0e-4, high: 1.0e-2, log: true}      # log-uniform
    {type: float, low: 0.1, high: 0.5, step: 0.05}
    {type: int, low: 64, high: 256, step: 64}
    {type: categorical, choices: [adam, sgd]}                # choices may be lists: [[32, 64], [64, 128]]

The space is checked when the config loads (``pipeline.config.check_space``): every key must exist, and
its lowest, highest and every listed value must be a valid setting of that key, so a typo fails before
any trial starts.
"""

from __future__ import annotations

import json
from typing import Any


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def suggest(trial, space: dict) -> dict[str, Any]:
    """Draws one value per key from ``trial`` (an ``optuna.Trial``); returns ``{key: value}``."""
    out = {}
    for key, spec in space.items():
        kind = spec["type"]
        if kind == "float":
            out[key] = trial.suggest_float(key, spec["low"], spec["high"], log=spec.get("log", False),
                                           step=spec.get("step"))
        elif kind == "int":
            out[key] = trial.suggest_int(key, spec["low"], spec["high"], log=spec.get("log", False),
                                         step=spec.get("step") or 1)
        else:
            out[key] = decode_choice(trial.suggest_categorical(key, encode_choices(spec["choices"])))
    return out


def encode_choices(choices: list) -> list:
    """Optuna stores scalar choices only; a list choice ([32, 64]) is stored as its JSON text."""
    return [c if _is_scalar(c) else json.dumps(c) for c in choices]


def decode_choice(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


def params_to_overrides(params: dict[str, Any]) -> dict[str, Any]:
    """An Optuna trial's stored params back to config values."""
    return {key: decode_choice(value) for key, value in params.items()}


def as_config_sections(cfg, keys) -> dict[str, dict]:
    """The settings of ``keys`` in ``cfg`` as YAML-ready sections. A list element key (``x.y.0``) writes
    the whole list, since a config file sets lists whole."""
    out: dict[str, dict] = {}
    for key in keys:
        parts = key.split(".")
        if parts[-1].isdigit():
            parts = parts[:-1]
        node = cfg
        for part in parts:
            node = getattr(node, part)
        section = out
        for part in parts[:-1]:
            section = section.setdefault(part, {})
        section[parts[-1]] = node
    return out
