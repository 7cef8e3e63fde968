"""Explanations: which explainer runs, on which backend, and how healthy its maps are.

One concept per module:

* :mod:`harness.explain.explainers` — explainers by name, backend choice (``make_explainer``);
* :mod:`harness.explain.graph` — the fast LRP engine for traceable graphs, built on
  :mod:`harness.explain.rules` (the LRP rules) and :mod:`harness.explain.trace` (the
  ``torch.fx`` trace it walks);
* :mod:`harness.explain.zennit_backend` — zennit prepared for the architecture, and the
  LRP reference ``zennit_explain``; :mod:`harness.explain.lrp_rewrite` — the fx rewrite
  that lets zennit explain any traceable classifier correctly;
* :mod:`harness.explain.gradient` — the input × gradient baseline;
* :mod:`harness.explain.cam` — Grad-CAM on one convolutional layer.
"""

import sys
import types
from typing import Any

from harness.explain.explainers import (
    ALIASES,
    EXPLAINERS,
    LRP_RULE_SETS,
    Explainer,
    canonical_name,
    make_explainer,
    register_explainer,
    zennit_composite,
)

__all__ = [
    "ALIASES",
    "EXPLAINERS",
    "LRP_RULE_SETS",
    "Explainer",
    "canonical_name",
    "make_explainer",
    "register_explainer",
    "zennit_composite",
]


class _CallablePackage(types.ModuleType):
    """``from harness import explain`` gives this package, and the API's ``explain`` is a
    call of it: ``explain(model, images, targets)`` runs :func:`harness.api.explain`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from harness.api import explain

        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
