"""LRP for vision transformers: torchvision's ``VisionTransformer`` with conservative rules.

The rules are those of the conservative-propagation family (Ali et al. 2022, "XAI for
Transformers: Better Explanations through Conservative Propagation"; Achtibat et al.
2024, "AttnLRP"), written as a *modified gradient*: the engine re-runs the model's forward
in its own code, with every non-linear step that LRP treats as a constant detached or
given a replaced derivative, and the relevance of the input is ``x * d(z_c)/dx`` through
that modified graph. Every step below keeps the invariant "relevance of a tensor = the
tensor × its modified gradient", which is what makes the gradient equal to explicit LRP.

* **Linear layers** (attention projections, MLP, head): the epsilon rule
  ``R_x = x ⊙ Wᵀ (R_z / s(z))`` with zennit's stabiliser ``s(z) = z + ε·((z = 0) + sign z)``,
  ``ε = 1e-6``. Written as a custom autograd function whose backward multiplies the
  incoming gradient by ``z / s(z)`` before ``Wᵀ``. Biases absorb their share.
* **Elementwise activations** (GELU in the MLP; ReLU, Tanh where a head has them): the
  identity rule ``R_in = R_out``; folded into the preceding linear layer's backward as
  ``g · act(z) / s(z)``.
* **LayerNorm**: the normalisation factor ``1/std`` is detached (the LN-rule of Ali et al.
  2022; AttnLRP's identity rule on the normalisation). What remains — mean centring
  and the affine scale ``γ`` — is linear and passes by the gradient (LRP-0); ``β`` is a
  bias and absorbs its share. The centring keeps relevance summed over the features.
* **Attention**: the softmax weights ``A`` are constants in the relevance pass (CP-LRP):
  queries and keys get no relevance, ``A · V`` is linear in ``V`` and passes by the
  gradient (LRP-0, no bias), ``V`` and the output projection are linear layers (epsilon).
* **Residual additions** split relevance in proportion to the summands (what the
  gradient of a sum does with "relevance = value × gradient").
* **Class token and position embedding** are constants added to the tokens: like
  biases, they keep the relevance of their share and pass none to the pixels.
* **Patch embedding** (``conv_proj``, the first layer): the rule set's first-layer rule,
  as zennit's composites give it to the first convolution: Flat for
  ``epsilon_plus_flat`` and ``epsilon_alpha2_beta1_flat``, ZBox (the input's value range)
  for ``epsilon_gamma_box``. A ViT has no other convolution, so the z⁺/γ/αβ rules the
  composites give to convolutions never apply and the three rule sets differ only there.

Conservation: the map sums to the target logit minus what the biases, LayerNorm ``β``,
class token, position embedding and ε absorb (recorded per item like for CNNs).

The logits returned are the unmodified model's own forward (``torch.no_grad``); the
relevance pass computes its own, which must agree with them — a model whose forward is
not the walk below (a subclass that changes it) is refused instead of explained wrongly.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.errors import HarnessError

__all__ = [
    "FIRST_LAYER_RULES",
    "TransformerLRP",
    "looks_like_vit",
    "lrp_attention",
    "lrp_chain",
    "lrp_dense",
    "lrp_layer_norm",
    "vit_problem",
]

# The composite's rule for the first layer (the patch embedding) per rule set.
FIRST_LAYER_RULES = {"epsilon_plus_flat": "flat", "epsilon_alpha2_beta1_flat": "flat", "epsilon_gamma_box": "zbox"}

# Elementwise activations that pass relevance unchanged (identity rule).
_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.GELU, nn.ReLU, nn.Tanh)
_SKIPPED: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Identity)


def _stabilize(t: Tensor, eps: float) -> Tensor:
    """zennit's stabiliser ``t + eps * ((t == 0) + sign(t))``."""
    return torch.where(t >= 0, t + eps, t - eps)


class _Dense(torch.autograd.Function):
    """``act(x Wᵀ + b)`` whose backward is the epsilon rule on the linear map and the
    identity rule on the activation: ``g_x = (g · act(z) / s(z)) W``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, act: nn.Module | None, eps: float) -> Tensor:
        z = F.linear(x, weight, bias)
        out = z if act is None else act(z)
        # act(z) / s(z) in three passes over the output, in place: s(z) = z + copysign(eps, z)
        # is zennit's stabiliser (z = +0 gets +eps; -0 gets -eps, where act(z) is 0 anyway).
        # One saved tensor per layer instead of z and act(z): the batch size bounds memory.
        scale = torch.copysign(z.new_tensor(eps), z).add_(z)
        torch.div(out, scale, out=scale)
        ctx.save_for_backward(weight, scale)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        weight, scale = ctx.saved_tensors
        # The relevance pass differentiates once, so the saved scale can take the product.
        return scale.mul_(grad) @ weight, None, None, None, None


class _LayerNorm(torch.autograd.Function):
    """LayerNorm with the normalisation factor a constant: ``g_x = centre(g · γ / std)``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
        out, _mean, rstd = torch.native_layer_norm(x, (x.shape[-1],), weight, bias, eps)
        ctx.save_for_backward(rstd, weight)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        rstd, weight = ctx.saved_tensors
        scaled = grad * rstd
        if weight is not None:
            scaled.mul_(weight)
        return scaled.sub_(scaled.mean(dim=-1, keepdim=True)), None, None, None


def lrp_dense(x: Tensor, weight: Tensor, bias: Tensor | None, act: nn.Module | None, epsilon: float) -> Tensor:
    """``act(x Wᵀ + b)``; its gradient is the epsilon rule (with the identity rule on ``act``)."""
    out: Tensor = _Dense.apply(x, weight, bias, act, epsilon)
    return out


def lrp_layer_norm(norm: nn.LayerNorm, x: Tensor) -> Tensor:
    """``norm(x)``; its gradient treats the normalisation factor ``1/std`` as a constant."""
    out: Tensor = _LayerNorm.apply(x, norm.weight, norm.bias, norm.eps)
    return out


def lrp_chain(chain: nn.Sequential, x: Tensor, epsilon: float) -> Tensor:
    """A sequence of Linear layers, each with the activation that follows it folded in
    (Dropout and Identity skipped: eval mode)."""
    layers = [m for m in chain if not isinstance(m, _SKIPPED)]
    at = 0
    while at < len(layers):
        linear: Any = layers[at]
        act = layers[at + 1] if at + 1 < len(layers) and isinstance(layers[at + 1], _ACTIVATIONS) else None
        x = lrp_dense(x, linear.weight, linear.bias, act, epsilon)
        at += 2 if act is not None else 1
    return x


def lrp_attention(attention: nn.MultiheadAttention, x: Tensor, epsilon: float) -> Tensor:
    """Self-attention of ``x`` (N, T, D); in the gradient the softmax weights are constants
    (queries and keys get nothing), the value and output projections follow the epsilon rule."""
    n, length, dim = x.shape
    heads = attention.num_heads
    head_dim = dim // heads
    weight, bias = attention.in_proj_weight, attention.in_proj_bias
    with torch.no_grad():
        qk = F.linear(x, weight[: 2 * dim], None if bias is None else bias[: 2 * dim])
        q, k = qk.view(n, length, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        weights = torch.softmax((q * head_dim**-0.5) @ k.transpose(-2, -1), dim=-1)
    value = lrp_dense(x, weight[2 * dim :], None if bias is None else bias[2 * dim :], None, epsilon)
    value = value.view(n, length, heads, head_dim).transpose(1, 2)
    mixed = (weights @ value).transpose(1, 2).reshape(n, length, dim)
    out = attention.out_proj
    return lrp_dense(mixed, out.weight, out.bias, None, epsilon)


def looks_like_vit(module: nn.Module) -> bool:
    """Whether ``module`` has the structure of torchvision's ``VisionTransformer``
    (a torchvision instance, or a model built the same way)."""
    # A torchvision ViT instance means torchvision is loaded already; importing it here for
    # every other model would cost seconds at each model build.
    vision_transformer = sys.modules.get("torchvision.models.vision_transformer")
    if vision_transformer is not None and isinstance(module, vision_transformer.VisionTransformer):
        return True
    encoder = getattr(module, "encoder", None)
    return (
        hasattr(module, "conv_proj")
        and isinstance(getattr(module, "class_token", None), Tensor)
        and isinstance(getattr(encoder, "layers", None), nn.Sequential)
        and any(isinstance(m, nn.MultiheadAttention) for m in encoder.modules())  # type: ignore[union-attr]
    )


def _layer_norm_problem(name: str, module: Any) -> str | None:
    if not isinstance(module, nn.LayerNorm):
        return f"{name} is a {type(module).__name__}, expected nn.LayerNorm"
    if len(module.normalized_shape) != 1:
        return f"{name} normalises over {tuple(module.normalized_shape)}, expected the last dimension only"
    return None


def _chain_problem(name: str, module: Any) -> str | None:
    if not isinstance(module, nn.Sequential):
        return f"{name} is a {type(module).__name__}, expected an nn.Sequential of Linear layers and activations"
    previous: nn.Module | None = None
    for child_name, child in module.named_children():
        if isinstance(child, _SKIPPED):
            continue
        if not isinstance(child, (nn.Linear, *_ACTIVATIONS)):
            return (
                f"{name}.{child_name} is a {type(child).__name__}; the transformer LRP engine knows "
                "nn.Linear, GELU/ReLU/Tanh and Dropout there"
            )
        if isinstance(child, _ACTIVATIONS) and not isinstance(previous, nn.Linear):
            return f"{name}.{child_name}: an activation must follow an nn.Linear"
        if getattr(child, "inplace", False):
            return f"{name}.{child_name} is in place"
        previous = child
    if previous is None:
        return f"{name} has no nn.Linear"
    return None


def _attention_problem(name: str, attention: Any) -> str | None:
    if not isinstance(attention, nn.MultiheadAttention):
        return f"{name} is a {type(attention).__name__}, expected nn.MultiheadAttention"
    if not attention.batch_first:
        return f"{name} is not batch_first"
    if not attention._qkv_same_embed_dim or attention.bias_k is not None or attention.add_zero_attn:
        return f"{name} uses separate key/value sizes, bias_k/bias_v or add_zero_attn"
    return None


def vit_problem(module: nn.Module) -> str | None:
    """Why the transformer LRP engine cannot explain ``module``, naming the part, or ``None``."""
    conv = getattr(module, "conv_proj", None)
    if not isinstance(conv, nn.Conv2d):
        return f"conv_proj is a {type(conv).__name__} (a convolutional stem); only a single nn.Conv2d patch embedding"
    if (
        tuple(conv.kernel_size) != tuple(conv.stride)
        or conv.padding not in ((0, 0), 0)
        or tuple(conv.dilation) != (1, 1)
        or conv.groups != 1
        or conv.padding_mode != "zeros"
    ):
        return "conv_proj is not a patch embedding (kernel = stride, no padding, no dilation, one group)"
    token = getattr(module, "class_token", None)
    if not isinstance(token, Tensor) or token.dim() != 3 or token.shape[:2] != (1, 1):
        return "class_token is not a (1, 1, hidden_dim) tensor"
    encoder = getattr(module, "encoder", None)
    if not isinstance(getattr(encoder, "pos_embedding", None), Tensor):
        return "encoder.pos_embedding is missing"
    layers = getattr(encoder, "layers", None)
    if not isinstance(layers, nn.Sequential) or not len(layers):
        return "encoder.layers is not a non-empty nn.Sequential of encoder blocks"
    problem = _layer_norm_problem("encoder.ln", getattr(encoder, "ln", None))
    for block_name, block in layers.named_children():
        where = f"encoder.layers.{block_name}"
        problem = (
            problem
            or _layer_norm_problem(f"{where}.ln_1", getattr(block, "ln_1", None))
            or _layer_norm_problem(f"{where}.ln_2", getattr(block, "ln_2", None))
            or _attention_problem(f"{where}.self_attention", getattr(block, "self_attention", None))
            or _chain_problem(f"{where}.mlp", getattr(block, "mlp", None))
        )
    return problem or _chain_problem("heads", getattr(module, "heads", None))


class TransformerLRP:
    """``(x, targets) -> (logits, relevance)``: LRP through a torchvision ``VisionTransformer``
    with the rules above (module docstring), batched, one target per row.

    Parameters
    ----------
    module
        The (eval-mode) vision transformer.
    rule_set
        One of :data:`FIRST_LAYER_RULES`' keys; it decides the patch embedding's rule.
    low, high
        The input's value range per channel (the ZBox rule's bounds).
    epsilon
        The linear layers' epsilon (zennit's default in the composites, 1e-6), also the
        first-layer rules' stabiliser.
    check_logits
        Compare the relevance pass's own logits with the model's (refuses a model whose
        forward differs from the walk).
    """

    def __init__(
        self,
        module: nn.Module,
        rule_set: str = "epsilon_plus_flat",
        low: Tensor | float = -3.0,
        high: Tensor | float = 3.0,
        epsilon: float = 1e-6,
        check_logits: bool = True,
    ) -> None:
        if rule_set not in FIRST_LAYER_RULES:
            raise HarnessError(f"unknown LRP rule set {rule_set!r}; expected one of {', '.join(FIRST_LAYER_RULES)}")
        problem = vit_problem(module)
        if problem is not None:
            raise HarnessError(f"the transformer LRP engine cannot explain this model: {problem}")
        self.module = module
        self.rule_set = rule_set
        self.first_rule = FIRST_LAYER_RULES[rule_set]
        self.low, self.high = low, high
        self.epsilon = epsilon
        self.check_logits = check_logits

    def describe(self) -> str:
        first = "Flat" if self.first_rule == "flat" else "ZBox"
        return (
            f"transformer LRP ({first} on the patch embedding, epsilon on linear layers, attention weights "
            "and LayerNorm's 1/std constant, identity on GELU)"
        )

    def __call__(self, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits (N, K), relevance shaped like x)``."""
        with torch.no_grad():
            logits = self.module(x)
        own, relevance = self.relevance(x, targets)
        if self.check_logits:
            scale = float(logits.abs().max()) if logits.numel() else 0.0
            diff = float((own - logits).abs().max()) if logits.numel() else 0.0
            if not diff <= 1e-3 * scale + 1e-4:
                raise HarnessError(
                    f"the transformer LRP engine's forward gives logits {diff:.3g} away from the model's "
                    f"(logit scale {scale:.3g}): the model's forward is not torchvision's VisionTransformer "
                    "walk (conv_proj, class token, position embedding, pre-norm encoder blocks, ln, heads)"
                )
        return logits, relevance

    # -- the relevance pass -------------------------------------------------------------

    def relevance(self, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """The relevance pass alone: ``(its own logits, relevance)``."""
        module: Any = self.module
        conv: nn.Conv2d = module.conv_proj
        height, width = x.shape[-2:]
        patch_h, patch_w = conv.kernel_size
        if height % patch_h or width % patch_w:
            raise HarnessError(
                f"input of {height} x {width} pixels does not tile into the model's {patch_h} x {patch_w} patches"
            )
        index = torch.as_tensor(targets, device=x.device).long().reshape(-1, 1)
        with torch.no_grad():
            patches = conv(x)
        with torch.enable_grad():
            leaf = patches.detach().requires_grad_(True)
            logits = self._forward_tokens(leaf)
            (grad,) = torch.autograd.grad(logits.gather(1, index).sum(), leaf)
        with torch.no_grad():
            relevance = self._first_layer(x, patches * grad)
        return logits.detach(), relevance

    def _forward_tokens(self, patches: Tensor) -> Tensor:
        """From the patch embedding's output to the logits, with the LRP rules' gradients."""
        module: Any = self.module
        eps = self.epsilon
        n, dim = patches.shape[:2]
        tokens = patches.reshape(n, dim, -1).permute(0, 2, 1)
        tokens = torch.cat([module.class_token.expand(n, -1, -1), tokens], dim=1)
        tokens = tokens + module.encoder.pos_embedding
        for block in module.encoder.layers:
            tokens = lrp_attention(block.self_attention, lrp_layer_norm(block.ln_1, tokens), eps) + tokens
            tokens = lrp_chain(block.mlp, lrp_layer_norm(block.ln_2, tokens), eps) + tokens
        cls = lrp_layer_norm(module.encoder.ln, tokens)[:, 0]
        return lrp_chain(module.heads, cls, eps)

    def _first_layer(self, x: Tensor, relevance: Tensor) -> Tensor:
        """The patch embedding's rule (zennit's Flat or ZBox on a Conv2d), from the relevance
        of its output to the input's."""
        conv: Any = self.module.conv_proj
        weight, stride = conv.weight, conv.stride
        eps = self.epsilon
        if self.first_rule == "flat":
            ones = torch.ones_like(weight)
            count = F.conv2d(torch.ones_like(x[:1]), ones, stride=stride)
            return F.conv_transpose2d(relevance / _stabilize(count, eps), ones, stride=stride)
        low = torch.as_tensor(self.low, dtype=x.dtype, device=x.device).expand_as(x[:1])
        high = torch.as_tensor(self.high, dtype=x.dtype, device=x.device).expand_as(x[:1])
        positive, negative = weight.clamp(min=0), weight.clamp(max=0)
        # The biases cancel in zennit's ZBox (b - b⁺ - b⁻ = 0), so the box denominator has none.
        box = F.conv2d(x, weight, stride=stride) - F.conv2d(low, positive, stride=stride)
        box = box - F.conv2d(high, negative, stride=stride)
        scaled = relevance / _stabilize(box, eps)
        return (
            x * F.conv_transpose2d(scaled, weight, stride=stride)
            - low * F.conv_transpose2d(scaled, positive, stride=stride)
            - high * F.conv_transpose2d(scaled, negative, stride=stride)
        )
