"""One model forward per batch for the graph LRP engine and Grad-CAM together (issue #13).

Run separately, LRP's graph engine and Grad-CAM each run the model's forward. Shared, the
graph engine's forward (under ``torch.no_grad()``, exactly as LRP alone runs it, so the logits
and the LRP maps are bit for bit LRP's own) also copies out the Grad-CAM layer's output and
the few other values the rest of the model reads after that layer (a residual block's
identity, for example). Grad-CAM's gradient then comes from re-running only the part of the
graph that depends on the layer, from a leaf at the layer's output to the logits, with
autograd; for the default layer (the last convolution) that is a batch norm, a sum, a pool
and the classifier, a small fraction of a forward.

Only the graph engine (backend ``fast``) and :class:`~harness.attribution.cam.GradCAM` on a
layer that is one node of the traced graph share; every other pair (zennit, the transformer
engine and its token Grad-CAM, input × gradient, custom explainers) runs its own forward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch import Tensor

from harness.attribution.cam import GradCAM, cam_relevance
from harness.attribution.graph import GraphLRP
from harness.errors import HarnessError


class SharedForward:
    """``(x, targets) -> (logits, [LRP relevance, Grad-CAM relevance])`` from one forward.

    Raises :class:`HarnessError` from the constructor when the pair cannot share
    (:meth:`problem` gives the reason without raising).
    """

    def __init__(self, lrp: GraphLRP, cam: GradCAM) -> None:
        why = self.problem(lrp, cam)
        if why is not None:
            raise HarnessError(why)
        assert cam.layer is not None
        self.lrp, self.cam = lrp, cam
        order = lrp.order
        self._tap = _tap(lrp, cam.layer)
        downstream = {self._tap}
        tail: list[fx.Node] = []
        for node in order[order.index(self._tap) + 1 :]:
            if node.op == "output":
                break
            if any(arg in downstream for arg in node.all_input_nodes):
                downstream.add(node)
                tail.append(node)
        outside = list(dict.fromkeys(a for n in tail for a in n.all_input_nodes if a not in downstream))
        # parameters and buffers are read afresh; values the forward computes are copied out of it
        self._run = [n for n in outside if n.op == "get_attr"] + tail
        self._capture = [self._tap] + [n for n in outside if n.op != "get_attr"]
        self._output = lrp.traced.output

    @staticmethod
    def problem(lrp: GraphLRP, cam: GradCAM) -> str | None:
        """Why the pair cannot share one forward, or ``None``."""
        if cam.layer is None:
            return "Grad-CAM's layer is not known before the first batch"
        try:
            tap = _tap(lrp, cam.layer)
        except HarnessError as exc:
            return str(exc)
        reached = {tap}
        for node in lrp.order:
            if any(arg in reached for arg in node.all_input_nodes):
                reached.add(node)
        if lrp.traced.output not in reached:
            return f"the logits do not depend on Grad-CAM's layer {cam.layer!r}"
        return None

    def describe(self) -> str:
        return f"Grad-CAM from the LRP engine's forward, autograd over {len(self._run)} node(s) after {self.cam.layer}"

    def __call__(self, x: Tensor, targets: Tensor) -> tuple[Tensor, list[Tensor]]:
        capture: dict[fx.Node, Any] = dict.fromkeys(self._capture)
        logits, relevance = self.lrp(x, targets, capture)
        activation = capture[self._tap]
        if not isinstance(activation, Tensor) or activation.dim() != 4:
            dims = activation.dim() if isinstance(activation, Tensor) else "non-tensor"
            raise HarnessError(f"Grad-CAM layer {self.cam.layer!r} gives a {dims}-d output; it needs (N, C, H, W)")
        leaf = activation.requires_grad_(True)  # the captured copy: nothing else holds it
        env: dict[fx.Node, Any] = {node: capture[node] for node in self._capture[1:]}
        # a clone, so that an in-place activation right after the layer leaves the leaf alone
        env[self._tap] = leaf.clone()
        index = torch.as_tensor(targets, device=x.device).long().reshape(-1, 1)
        with torch.enable_grad():
            self.lrp.run_nodes(self._run, env)
            tail_logits = env[self._output]
            (grad,) = torch.autograd.grad(tail_logits.gather(1, index).sum(), leaf)
        return logits, [relevance, cam_relevance(leaf.detach(), grad, x.shape)]


def _tap(lrp: GraphLRP, layer: str) -> fx.Node:
    """The one node of the traced graph that calls module ``layer``."""
    nodes = [n for n in lrp.order if n.op == "call_module" and str(n.target) == layer]
    if len(nodes) != 1:
        how = "is not a module call of the traced graph" if not nodes else f"is called {len(nodes)} times"
        raise HarnessError(f"Grad-CAM layer {layer!r} {how}")
    return nodes[0]
