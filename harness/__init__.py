"""Test image classifiers with explanations as test oracles.

YAML test cases name an image, its annotated object and the expected class; the
harness generates variants (object removed, background removed, sticker added), runs
the classifier and an LRP explainer over them in batches and turns the relevance
distribution into pytest pass/fail verdicts.

For notebooks and outside checks: ``from harness import load_model, explain``
(docs/api.md). Both are imported on first use, so ``import harness`` (which the pytest
plugin does in every session) does not import torch. The explainers themselves live in
:mod:`harness.attribution`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["explain", "load_model"]


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from harness.api import load_model

        return load_model
    if name == "explain":
        from harness.api import explain

        return explain
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
