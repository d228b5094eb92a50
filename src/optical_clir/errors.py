"""Exceptions with messages a user can act on: which file, which line, what is wrong."""

from __future__ import annotations

from pathlib import Path


class OpticalError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(OpticalError):
    """A problem in an input file, located by path and (where known) 1-based line number."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class ConfigError(OpticalError):
    """A problem in the workflow configuration, located by its dotted key."""

    def __init__(self, key: str, problem: str, source: str | None = None) -> None:
        self.key = key
        self.problem = problem
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}config key '{key}': {problem}")
