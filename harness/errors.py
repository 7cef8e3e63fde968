"""Errors that point at the YAML (or image) the user has to fix."""

from __future__ import annotations

from pathlib import Path


class HarnessError(Exception):
    """Base class of errors the harness reports to users."""


class SpecError(HarnessError):
    """A problem in a test-case file, located by file, line and field.

    Parameters
    ----------
    path
        The YAML file.
    line
        1-based line number, or ``None`` when unknown.
    field
        Dotted field path, e.g. ``cases[3].object.mask``; empty for the whole file.
    message
        What is wrong and what was expected.
    """

    def __init__(self, path: str | Path, line: int | None, field: str, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        super().__init__(self.format())

    def location(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path

    def format(self) -> str:
        where = self.location()
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecErrors(HarnessError):
    """Several :class:`SpecError` found in one pass (a case can have more than one mistake)."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.format() for e in errors))


class ModelError(HarnessError):
    """The model registry or a model's weights could not be used."""


class MetricError(HarnessError):
    """A metric is undefined for this input (empty mask, no positive relevance, ...)."""
