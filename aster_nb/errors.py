"""Errors that name a problem the user can fix, and the credential rule for environments.

:class:`UserInputError` is the base of every error caused by what the user gave (a task
folder, a command-line flag, a store file, a model name or key). The command line prints
such an error as one line and exits with code 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

__all__ = ["UserInputError", "looks_like_credential"]

_SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE")
_SECRET_PREFIXES = ("ANTHROPIC_", "OPENAI_", "AWS_", "AZURE_", "GOOGLE_", "GCP_", "HF_", "GITHUB_")


class UserInputError(ValueError):
    """Bad input from the user: the message names the problem and what was expected."""


class AreaError(UserInputError):
    """A goal named surface areas the task does not have, or none (the message lists the
    task's areas)."""


def looks_like_credential(name: str) -> bool:
    """True if an environment variable's name suggests it holds a secret (``*KEY*``,
    ``*TOKEN*``, ``ANTHROPIC_*``, ...): such variables never reach the sandbox."""
    upper = name.upper()
    return upper.startswith(_SECRET_PREFIXES) or any(m in upper for m in _SECRET_MARKERS)
