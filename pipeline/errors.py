"""Errors raised by the compute layer; each message says what was wrong and what to do."""


class PipelineError(Exception):
    """Base class of every error the compute layer raises on purpose."""


class ConfigError(PipelineError):
    """A configuration value is invalid or unknown."""


class EncoderError(PipelineError):
    """An encoder cannot be built, loaded or verified."""


class DecodeError(PipelineError):
    """A video or image cannot be decoded."""
