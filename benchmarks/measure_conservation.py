"""Conservation (relevance sum / target logit) of explanations the harness computes: the
figures behind the default health band (docs/reliability.md, section 3).

* the demo models over the 64 held-out signs, for the predicted class and every class;
* torchvision resnet18, mobilenet_v2 and vgg16_bn with random weights and BatchNorm
  statistics drawn at random (so that merging them matters), 4 random 64×64 inputs, for
  the predicted class and five random classes.

Targets whose logit is near zero (``|z| < NEAR_ZERO * max|logits|``) are reported apart,
as the largest ``|sum - z| / max|logits|``: the health rule judges them in absolute terms.

    .venv/bin/python benchmarks/measure_conservation.py [--json FILE] [--models resnet18,...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.attribution import make_explainer  # noqa: E402
from harness.health import NEAR_ZERO  # noqa: E402
from harness.imageio import read_rgb  # noqa: E402
from harness.models import LoadedModel, ModelEntry, build_model, load_registry, resize_image  # noqa: E402

RULES = ("lrp/epsilon_plus_flat", "lrp/epsilon_gamma_box", "lrp/epsilon_alpha2_beta1_flat")
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def measure(explainer: Any, x: torch.Tensor, targets: list[torch.Tensor]) -> dict[str, Any]:
    ratios: list[float] = []
    deviations: list[float] = []
    for target in targets:
        logits, relevance = explainer(x, target)
        z = logits.gather(1, target[:, None])[:, 0].double().numpy()
        total = relevance.double().sum(dim=tuple(range(1, relevance.ndim))).numpy()
        scale = logits.abs().max(dim=1).values.double().numpy()
        far = np.abs(z) >= NEAR_ZERO * scale
        ratios += list((total / z)[far])
        deviations += list((np.abs(total - z) / scale)[~far])
    quantiles = np.quantile(ratios, [0, 0.01, 0.5, 0.99, 1]).round(3).tolist() if ratios else []
    return {
        "backend": explainer.backend,
        "n": len(ratios),
        "min_p1_median_p99_max": quantiles,
        "near_zero_n": len(deviations),
        "near_zero_max_deviation": round(float(max(deviations)), 3) if deviations else None,
    }


def demo(out: dict[str, Any]) -> None:
    registry = load_registry(ROOT / "fixtures" / "models.yaml")
    paths = sorted(p for p in (ROOT / "fixtures" / "signs" / "heldout").glob("*.png") if "mask" not in p.name)
    for name in ("signs-clean", "signs-shortcut"):
        model = build_model(name, registry, torch.device("cpu"))
        x = model.to_input([resize_image(read_rgb(p), model.preprocessing.size) for p in paths])
        with torch.no_grad():
            predicted = model.module(x).argmax(dim=1)
        every = [torch.full((len(x),), k) for k in range(len(model.classes))]
        for rule in RULES:
            explainer = make_explainer(rule, model, "auto")
            out[f"{name} {rule} predicted"] = measure(explainer, x, [predicted])
            out[f"{name} {rule} every class"] = measure(explainer, x, every)


def random_batchnorm(module: torch.nn.Module, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            n = layer.num_features
            with torch.no_grad():
                layer.running_mean.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
                layer.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                layer.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                layer.bias.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)


def torchvision_models(out: dict[str, Any], names: list[str]) -> None:
    import torchvision

    for name in names:
        entry = ModelEntry.model_validate(
            {
                "architecture": f"torchvision:{name}",
                "classes": [f"c{i}" for i in range(1000)],
                "preprocessing": {"size": [64, 64], **IMAGENET},
            }
        )
        module = getattr(torchvision.models, name)(weights=None).eval()
        random_batchnorm(module)
        for param in module.parameters():
            param.requires_grad_(False)
        model = LoadedModel(name=name, entry=entry, module=module, device=torch.device("cpu"))
        low, high = (b for b in model.preprocessing.bounds())
        x = low + (high - low) * torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            predicted = module(x).argmax(dim=1)
        generator = torch.Generator().manual_seed(2)
        targets = [predicted] + [torch.randint(0, 1000, (4,), generator=generator) for _ in range(5)]
        for rule in RULES:
            out[f"{name} {rule} predicted + 5 random"] = measure(make_explainer(rule, model, "auto"), x, targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--models", default="resnet18,mobilenet_v2,vgg16_bn", help="torchvision models")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    out: dict[str, Any] = {}
    demo(out)
    torchvision_models(out, [m for m in args.models.split(",") if m])
    for key, value in out.items():
        print(f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
