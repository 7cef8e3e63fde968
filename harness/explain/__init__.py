"""Explanations: which explainer runs, on which backend, and how healthy its maps are.

One concept per module:

* :mod:`harness.explain.explainers` — explainers by name, backend choice (``make_explainer``);
* :mod:`harness.explain.sequential` — the fast LRP engine for sequential CNNs;
* the zennit adapter, the graph engine, gradient baselines and health checks each get
  their own module here as they are added.
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
    zennit_composite,
)

__all__ = ["ALIASES", "EXPLAINERS", "LRP_RULE_SETS", "Explainer", "canonical_name", "make_explainer",
           "zennit_composite"]


class _CallablePackage(types.ModuleType):
    """``from harness import explain`` gives this package, and the API's ``explain`` is a
    call of it: ``explain(model, images, targets)`` runs :func:`harness.api.explain`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from harness.api import explain

        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
