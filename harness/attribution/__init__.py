"""Explanations: which explainer runs, on which backend, and how healthy its maps are.

One concept per module:

* :mod:`harness.attribution.explainers` — explainers by name, backend choice (``make_explainer``);
* :mod:`harness.attribution.graph` — the fast LRP engine for traceable graphs, built on
  :mod:`harness.attribution.rules` (the LRP rules) and :mod:`harness.attribution.trace` (the
  ``torch.fx`` trace it walks);
* :mod:`harness.attribution.zennit_backend` — zennit prepared for the architecture, and the
  LRP reference ``zennit_explain``; :mod:`harness.attribution.lrp_rewrite` — the fx rewrite
  that lets zennit explain any traceable classifier correctly;
* :mod:`harness.attribution.gradient` — the input × gradient baseline;
* :mod:`harness.attribution.cam` — Grad-CAM on one convolutional layer;
* :mod:`harness.attribution.transformer` — LRP for vision transformers (conservative rules),
  :mod:`harness.attribution.vit_cam` — Grad-CAM on their patch tokens.
"""

from harness.attribution.explainers import (
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
