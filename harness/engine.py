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
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import health as health_checks
from harness.agreement import agreement_columns
from harness.attribution import Explainer, make_explainer
from harness.errors import HarnessError, ModelError
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
    sweep: str = ""  # a swept variant's value: each value is an image of its own


@dataclass
class Request:
    """What the engine needs to materialise an image."""

    key: ImageKey
    case: CaseSpec
    variant: VariantSpec
    label: str
    chunk: str = ""  # work unit: under xdist a batch never crosses it (see harness.distribute)
    # Whether an item needs the relevance of the predicted class when it differs from
    # the label (only the sticker verdict does); every other row skips that second pass.
    predicted_relevance: bool = False


@dataclass
class ImageResult:
    """Model output and relevance for one image, at the model's input resolution."""

    variant: VariantImage | None = None
    logits: np.ndarray | None = None
    probs: np.ndarray | None = None
    predicted: int | None = None
    relevance_label: np.ndarray | None = None
    relevance_predicted: np.ndarray | None = None  # None: not requested (see Request)
    health_label: health_checks.Health | None = None
    health_predicted: health_checks.Health | None = None
    error: BaseException | None = None


@dataclass
class _Prepared:
    """An image whose inputs were all loaded and checked: it may join a batch."""

    key: ImageKey
    variant: VariantImage
    label: int
    x: torch.Tensor  # (1, C, H, W) model input


@dataclass
class EngineStats:
    """Counters for the run summary (and the benchmark)."""

    images: int = 0
    batches: int = 0
    lrp_rows: int = 0
    seconds_variants: float = 0.0
    seconds_model: float = 0.0
    retried_batches: int = 0  # batches that failed as a whole and ran image by image


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

    def __init__(
        self, registry_loader: Callable[[], Registry], device: torch.device, batch_size: int = 32, backend: str = "auto"
    ) -> None:
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
        # Several explainers of one image: its keys in run order (the first explainer's
        # logits give every one of them its prediction), and their agreement columns.
        self._siblings: dict[ImageKey, list[ImageKey]] = {}
        self._agreement: dict[ImageKey, dict[str, Any]] = {}
        # --xai-sanity: the originals' label maps, kept for the check (harness.sanity).
        self.keep_original_maps = False
        self.kept_maps: dict[ImageKey, np.ndarray] = {}
        self._models: dict[str, LoadedModel | ModelError] = {}
        self._explainers: dict[tuple[str, str], Explainer | HarnessError] = {}
        # model -> (LRP explainer, Grad-CAM explainer, their shared forward)
        self._sharing: dict[str, tuple[str, str, Joint]] = {}
        self._case_cache: OrderedDict[str, tuple[np.ndarray, np.ndarray] | BaseException] = OrderedDict()
        self.stats = EngineStats()
        self.notes: list[str] = []
        # Per "model / explainer": backend and the conservation of every label map whose
        # target logit is not near zero (the run's summary gives the median).
        self.health: dict[str, dict[str, Any]] = {}
        # Under xdist each worker runs whole chunks (see harness.distribute), so its
        # batches must stay inside one; otherwise it would compute other workers' images.
        self.confine_to_chunk = False
        # --xai-conservation: a band for every item, "off", or None (the items' own thresholds).
        self.conservation_override: tuple[float, float] | str | None = None

    # ------------------------------------------------------------------ planning

    def plan(self, requests: list[Request], consumers: dict[ImageKey, int]) -> None:
        """Register the images (in run order) and how many items read each."""
        for request in requests:
            if request.key not in self._requests:
                self._requests[request.key] = request
                self._position[request.key] = len(self._order)
                self._order.append(request.key)
                self._siblings.setdefault(image_of(request.key), []).append(request.key)
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
            except Exception as exc:  # noqa: BLE001 - the architecture is user code: any failure is its items' error
                self._models[name] = ModelError(f"model {name!r} cannot be loaded: {describe(exc)}")
        loaded = self._models[name]
        if isinstance(loaded, ModelError):
            raise loaded
        return loaded

    def explainer(self, model_name: str, name: str) -> Explainer:
        key = (model_name, name)
        if key not in self._explainers:
            try:
                explainer = make_explainer(name, self.model(model_name), self.backend)  # type: ignore[arg-type]
                self._consider_sharing(model_name, explainer)
                self._explainers[key] = explainer
                if explainer.note:
                    self.notes.append(backend_note(model_name, explainer))
            except HarnessError as exc:
                self._explainers[key] = exc
            except Exception as exc:  # noqa: BLE001 - one model's explainer must not stop the others
                self._explainers[key] = HarnessError(
                    f"explainer {name!r} cannot explain model {model_name!r}: {describe(exc)}"
                )
        found = self._explainers[key]
        if isinstance(found, HarnessError):
            raise found
        return found

    def _consider_sharing(self, model_name: str, explainer: Explainer) -> None:
        """Whether ``explainer`` shares one forward per batch with an explainer of the same model
        bound before it (the graph LRP engine followed by Grad-CAM, see
        :mod:`harness.attribution.shared`); its note says so, or why it runs its own forward."""
        from harness.attribution.cam import GradCAM
        from harness.attribution.graph import GraphLRP
        from harness.attribution.shared import SharedForward

        earlier = [
            found
            for (model, _), found in self._explainers.items()
            if model == model_name and isinstance(found, Explainer)
        ]
        if not earlier:
            return
        lead = next((e for e in earlier if isinstance(e.engine, GraphLRP)), None)
        if model_name in self._sharing:
            why = "only one explainer shares the LRP engine's forward"
        elif isinstance(explainer.engine, GradCAM) and lead is not None:
            assert isinstance(lead.engine, GraphLRP)
            why = SharedForward.problem(lead.engine, explainer.engine) or ""
            if not why:
                self._sharing[model_name] = (lead.name, explainer.name, _pair(lead, explainer))
                explainer.note = f"{explainer.note}; shares the forward of {lead.name} (one model forward per batch)"
                return
        elif isinstance(explainer.engine, GraphLRP) and any(isinstance(e.engine, GradCAM) for e in earlier):
            why = "Grad-CAM comes first in the run and its forward decides the predictions; name LRP first to share"
        else:
            why = "only the graph LRP engine (backend fast) and Grad-CAM on a CNN share one"
        others = ", ".join(e.name for e in earlier)
        own = f"runs its own forward, not shared with {others}: {why}"
        explainer.note = f"{explainer.note}; {own}" if explainer.note else own

    def summary(self) -> dict[str, Any]:
        """Notes and counters, as plain data (an xdist worker sends them to the controller)."""
        return {"notes": list(self.notes), "health": {k: dict(v) for k, v in self.health.items()}, **asdict(self.stats)}

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

    def input_of(self, request: Request) -> tuple[torch.Tensor, int]:
        """The model input (1, C, H, W) and label index of ``request``'s image, outside any
        batch (the sanity check's originals); raises :class:`HarnessError`."""
        model = self.model(request.key.model)
        if request.label not in model.classes:
            raise HarnessError(f"label {request.label!r} is not a class of model {model.name!r}")
        variant = self._materialise(request, model)
        return model.to_input([variant.image]), model.classes.index(request.label)

    def agreement(self, key: ImageKey) -> dict[str, Any]:
        """The agreement columns of ``key`` with the other explainers of its image (empty
        when one explainer explains it); kept after release."""
        return dict(self._agreement.get(key, {}))

    def release(self, key: ImageKey) -> None:
        """An item has read ``key``; drop the heavy arrays after the last reader."""
        remaining = self._consumers.get(key, 0) - 1
        self._consumers[key] = remaining
        if remaining <= 0 and key in self._results:
            old = self._results[key]
            self._results[key] = ImageResult(
                error=old.error, health_label=old.health_label, health_predicted=old.health_predicted
            )

    # ------------------------------------------------------------------ execution

    def _case_inputs(self, case: CaseSpec) -> tuple[np.ndarray, np.ndarray]:
        uid = case_uid(case)
        if uid not in self._case_cache:
            try:
                if case.image is None:
                    raise HarnessError("the case has no image")
                image = read_rgb(case.image)
                mask = rasterize(case.regions, image.shape[:2], case.base_dir)
                if case.regions:  # an `expect: absent` case may have no object at all
                    check_usable(mask)
                self._case_cache[uid] = (image, mask)
            except HarnessError as exc:
                self._case_cache[uid] = exc
            except Exception as exc:  # noqa: BLE001 - isolation: a bad input is its own case's error
                self._case_cache[uid] = HarnessError(f"reading the image or its regions failed: {describe(exc)}")
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
        native = apply_variant(
            request.variant.name,
            request.variant.settings,
            image,
            mask,
            lambda p: read_rgb(base / p),
            lambda p: read_rgba(base / p),
        )
        size = model.preprocessing  # input size and resize policy: masks get the image's exact geometry
        variant = VariantImage(
            image=resize_image(native.image, size),
            object_mask=resize_mask(native.object_mask, size),
            removed_mask=None if native.removed_mask is None else resize_mask(native.removed_mask, size),
            sticker_mask=None if native.sticker_mask is None else resize_mask(native.sticker_mask, size),
        )
        if request.case.regions:
            check_usable(variant.object_mask, "object region at the model's input size")
        if variant.removed_mask is not None:
            check_usable(variant.removed_mask, "removed region at the model's input size")
        if variant.sticker_mask is not None and not variant.sticker_mask.any():
            raise HarnessError("the sticker vanishes at the model's input size; make it larger")
        return variant

    def _run_batch(self, first: ImageKey) -> None:
        # A batch is a set of images of one model; every explainer planned for them runs
        # over the same prepared inputs (rendered once), explainer after explainer.
        chunk = self._requests[first].chunk
        images = [image_of(first)]
        for key in self._order[self._position[first] + 1 :]:
            if len(images) >= self.batch_size:
                break
            if self.confine_to_chunk and self._requests[key].chunk != chunk:
                break
            if key.model == first.model and key not in self._results and image_of(key) not in images:
                images.append(image_of(key))
        keys = {image: [k for k in self._siblings[image] if k not in self._results] for image in images}
        try:
            model = self.model(first.model)
        except HarnessError as exc:
            for siblings in keys.values():
                for key in siblings:
                    self._store(key, ImageResult(error=exc))
            return
        start = time.perf_counter()
        prepared: dict[ImageKey, _Prepared] = {}
        for image, siblings in keys.items():
            one = self._prepare(siblings[0], model)
            if one is None:
                for key in siblings[1:]:
                    self._store(key, self._results[siblings[0]])
            else:
                prepared[image] = one
        self.stats.seconds_variants += time.perf_counter() - start
        if not prepared:
            return
        start = time.perf_counter()
        shared: dict[ImageKey, np.ndarray] = {}  # image -> the logits its predictions come from
        names = list(dict.fromkeys(key.explainer for siblings in keys.values() for key in siblings))
        readies = {
            name: [
                replace(prepared[image], key=key)
                for image, siblings in keys.items()
                if image in prepared
                for key in siblings
                if key.explainer == name
            ]
            for name in names
        }
        bound: dict[str, Explainer] = {}
        for name in names:
            try:
                bound[name] = self.explainer(first.model, name)
            except HarnessError as exc:
                for one in readies[name]:
                    self._store(one.key, ImageResult(error=exc))
        for group in self._share_groups(first.model, [n for n in names if n in bound], readies):
            if len(group) == 2:
                lead, cam = group
                joint = self._sharing[first.model][2]
                try:
                    self._explain([(bound[lead], readies[lead]), (bound[cam], readies[cam])], model, joint, shared)
                    continue
                except Exception:  # noqa: BLE001 - each explainer on its own then finds the guilty image
                    pass
            for name in group:
                self._explain_alone(readies[name], model, bound[name], shared)
        for image in prepared:
            self._agree(self._siblings[image])
        self.stats.seconds_model += time.perf_counter() - start

    def _agree(self, siblings: list[ImageKey]) -> None:
        """Agreement of every explainer's label map with the first explainer's (the first's
        own row: with the second's), for an image explained by two or more explainers."""
        maps = [
            (key, found.relevance_label)
            for key in siblings
            if (found := self._results.get(key)) is not None and found.relevance_label is not None
        ]
        if len(maps) < 2:
            return
        (first, reference), (second, second_map) = maps[0], maps[1]
        self._agreement[first] = {**agreement_columns(reference, second_map), "agreement_with": second.explainer}
        for key, relevance in maps[1:]:
            self._agreement[key] = {**agreement_columns(reference, relevance), "agreement_with": first.explainer}

    def _prepare(self, key: ImageKey, model: LoadedModel) -> _Prepared | None:
        """Load, render and check every input of one image before it may join a batch.

        Whatever goes wrong here (a HarnessError, but also OpenCV, PIL, numpy or memory
        errors from a hostile file) becomes this image's error and nobody else's.
        """
        request = self._requests[key]
        try:
            variant = self._materialise(request, model)
            if request.label not in model.classes:
                raise HarnessError(f"label {request.label!r} is not a class of model {model.name!r}")
            x = model.to_input([variant.image])
            problem = nonfinite_problem(x.detach().float().cpu().numpy(), "model input after preprocessing values")
            if problem is not None:
                raise HarnessError(f"{problem}; check the model's preprocessing (value_range, mean, std)")
        except HarnessError as exc:
            self._store(key, ImageResult(error=exc))
            return None
        except Exception as exc:  # noqa: BLE001 - see the docstring
            self._store(key, ImageResult(error=HarnessError(f"preparing the image failed: {describe(exc)}")))
            return None
        return _Prepared(key, variant, model.classes.index(request.label), x)

    def _share_groups(self, model_name: str, names: list[str], readies: dict[str, list[_Prepared]]) -> list[list[str]]:
        """The explainers of a batch in run order, the pair that shares one forward (the
        graph LRP engine and Grad-CAM, see :meth:`explainer`) as one group: only when the LRP
        explainer comes first, so that the logits deciding the predictions stay the ones LRP's
        own forward gives, and both explain the same images."""
        sharing = self._sharing.get(model_name)
        if sharing is None:
            return [[name] for name in names]
        lead, cam, _ = sharing
        pair = (
            lead in names
            and cam in names
            and names.index(lead) < names.index(cam)
            and [image_of(one.key) for one in readies[lead]] == [image_of(one.key) for one in readies[cam]]
        )
        if not pair:
            return [[name] for name in names]
        return [[lead, cam] if name == lead else [name] for name in names if name != cam]

    def _explain_alone(
        self, ready: list[_Prepared], model: LoadedModel, explainer: Explainer, shared: dict[ImageKey, np.ndarray]
    ) -> None:
        """One explainer over a batch; a batch that fails runs image by image to find the guilty one."""
        joint = _alone(explainer)
        try:
            self._explain([(explainer, ready)], model, joint, shared)
        except Exception:  # noqa: BLE001 - isolation: find the guilty image by running each alone
            self.stats.retried_batches += 1
            for one in ready:
                try:
                    self._explain([(explainer, [one])], model, joint, shared)
                except Exception as exc:  # noqa: BLE001
                    self._store(
                        one.key,
                        ImageResult(error=HarnessError(f"model + explainer failed on this image: {describe(exc)}")),
                    )

    def _explain(
        self,
        members: list[tuple[Explainer, list[_Prepared]]],
        model: LoadedModel,
        joint: Joint,
        shared: dict[ImageKey, np.ndarray],
    ) -> None:
        """Model + explainers over prepared images; checks every value before storing it.

        ``members``: the explainers ``joint`` computes at once (one, or the pair sharing a
        forward), each with its keys of the same images in the same order. ``shared`` holds
        the logits of images an earlier explainer of this batch already ran: those rows keep
        that prediction (one forward decides an image's prediction for every explainer), the
        others add theirs."""
        first = members[0][1]
        x = torch.cat([one.x for one in first])
        labels = torch.tensor([one.label for one in first], device=model.device)
        logits_t, relevances_t = joint(x, labels)
        logits = logits_t.detach().float().cpu().numpy()
        for row, one in enumerate(first):
            logits[row] = shared.setdefault(image_of(one.key), logits[row].copy())
        relevances = [r.detach().float().cpu().numpy() for r in relevances_t]
        problems: dict[int, str] = {}
        for row in range(len(first)):
            problem = nonfinite_problem(logits[row], "model output logits") or tie_problem(logits[row], model.classes)
            if problem is not None:
                problems[row] = problem
        predicted = logits.argmax(axis=1)
        wants = [
            [
                row
                for row, one in enumerate(ready)
                if row not in problems and self._requests[one.key].predicted_relevance and predicted[row] != one.label
            ]
            for _, ready in members
        ]
        relevance_pred: list[dict[int, np.ndarray]] = [{} for _ in members]
        wanted = sorted(set().union(*wants))
        if wanted:
            # Second pass only for the rows that need it and whose prediction differs:
            # the relevance of the class the model chose (what drew a sticker flip).
            index = torch.tensor(wanted, device=model.device)
            _, second_t = joint(x[index], torch.from_numpy(predicted[wanted]).to(model.device))
            for member, (maps_t, want) in enumerate(zip(second_t, wants)):
                maps = maps_t.detach().float().cpu().numpy()
                for j, row in enumerate(wanted):
                    if row in want:
                        relevance_pred[member][row] = maps[j]
                self.stats.lrp_rows += len(want)
        for (explainer, ready), relevance, second_maps in zip(members, relevances, relevance_pred):
            self._store_rows(ready, model, explainer, logits, relevance, second_maps, problems)

    def _store_rows(
        self,
        ready: list[_Prepared],
        model: LoadedModel,
        explainer: Explainer,
        logits: np.ndarray,
        relevance: np.ndarray,
        relevance_pred: dict[int, np.ndarray],
        problems: dict[int, str],
    ) -> None:
        """One explainer's results of a batch: health, maps and predictions per row."""
        predicted = logits.argmax(axis=1)
        self.stats.batches += 1
        self.stats.images += len(ready)
        self.stats.lrp_rows += len(ready)
        group = self.health.setdefault(
            f"{model.name} / {explainer.name}", {"backend": explainer.backend, "conservation": []}
        )
        for row, one in enumerate(ready):
            if row in problems:
                self._store(one.key, ImageResult(error=HarnessError(problems[row])))
                continue
            probs = torch.softmax(torch.from_numpy(logits[row]), dim=0).numpy()
            pred = int(predicted[row])
            label_health = health_checks.measure(logits[row], one.label, relevance[row])
            if not label_health.near_zero and label_health.conservation is not None:
                group["conservation"].append(label_health.conservation)
            second = relevance_pred.get(row)
            pred_health = None if second is None else health_checks.measure(logits[row], pred, second)
            label_map = relevance[row].sum(axis=0)
            if self.keep_original_maps and one.key.variant == "original":
                self.kept_maps[one.key] = label_map
            pred_map = label_map if pred == one.label else (None if second is None else second.sum(axis=0))
            self._store(
                one.key,
                ImageResult(
                    variant=one.variant,
                    logits=logits[row],
                    probs=probs,
                    predicted=pred,
                    relevance_label=label_map,
                    relevance_predicted=pred_map,
                    health_label=label_health,
                    health_predicted=label_health if pred == one.label else pred_health,
                ),
            )

    def _store(self, key: ImageKey, result: ImageResult) -> None:
        self._results[key] = result
        self._summaries[key] = (result.predicted, result.probs)


# (x, targets) -> (logits, one relevance per explainer it computes)
Joint = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]


def _pair(lrp: Explainer, cam: Explainer) -> Joint:
    from harness.attribution.cam import GradCAM
    from harness.attribution.graph import GraphLRP
    from harness.attribution.shared import SharedForward

    assert isinstance(lrp.engine, GraphLRP) and isinstance(cam.engine, GradCAM)
    return SharedForward(lrp.engine, cam.engine)


def _alone(explainer: Explainer) -> Joint:
    def joint(x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        logits, relevance = explainer(x, targets)
        return logits, [relevance]

    return joint


def image_of(key: ImageKey) -> ImageKey:
    """The image a key computes, whichever explainer explains it."""
    return replace(key, explainer="")


def describe(exc: BaseException) -> str:
    """One line for an unexpected exception: its type and message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else '(no message)'}"


def tie_problem(logits: np.ndarray, classes: list[str]) -> str | None:
    """Why a logit row has no top-1 class (an exact tie), or ``None``."""
    top = logits.max()
    tied = np.flatnonzero(logits == top)
    if len(tied) < 2:
        return None
    if len(tied) == len(logits):
        return f"model output has no prediction: all {len(logits)} logits are equal ({top:.4g})"
    names = ", ".join(classes[i] if i < len(classes) else str(i) for i in tied)
    return f"model output has no prediction: the top logit {top:.4g} is shared by {names}"


def nonfinite_problem(values: np.ndarray, what: str) -> str | None:
    """``"<what> is not finite (NaN in 3 of 10 logits)"`` or ``None``."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    nan = int(np.isnan(values).sum())
    kind = "NaN" if nan == int(bad.sum()) else ("Inf" if nan == 0 else "NaN/Inf")
    unit = what.split()[-1]
    return f"{what.rsplit(' ', 1)[0]} is not finite ({kind} in {int(bad.sum())} of {values.size} {unit})"


def backend_note(model_name: str, explainer: Explainer) -> str:
    """Which backend explains a model, and why (run header and summary)."""
    return f"{model_name} / {explainer.name}: {explainer.backend} — {explainer.note}"


def case_uid(case: CaseSpec) -> str:
    """Identity of a case across items: its file and position."""
    return f"{Path(case.suite_path)}::{case.index}"
