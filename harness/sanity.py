"""Model-parameter randomisation check (Adebayo et al. 2018): does the explanation depend on the model?

``--xai-sanity`` adds one item per model × explainer of the run, ``sanity[model-explainer]``.
It explains the suites' own original images (each case once, with its label as the target)
on the trained model and on a copy whose layers are all re-initialised, top layer first
down to the input (the last step of the cascading randomisation, the efficient variant: one
extra explanation per image), and compares the two maps of each image (summed over
channels) by Spearman's rank correlation. The item **fails** when the median over the
images exceeds :data:`MAX_RANK_CORRELATION`: an explainer whose maps barely change when
the weights are noise explains the image, not the model (an edge detector does exactly
that). The trained maps are the ones the run's items already computed (the engine keeps
the originals' label maps when the check is on); only images no selected item computed
are explained twice.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch

from harness.agreement import rank_correlation
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.engine import Engine, Request
    from harness.models import LoadedModel

# Median rank correlation above which the explanation counts as independent of the model
# (docs/explainers.md has the figures). On the demo's 54 original images (signs-shortcut /
# signs-clean): LRP epsilon_plus_flat 0.15 / 0.21, epsilon_gamma_box 0.03 / 0.03,
# alpha2_beta1 0.04 / 0.03, Grad-CAM 0.22 / 0.04, input x gradient 0.00 / -0.01; an edge
# detector of the input 1.00. LRP's z+ rules keep part of the input's structure under
# randomisation (Sixt et al. 2020): epsilon_plus_flat reaches 0.55 on the ten 50 km/h signs
# alone, which this threshold flags.
MAX_RANK_CORRELATION = 0.5
SEED = 0


@dataclass
class SanityResult:
    model: str
    explainer: str
    images: int
    median: float | None  # median rank correlation; None: no image gave a defined one
    skipped: list[str]  # why an image did not count

    @property
    def passed(self) -> bool:
        return self.median is not None and self.median <= MAX_RANK_CORRELATION

    def message(self) -> str:
        what = f"sanity of {self.explainer} on {self.model}"
        if self.median is None:
            return f"{what}: no image gave a defined rank correlation ({'; '.join(self.skipped[:3]) or 'no images'})"
        verdict = (
            "the explanation depends on the model's weights"
            if self.passed
            else "the explanation barely changes when the weights are re-initialised: it does not explain the model"
        )
        op = "<=" if self.passed else ">"
        return (
            f"{what}: median rank correlation of the trained and the randomised model's maps "
            f"{self.median:.2f} {op} {MAX_RANK_CORRELATION} over {self.images} original images; {verdict}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "explainer": self.explainer,
            "images": self.images,
            "median_rank_correlation": self.median,
            "threshold": MAX_RANK_CORRELATION,
            "passed": self.passed,
            "message": self.message(),
        }


def randomised(model: LoadedModel, seed: int = SEED) -> LoadedModel:
    """A copy of ``model`` with every parameter re-initialised, top layer first
    (registration order reversed), seeded; the original is untouched.

    Layers with ``reset_parameters`` (or ``_reset_parameters``, as attention has) use their
    own initialisation; a parameter no such method covers (a ViT's class token and position
    embedding, a custom layer's weight) is drawn from a normal distribution with its own
    standard deviation, so that nothing learned survives into the "random" model.
    """
    module = copy.deepcopy(model.module)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    count = 0
    try:
        with torch.no_grad():
            for sub in reversed(list(module.modules())):
                own = list(sub.parameters(recurse=False))
                if not own:
                    continue
                reset = getattr(sub, "reset_parameters", None) or getattr(sub, "_reset_parameters", None)
                if callable(reset):
                    reset()
                else:
                    for parameter in own:
                        std = float(parameter.float().std()) if parameter.numel() > 1 else 0.0
                        parameter.normal_(0.0, std if std > 0 else 0.02)
                count += 1
    finally:
        torch.random.set_rng_state(generator_state)
    if count == 0:
        raise HarnessError(f"model {model.name!r} has no parameters to re-initialise")
    module.eval()
    return dataclasses.replace(model, module=module, explainers={})


def sanity_check(engine: Engine, model_name: str, explainer_name: str, requests: list[Request]) -> SanityResult:
    """Run the check for one model × explainer over the originals in ``requests``."""
    from harness.attribution import make_explainer

    model = engine.model(model_name)
    trained = engine.explainer(model_name, explainer_name)
    random_explainer = make_explainer(explainer_name, randomised(model), engine.backend)  # type: ignore[arg-type]
    skipped: list[str] = []
    inputs: list[tuple[Request, torch.Tensor, int]] = []
    for request in requests:
        try:
            x, label = engine.input_of(request)
        except HarnessError as exc:
            skipped.append(f"{request.case.case_id}: {exc}")
            continue
        inputs.append((request, x, label))
    correlations: list[float] = []
    for start in range(0, len(inputs), engine.batch_size):
        batch = inputs[start : start + engine.batch_size]
        x = torch.cat([one[1] for one in batch])
        labels = torch.tensor([one[2] for one in batch], device=model.device)
        kept = [engine.kept_maps.get(one[0].key) for one in batch]
        if any(m is None for m in kept):
            fresh = trained(x, labels)[1].detach().float().cpu().numpy().sum(axis=1)
            kept = [m if m is not None else fresh[i] for i, m in enumerate(kept)]
        noise = random_explainer(x, labels)[1].detach().float().cpu().numpy().sum(axis=1)
        for (request, _, _), a, b in zip(batch, kept, noise, strict=True):
            assert a is not None
            if not (np.isfinite(a).all() and np.isfinite(b).all()):
                skipped.append(f"{request.case.case_id}: a map is not finite")
                continue
            value = rank_correlation(a, b)
            if value is None:
                skipped.append(f"{request.case.case_id}: a map is constant")
                continue
            correlations.append(value)
    median = float(np.median(correlations)) if correlations else None
    return SanityResult(model_name, explainer_name, len(correlations), median, skipped)


class SanityFailure(Exception):
    """The explanation does not depend on the model."""


class SanityItem(pytest.Item):
    """``sanity[model-explainer]``: setup computes, call judges (like the suite items)."""

    def __init__(self, *, model: str, explainer: str, requests: list[Request], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.explainer = explainer
        self.requests = requests
        self.result: SanityResult | None = None

    def setup(self) -> None:
        from harness.collect import _state

        try:
            self.result = sanity_check(_state(self.config).engine, self.model, self.explainer, self.requests)
        except HarnessError as exc:
            pytest.fail(f"cannot run {self.name}: {exc}", pytrace=False)
        self.user_properties.append(("xai_sanity", self.result.as_dict()))

    def runtest(self) -> None:
        assert self.result is not None
        if not self.result.passed:
            raise SanityFailure(self.result.message())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, SanityFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


def sanity_items(session: pytest.Session, items: list[pytest.Item]) -> list[pytest.Item]:
    """One item per model × explainer of the suite items, over their cases' originals."""
    from harness.collect import XaiItem
    from harness.engine import ImageKey, Request, case_uid
    from harness.perturb import OriginalSettings
    from harness.spec import VariantSpec

    pairs: dict[tuple[str, str], dict[str, Request]] = {}
    for item in items:
        if not isinstance(item, XaiItem) or item.problems or not item.case.label:
            continue
        cases = pairs.setdefault((item.model, item.explainer), {})
        uid = case_uid(item.case)
        if uid not in cases:
            original = VariantSpec(name="original", line=item.case.line, settings=OriginalSettings())
            key = ImageKey(item.model, item.explainer, uid, "original")
            cases[uid] = Request(key, item.case, original, item.case.label or "")
    out: list[pytest.Item] = []
    for (model, explainer), cases in pairs.items():
        name = f"sanity[{model}-{explainer.replace('/', '_')}]"
        # The session is the parent (the check spans suites); its id is the name alone.
        out.append(
            SanityItem.from_parent(
                session, name=name, nodeid=name, model=model, explainer=explainer, requests=list(cases.values())
            )
        )
    return out
