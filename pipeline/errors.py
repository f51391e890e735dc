"""Errors a user can cause. The CLI turns them into one clear line and a non-zero exit."""


class PipelineError(Exception):
    """Base class: something the user can fix (bad input, bad config, missing dataset)."""


class ConfigError(PipelineError):
    """A config file or override names an unknown key or holds a value of the wrong type."""


class InputError(PipelineError):
    """Input data is missing, malformed or inconsistent; the message names the file and the value."""


class PreflightError(PipelineError):
    """A check before launching training failed; the message says what to change."""


class TrainingError(PipelineError):
    """Distributed training failed; the message says where the checkpoint is and how to resume."""
