"""The search space of ``mnist-pipeline tune``: which config keys vary, and how.

``tune.space`` maps a config key (``optimizer.learning_rate``; ``model.dense_units.0`` for one element
of a list) to a distribution:

    {type: float, low: 1.0e-4, high: 1.0e-2, log: true}      # log-uniform
    {type: float, low: 0.1, high: 0.5, step: 0.05}
    {type: int, low: 64, high: 256, step: 64}
    {type: categorical, choices: [adam, sgd]}                # choices may be lists: [[32, 64], [64, 128]]

The space is checked when the config loads: every key must exist, and its lowest, highest and every
listed value must be a valid setting of that key, so a typo fails before any trial starts.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.errors import ConfigError

_FIELDS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


def check_space(space: dict, cfg) -> None:
    """Raises ``ConfigError`` naming ``tune.space.<key>`` for anything that could not be sampled or set."""
    from pipeline.config import TUNE_DISTRIBUTIONS, apply_overrides

    for key, spec in space.items():
        where = f"tune.space.{key}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a mapping such as {{type: float, low: 0.1, high: 0.5}}, got {spec!r}")
        kind = spec.get("type")
        if kind not in TUNE_DISTRIBUTIONS:
            raise ConfigError(f"{where}.type is {kind!r}; expected one of {', '.join(TUNE_DISTRIBUTIONS)}")
        unknown = set(spec) - _FIELDS[kind]
        if unknown:
            raise ConfigError(f"{where} has {', '.join(sorted(unknown))}, which a {kind} distribution does not take; "
                              f"expected {', '.join(sorted(_FIELDS[kind] - {'type'}))}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{where}.choices must be a non-empty list, got {choices!r}")
            values = choices
        else:
            values = _check_range(where, kind, spec)
        for value in values:
            try:
                apply_overrides(cfg, {key: value}, source=where, name_settings=False)
            except ConfigError as exc:
                raise ConfigError(f"{where}: the value {value!r} is not a valid setting: {exc}") from None


def _check_range(where: str, kind: str, spec: dict) -> list:
    number = (int,) if kind == "int" else (int, float)
    low, high = spec.get("low"), spec.get("high")
    for name, value in (("low", low), ("high", high)):
        if not isinstance(value, number) or isinstance(value, bool):
            raise ConfigError(f"{where}.{name} is {value!r}; expected {'an integer' if kind == 'int' else 'a number'}")
    if not low < high:
        raise ConfigError(f"{where}: low {low} must be below high {high}")
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log is {log!r}; expected true or false")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log distribution needs low > 0, got {low}")
    if log and step is not None:
        raise ConfigError(f"{where}: log and step cannot be combined")
    if step is not None and (not isinstance(step, number) or isinstance(step, bool) or step <= 0):
        raise ConfigError(f"{where}.step is {step!r}; expected a positive {'integer' if kind == 'int' else 'number'}")
    return [low, high]


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
