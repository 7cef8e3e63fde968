"""Plan every image the selected items need, then run model + explainer in batches.

Items never call the model themselves: they ask the engine for the result of an
:class:`ImageKey`; the first request for a key runs a whole batch of pending keys
(in the order the items will run), so the cost is one batched LRP pass per image
regardless of how many items read it. Results are dropped once every item that
needs them has read them, which bounds memory for suites of thousands of cases.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from harness.errors import HarnessError, ModelError
from harness.explain import Explainer, make_explainer
from harness.imageio import read_rgb, read_rgba
from harness.models import LoadedModel, Registry, build_model, resize_image, resize_mask
from harness.perturb import VariantImage, apply_variant
from harness.regions import check_usable, rasterize
from harness.spec import CaseSpec, VariantSpec


@dataclass(frozen=True)
class ImageKey:
    """One image to compute: a variant of a case, for one model and explainer."""

    model: str
    explainer: str
    case_uid: str
    variant: str


@dataclass
class Request:
    """What the engine needs to materialise an image."""

    key: ImageKey
    case: CaseSpec
    variant: VariantSpec
    label: str
    chunk: str = ""   # work unit: under xdist a batch never crosses it (see harness.distribute)
    # Whether an item needs the relevance of the predicted class when it differs from
    # the label (only the sticker verdict does); every other row skips that second pass.
    predicted_relevance: bool = False


@dataclass
class ImageResult:
    """Model output and relevance for one image, at the model's input resolution."""

    variant: VariantImage | None = None
    probs: np.ndarray | None = None
    predicted: int | None = None
    relevance_label: np.ndarray | None = None
    relevance_predicted: np.ndarray | None = None   # None: not requested (see Request)
    error: BaseException | None = None


@dataclass
class EngineStats:
    """Counters for the run summary (and the benchmark)."""

    images: int = 0
    batches: int = 0
    lrp_rows: int = 0
    seconds_variants: float = 0.0
    seconds_model: float = 0.0


class Engine:
    """Batched, cached execution of model + explainer over planned images.

    Parameters
    ----------
    registry_loader
        Returns the model registry (or raises :class:`ModelError`); called lazily.
    device
        Torch device for every model.
    batch_size
        Images per forward/backward pass; bounds memory.
    backend
        LRP backend: ``auto`` (fast engine, zennit fallback), ``fast`` or ``zennit``.
    """

    def __init__(self, registry_loader: Callable[[], Registry], device: torch.device, batch_size: int = 32,
                 backend: str = "auto") -> None:
        self._registry_loader = registry_loader
        self.device = device
        self.batch_size = max(1, batch_size)
        self.backend = backend
        self._requests: dict[ImageKey, Request] = {}
        self._order: list[ImageKey] = []
        self._position: dict[ImageKey, int] = {}
        self._consumers: dict[ImageKey, int] = {}
        self._results: dict[ImageKey, ImageResult] = {}
        self._summaries: dict[ImageKey, tuple[int | None, np.ndarray | None]] = {}
        self._models: dict[str, LoadedModel | ModelError] = {}
        self._explainers: dict[tuple[str, str], Explainer | HarnessError] = {}
        self._case_cache: OrderedDict[str, tuple[np.ndarray, np.ndarray] | BaseException] = OrderedDict()
        self.stats = EngineStats()
        self.notes: list[str] = []
        # Under xdist each worker runs whole chunks (see harness.distribute), so its
        # batches must stay inside one; otherwise it would compute other workers' images.
        self.confine_to_chunk = False

    # ------------------------------------------------------------------ planning

    def plan(self, requests: list[Request], consumers: dict[ImageKey, int]) -> None:
        """Register the images (in run order) and how many items read each."""
        for request in requests:
            if request.key not in self._requests:
                self._requests[request.key] = request
                self._position[request.key] = len(self._order)
                self._order.append(request.key)
            elif request.predicted_relevance:
                self._requests[request.key].predicted_relevance = True
        for key, count in consumers.items():
            self._consumers[key] = self._consumers.get(key, 0) + count

    def groups(self) -> list[tuple[str, str]]:
        """The planned (model, explainer) pairs, in run order."""
        return list(dict.fromkeys((key.model, key.explainer) for key in self._order))

    # ------------------------------------------------------------------ models

    def model(self, name: str) -> LoadedModel:
        """Load a model once per session (errors are remembered, not retried)."""
        if name not in self._models:
            try:
                self._models[name] = build_model(name, self._registry_loader(), self.device)
            except ModelError as exc:
                self._models[name] = exc
        loaded = self._models[name]
        if isinstance(loaded, ModelError):
            raise loaded
        return loaded

    def explainer(self, model_name: str, name: str) -> Explainer:
        key = (model_name, name)
        if key not in self._explainers:
            try:
                explainer = make_explainer(name, self.model(model_name), self.backend)  # type: ignore[arg-type]
                self._explainers[key] = explainer
                if explainer.note:
                    self.notes.append(backend_note(model_name, explainer))
            except HarnessError as exc:
                self._explainers[key] = exc
        found = self._explainers[key]
        if isinstance(found, HarnessError):
            raise found
        return found

    def summary(self) -> dict[str, Any]:
        """Notes and counters, as plain data (an xdist worker sends them to the controller)."""
        return {"notes": list(self.notes), **asdict(self.stats)}

    def loaded_models(self) -> list[LoadedModel]:
        return [m for m in self._models.values() if isinstance(m, LoadedModel)]

    # ------------------------------------------------------------------ results

    def result(self, key: ImageKey) -> ImageResult:
        """The result for ``key``, computing its batch on first use."""
        if key not in self._results:
            if key not in self._requests:
                raise HarnessError(f"internal: image {key} was not planned")
            self._run_batch(key)
        return self._results[key]

    def prediction(self, key: ImageKey) -> tuple[int | None, np.ndarray | None]:
        """Predicted index and probabilities of ``key``, kept even after release."""
        if key not in self._summaries:
            self.result(key)
        return self._summaries[key]

    def release(self, key: ImageKey) -> None:
        """An item has read ``key``; drop the heavy arrays after the last reader."""
        remaining = self._consumers.get(key, 0) - 1
        self._consumers[key] = remaining
        if remaining <= 0 and key in self._results:
            self._results[key] = ImageResult(error=self._results[key].error)

    # ------------------------------------------------------------------ execution

    def _case_inputs(self, case: CaseSpec) -> tuple[np.ndarray, np.ndarray]:
        uid = case_uid(case)
        if uid not in self._case_cache:
            try:
                if case.image is None:
                    raise HarnessError("the case has no image")
                image = read_rgb(case.image)
                mask = rasterize(case.regions, image.shape[:2], case.base_dir)
                check_usable(mask)
                self._case_cache[uid] = (image, mask)
            except HarnessError as exc:
                self._case_cache[uid] = exc
            while len(self._case_cache) > 64:
                self._case_cache.popitem(last=False)
        cached = self._case_cache[uid]
        if isinstance(cached, BaseException):
            raise cached
        return cached

    def _materialise(self, request: Request, model: LoadedModel) -> VariantImage:
        image, mask = self._case_inputs(request.case)
        base = request.case.base_dir
        assert request.variant.settings is not None
        native = apply_variant(request.variant.name, request.variant.settings, image, mask,
                               lambda p: read_rgb(base / p), lambda p: read_rgba(base / p))
        size = model.preprocessing  # input size and resize policy: masks get the image's exact geometry
        variant = VariantImage(
            image=resize_image(native.image, size),
            object_mask=resize_mask(native.object_mask, size),
            removed_mask=None if native.removed_mask is None else resize_mask(native.removed_mask, size),
            sticker_mask=None if native.sticker_mask is None else resize_mask(native.sticker_mask, size),
        )
        check_usable(variant.object_mask, "object region at the model's input size")
        if variant.removed_mask is not None:
            check_usable(variant.removed_mask, "removed region at the model's input size")
        if variant.sticker_mask is not None and not variant.sticker_mask.any():
            raise HarnessError("the sticker vanishes at the model's input size; make it larger")
        return variant

    def _run_batch(self, first: ImageKey) -> None:
        group = (first.model, first.explainer)
        chunk = self._requests[first].chunk
        keys = [first]
        for key in self._order[self._position[first] + 1:]:
            if len(keys) >= self.batch_size:
                break
            if self.confine_to_chunk and self._requests[key].chunk != chunk:
                break
            if (key.model, key.explainer) == group and key not in self._results:
                keys.append(key)
        try:
            model = self.model(first.model)
            explainer = self.explainer(first.model, first.explainer)
        except HarnessError as exc:
            for key in keys:
                self._store(key, ImageResult(error=exc))
            return
        start = time.perf_counter()
        ready: list[tuple[ImageKey, VariantImage, int]] = []
        for key in keys:
            request = self._requests[key]
            try:
                ready.append((key, self._materialise(request, model), model.classes.index(request.label)))
            except (HarnessError, ValueError) as exc:
                self._store(key, ImageResult(error=exc))
        self.stats.seconds_variants += time.perf_counter() - start
        if not ready:
            return
        start = time.perf_counter()
        x = model.to_input([variant.image for _, variant, _ in ready])
        labels = torch.tensor([label for _, _, label in ready], device=model.device)
        logits, relevance = explainer(x, labels)
        predicted = logits.argmax(dim=1)
        wanted = torch.tensor([self._requests[key].predicted_relevance for key, _, _ in ready],
                              device=model.device)
        differs = ((predicted != labels) & wanted).nonzero().flatten()
        relevance_pred: dict[int, np.ndarray] = {}
        if len(differs):
            # Second pass only for the rows that need it and whose prediction differs:
            # the relevance of the class the model chose (what drew a sticker flip).
            _, rel2 = explainer(x[differs], predicted[differs])
            maps = rel2.float().sum(dim=1).cpu().numpy()
            for j, row in enumerate(differs.tolist()):
                relevance_pred[row] = maps[j]
            self.stats.lrp_rows += len(differs)
        probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
        label_maps = relevance.float().sum(dim=1).cpu().numpy()
        self.stats.seconds_model += time.perf_counter() - start
        self.stats.batches += 1
        self.stats.images += len(ready)
        self.stats.lrp_rows += len(ready)
        for row, (key, variant, label) in enumerate(ready):
            pred = int(predicted[row])
            same = pred == label
            self._store(key, ImageResult(
                variant=variant, probs=probs[row], predicted=pred, relevance_label=label_maps[row],
                relevance_predicted=label_maps[row] if same else relevance_pred.get(row)))

    def _store(self, key: ImageKey, result: ImageResult) -> None:
        self._results[key] = result
        self._summaries[key] = (result.predicted, result.probs)


def backend_note(model_name: str, explainer: Explainer) -> str:
    """Which backend explains a model, and why (run header and summary)."""
    return f"{model_name} / {explainer.name}: {explainer.backend} — {explainer.note}"


def case_uid(case: CaseSpec) -> str:
    """Identity of a case across items: its file and position."""
    return f"{Path(case.suite_path)}::{case.index}"
