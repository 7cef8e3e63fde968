"""Transformer LRP (harness.attribution.transformer): a hand-computed one-head attention toy,
a tiny ViT against an explicit layer-by-layer LRP, conservation, batching, the explainer
table's dispatch, and refusals."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import VisionTransformer

from harness.attribution import make_explainer
from harness.attribution.transformer import TransformerLRP, looks_like_vit, lrp_attention, vit_problem
from harness.errors import HarnessError
from harness.health import DEFAULT_CONSERVATION
from harness.models import LoadedModel
from harness.registry import ModelEntry

EPS = 1e-6


def tiny_vit(seed: int = 0, dtype: torch.dtype = torch.float32) -> VisionTransformer:
    """The tiny ViT of the tests, random init; the head gets weights (torchvision zeroes it)
    and the biases are made non-zero so that the explicit LRP checks what they absorb."""
    torch.manual_seed(seed)
    model = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=5
    )
    with torch.no_grad():
        nn.init.normal_(model.heads.head.weight, std=0.5)
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(std=0.05)
        model.class_token.normal_(std=0.1)
    model = model.to(dtype).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def loaded(module: nn.Module, size: int = 32, classes: int = 5) -> LoadedModel:
    entry = ModelEntry(
        architecture="x:y",
        classes=[f"c{i}" for i in range(classes)],
        preprocessing={"size": [size, size], "mean": [0.5] * 3, "std": [0.25] * 3},
    )
    return LoadedModel(name="vit", entry=entry, module=module, device=torch.device("cpu"))


# -- a one-head attention toy, by hand --------------------------------------------------


def toy_attention() -> nn.MultiheadAttention:
    """Two features, one head, no biases. Queries and keys read feature 0 only, scaled so
    that token 0's scores differ by ln 2 (its attention is 1/3, 2/3); V = x Wvᵀ, out = m Woᵀ."""
    attention = nn.MultiheadAttention(2, 1, bias=False, batch_first=True)
    c = math.log(2.0) / math.sqrt(2.0)
    with torch.no_grad():
        attention.in_proj_weight.copy_(
            torch.tensor([[c, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
        )
        attention.out_proj.weight.copy_(torch.tensor([[2.0, -1.0], [0.0, 1.0]]))
    return attention.eval()


def test_one_head_attention_known_answer() -> None:
    """Explaining output (token 0, feature 0) of the toy on x = [[1, 2], [3, -1]].

    By hand: scores of token 0 are (c·1·1, c·1·3)/√2 = (ln2/2, 3 ln2/2), so A[0] = (1/3, 2/3).
    v = x Wvᵀ = [[1, 3], [3, 2]]; m[0] = A[0] v = (7/3, 7/3); out[0, 0] = 2·7/3 − 7/3 = 7/3.
    LRP, A constant: R_m[0, j] = m[0, j] Wo[0, j] R / out = (14/3, −7/3)·(7/3)/(7/3);
    R_v[t, j] = A[0, t] v[t, j] R_m[0, j] / m[0, j] = A[0, t] v[t, j] Wo[0, j];
    R_x[t, i] = Σ_j x[t, i] Wv[j, i] R_v[t, j] / v[t, j] = A[0, t] x[t, i] (Σ_j Wo[0, j] Wv[j, i])
    with Σ_j Wo[0, j] Wv[j, :] = 2·(1, 0) − (1, 1) = (1, −1):
    R_x = [[1/3·1, 1/3·2·(−1)], [2/3·3, 2/3·(−1)·(−1)]] = [[1/3, −2/3], [2, 2/3]], sum 7/3.
    """
    attention = toy_attention()
    x = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]])
    with torch.no_grad():
        expected_out, weights = attention(x, x, x, need_weights=True)
    torch.testing.assert_close(weights[0, 0], torch.tensor([1 / 3, 2 / 3]))
    assert expected_out[0, 0, 0].item() == pytest.approx(7 / 3, rel=1e-6)

    leaf = x.clone().requires_grad_(True)
    out = lrp_attention(attention, leaf, EPS)
    torch.testing.assert_close(out.detach(), expected_out, rtol=1e-6, atol=1e-6)
    (grad,) = torch.autograd.grad(out[0, 0, 0], leaf)
    relevance = (leaf * grad).detach()[0]
    torch.testing.assert_close(relevance, torch.tensor([[1 / 3, -2 / 3], [2.0, 2 / 3]]), rtol=1e-5, atol=1e-6)
    assert relevance.sum().item() == pytest.approx(7 / 3, rel=1e-5)

    # The plain gradient also flows through the softmax (queries and keys): a different map.
    plain = x.clone().requires_grad_(True)
    (plain_grad,) = torch.autograd.grad(attention(plain, plain, plain, need_weights=False)[0][0, 0, 0], plain)
    assert (plain * plain_grad - relevance).abs().max() > 0.1


# -- the tiny ViT against an explicit LRP -----------------------------------------------


def _stab(t: Tensor) -> Tensor:
    return t + EPS * ((t == 0).to(t) + t.sign())


def _epsilon(x: Tensor, weight: Tensor, bias: Tensor | None, relevance: Tensor) -> Tensor:
    """R_i = Σ_j x_i W_ji R_j / s(z_j), contributions written out."""
    z = x @ weight.T + (0 if bias is None else bias)
    contributions = x[..., None, :] * weight  # (..., out, in)
    return (contributions * (relevance / _stab(z))[..., None]).sum(dim=-2)


def _layer_norm(x: Tensor, norm: nn.LayerNorm, relevance: Tensor) -> Tensor:
    """1/std constant: the affine map γ x̂ + β (LRP-0, β absorbs), then the centring
    c_j = Σ_i (δ_ij − 1/D) x_i (LRP-0)."""
    centred = x - x.mean(dim=-1, keepdim=True)
    std = torch.sqrt(x.var(dim=-1, unbiased=False, keepdim=True) + norm.eps)
    scaled = centred / std
    out = norm.weight * scaled + norm.bias
    r_centred = norm.weight * scaled / out * relevance
    dim = x.shape[-1]
    mixing = torch.eye(dim, dtype=x.dtype) - 1.0 / dim  # (i, j)
    return (x[..., :, None] * mixing * (r_centred / centred)[..., None, :]).sum(dim=-1)


def reference_lrp(model: VisionTransformer, image: Tensor, target: int, rule: str, low: Tensor, high: Tensor) -> Tensor:
    """LRP of one image, propagating relevance explicitly layer by layer (no autograd)."""
    conv, dim = model.conv_proj, model.hidden_dim
    patch = model.patch_size
    patches = conv(image[None])[0]  # (D, gh, gw)
    grid = patches.shape[1:]
    h = torch.cat([model.class_token[0], patches.flatten(1).T]) + model.encoder.pos_embedding[0]
    stack = []
    for block in model.encoder.layers:
        attention = block.self_attention
        heads, head_dim = attention.num_heads, dim // attention.num_heads
        a_in = block.ln_1(h)
        w, b = attention.in_proj_weight, attention.in_proj_bias
        q, k, v = (a_in @ w[i * dim : (i + 1) * dim].T + b[i * dim : (i + 1) * dim] for i in range(3))
        split = [t.reshape(-1, heads, head_dim).transpose(0, 1) for t in (q, k, v)]
        weights = torch.softmax(split[0] @ split[1].transpose(1, 2) / math.sqrt(head_dim), dim=-1)
        mixed = (weights @ split[2]).transpose(0, 1).reshape(-1, dim)
        o = mixed @ attention.out_proj.weight.T + attention.out_proj.bias
        h1 = h + o
        m_in = block.ln_2(h1)
        lin1, lin2 = block.mlp[0], block.mlp[3]
        z1 = m_in @ lin1.weight.T + lin1.bias
        a1 = F.gelu(z1)
        m = a1 @ lin2.weight.T + lin2.bias
        stack.append((h, a_in, v, weights, mixed, o, h1, m_in, a1, m))
        h = h1 + m
    cls = model.encoder.ln(h)[0]
    logits = cls @ model.heads.head.weight.T + model.heads.head.bias

    r_logits = torch.zeros_like(logits)
    r_logits[target] = logits[target]
    r_final = torch.zeros_like(h)
    r_final[0] = _epsilon(cls, model.heads.head.weight, model.heads.head.bias, r_logits)
    r_h = _layer_norm(h, model.encoder.ln, r_final)
    for block, (h, a_in, v, weights, mixed, o, h1, m_in, a1, m) in zip(
        reversed(list(model.encoder.layers)), reversed(stack), strict=True
    ):
        attention = block.self_attention
        heads, head_dim = attention.num_heads, dim // attention.num_heads
        total = h1 + m  # residual: relevance in proportion to the summands
        r_h1, r_m = h1 / total * r_h, m / total * r_h
        r_z1 = _epsilon(a1, block.mlp[3].weight, block.mlp[3].bias, r_m)  # identity through GELU
        r_h1 = r_h1 + _layer_norm(h1, block.ln_2, _epsilon(m_in, block.mlp[0].weight, block.mlp[0].bias, r_z1))
        r_h, r_o = h / h1 * r_h1, o / h1 * r_h1
        r_mixed = _epsilon(mixed, attention.out_proj.weight, attention.out_proj.bias, r_o)
        r_v = torch.zeros_like(v)
        for head in range(heads):
            cols = slice(head * head_dim, (head + 1) * head_dim)
            for t in range(v.shape[0]):  # output token
                for s in range(v.shape[0]):  # source token: R_v[s] += A[t, s] v[s] R_m[t] / m[t]
                    r_v[s, cols] += weights[head, t, s] * v[s, cols] * r_mixed[t, cols] / mixed[t, cols]
        wv, bv = attention.in_proj_weight[2 * dim :], attention.in_proj_bias[2 * dim :]
        r_h = r_h + _layer_norm(h, block.ln_1, _epsilon(a_in, wv, bv, r_v))
    h0 = torch.cat([model.class_token[0], patches.flatten(1).T]) + model.encoder.pos_embedding[0]
    tokens = patches.flatten(1).T
    r_patches = (tokens / h0[1:] * r_h[1:]).T.reshape(dim, *grid)  # the position embedding keeps its share

    result = torch.zeros_like(image)
    channels = image.shape[0]
    weight = conv.weight.reshape(dim, -1)
    for a in range(grid[0]):
        for c in range(grid[1]):
            rows, cols = slice(a * patch, (a + 1) * patch), slice(c * patch, (c + 1) * patch)
            r_out = r_patches[:, a, c]
            if rule == "flat":
                share = r_out.sum() / _stab(torch.tensor(float(channels * patch * patch), dtype=image.dtype))
                result[:, rows, cols] = share
                continue
            xs = image[:, rows, cols].reshape(-1)
            lo = low.reshape(-1, 1, 1).expand(-1, patch, patch).reshape(-1)
            hi = high.reshape(-1, 1, 1).expand(-1, patch, patch).reshape(-1)
            contributions = weight * xs - weight.clamp(min=0) * lo - weight.clamp(max=0) * hi  # (D, C p p)
            z = contributions.sum(dim=1)
            shares = (contributions * (r_out / _stab(z))[:, None]).sum(dim=0)
            result[:, rows, cols] = shares.reshape(channels, patch, patch)
    return result


@pytest.mark.parametrize("rule_set", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_tiny_vit_equals_explicit_lrp(rule_set: str) -> None:
    model = tiny_vit(dtype=torch.float64)
    low, high = torch.full((1, 3, 1, 1), -2.0, dtype=torch.float64), torch.full((1, 3, 1, 1), 2.0, dtype=torch.float64)
    engine = TransformerLRP(model, rule_set, low=low, high=high)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 4 - 2
    targets = torch.tensor([1, 4])
    logits, relevance = engine(x, targets)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(x))
        for row, target in enumerate(targets.tolist()):
            rule = "flat" if rule_set == "epsilon_plus_flat" else "zbox"
            expected = reference_lrp(model, x[row], target, rule, low, high)
            torch.testing.assert_close(relevance[row], expected, rtol=1e-7, atol=1e-10)


def test_conservation_is_exact_without_biases() -> None:
    """With every bias, LayerNorm β, the class token and the position embedding zero, nothing
    absorbs relevance: the map sums to the target logit (up to the 1e-6 epsilon)."""
    model = tiny_vit()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or name in ("class_token", "encoder.pos_embedding"):
                param.zero_()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 2, 4])
    for rule_set in ("epsilon_plus_flat", "epsilon_gamma_box"):
        logits, relevance = TransformerLRP(model, rule_set)(x, targets)
        sums = relevance.sum(dim=(1, 2, 3))
        torch.testing.assert_close(sums, logits.gather(1, targets[:, None])[:, 0], rtol=1e-4, atol=1e-5)


def test_conservation_with_biases_within_the_health_band() -> None:
    """Random init with biases, class token and position embedding: they absorb part of the
    logit; the ratio stays within the default band (figures in docs/explainers.md)."""
    model = tiny_vit()
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        targets = model(x).argmax(1)
    logits, relevance = TransformerLRP(model)(x, targets)
    ratios = relevance.sum(dim=(1, 2, 3)) / logits.gather(1, targets[:, None])[:, 0]
    lo, hi = DEFAULT_CONSERVATION
    assert ((ratios > lo) & (ratios < hi)).all(), ratios
    assert 0.5 < ratios.median() < 1.5, ratios


def test_batch_equals_one_by_one() -> None:
    model = tiny_vit()
    engine = TransformerLRP(model, "epsilon_gamma_box")
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    targets = torch.tensor([3, 0, 0, 2])
    logits, relevance = engine(x, targets)
    for row in range(4):
        one_logits, one = engine(x[row : row + 1], targets[row : row + 1])
        torch.testing.assert_close(one_logits, logits[row : row + 1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(one, relevance[row : row + 1], rtol=1e-4, atol=1e-6)


def test_explainer_table_dispatches_a_vit_to_the_transformer_engine() -> None:
    model = tiny_vit()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        own = model(x)
    for name in ("lrp/epsilon_plus_flat", "lrp/epsilon_gamma_box", "lrp/epsilon_alpha2_beta1_flat"):
        for backend in ("auto", "fast"):
            explainer = make_explainer(name, loaded(model), backend)  # type: ignore[arg-type]
            assert explainer.backend == "transformer"
            assert "epsilon on linear layers" in explainer.note
            logits, relevance = explainer(x, torch.tensor([1, 2]))
            assert torch.equal(logits, own)  # the model's own forward, bit for bit
            assert relevance.shape == x.shape and torch.isfinite(relevance).all()
    box = make_explainer("lrp/epsilon_gamma_box", loaded(model), "auto")
    assert "ZBox on the patch embedding" in box.note
    # zennit has no rule for attention: forcing it is an error that says what to use instead.
    with pytest.raises(HarnessError, match="zennit has no LRP rule for attention; use the LRP backend auto or fast"):
        make_explainer("lrp/epsilon_plus_flat", loaded(model), "zennit")


def test_other_transformer_like_models_keep_a_clear_error() -> None:
    torch.manual_seed(0)
    stem = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=5,
        conv_stem_configs=[],
    ).eval()
    assert looks_like_vit(stem)
    assert "conv_proj" in str(vit_problem(stem))
    with pytest.raises(HarnessError, match="conv_proj"):
        make_explainer("lrp/epsilon_plus_flat", loaded(stem), "auto")

    class Encoder(nn.Module):  # attention without the ViT's structure: not dispatched here
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(3, 8)
            self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 5)

        def forward(self, x: Tensor) -> Tensor:
            tokens = self.proj(x.flatten(2).transpose(1, 2))
            return self.head(self.attention(tokens, tokens, tokens, need_weights=False)[0].mean(1))

    assert not looks_like_vit(Encoder())
    with pytest.raises(HarnessError, match="MultiheadAttention|attention"):
        make_explainer("lrp/epsilon_plus_flat", loaded(Encoder().eval()), "auto")


def test_a_vit_whose_forward_differs_is_refused() -> None:
    class Scaled(VisionTransformer):
        def forward(self, x: Tensor) -> Tensor:
            return super().forward(x) * 2.0

    torch.manual_seed(0)
    model = Scaled(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5)
    nn.init.normal_(model.heads.head.weight, std=0.5)
    model.eval().requires_grad_(False)
    with pytest.raises(HarnessError, match="not torchvision's VisionTransformer walk"):
        TransformerLRP(model)(torch.randn(1, 3, 32, 32), torch.tensor([0]))


def test_wrong_input_size_is_a_clear_error() -> None:
    with pytest.raises(HarnessError, match="does not tile"):
        TransformerLRP(tiny_vit()).relevance(torch.randn(1, 3, 30, 32), torch.tensor([0]))


@pytest.mark.slow
def test_vit_b_16_conservation() -> None:
    """torchvision's vit_b_16, random weights (head re-initialised), 224x224: the maps are
    finite and their conservation lies in the health band."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None, num_classes=10).eval()
    nn.init.normal_(model.heads.head.weight, std=0.02)
    model.requires_grad_(False)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    explainer = make_explainer("lrp/epsilon_plus_flat", loaded(model, size=224, classes=10), "auto")
    with torch.no_grad():
        targets = model(x).argmax(1)
    logits, relevance = explainer(x, targets)
    ratios = relevance.sum(dim=(1, 2, 3)) / logits.gather(1, targets[:, None])[:, 0]
    lo, hi = DEFAULT_CONSERVATION
    assert torch.isfinite(relevance).all()
    assert ((ratios > lo) & (ratios < hi)).all(), ratios
