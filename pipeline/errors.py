"""The error every layer raises for unusable input, in a module that imports nothing of ours.

Data sources raise it and `pipeline.config` reads the source registry, so it cannot live in
either without an import cycle; `pipeline.config` re-exports it for everyone else.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message says what to change, one line per problem."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems if problems is not None else [message]
