"""What is installed, read from package metadata without importing it (torch and TensorFlow
each take seconds to import, and a process of one framework never loads the other)."""

from __future__ import annotations


def installed_version(module: str) -> str | None:
    """The version of the distribution that provides ``module`` (tensorflow comes as
    tensorflow-cpu, tensorflow, ...), or None when none does."""
    from importlib.metadata import packages_distributions, version

    names = sorted(packages_distributions().get(module, []))
    return version(names[0]) if names else None
