"""Exceptions that deepcam-hvd raises for bad input; the CLI prints them as one line."""

from __future__ import annotations


class DeepcamError(Exception):
    """Base class: a problem the user can fix (bad data, bad settings), not a bug."""


class DataError(DeepcamError):
    """A data file or data root is missing, unreadable or malformed."""


class ConfigError(DeepcamError):
    """A setting (command-line option, configuration value) is invalid."""


class LaunchError(DeepcamError):
    """The launch environment is incomplete or inconsistent, or the backend cannot start."""
