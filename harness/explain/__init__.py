"""Explanations: which explainer runs, on which backend, and how healthy its maps are.

One concept per module:

* :mod:`harness.explain.explainers` — explainers by name, backend choice (``make_explainer``);
* :mod:`harness.explain.sequential` — the fast LRP engine for sequential CNNs;
* the zennit adapter, the graph engine, gradient baselines and health checks each get
  their own module here as they are added.
"""

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
