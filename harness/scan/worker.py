"""One batch of a scan: read, preprocess, explain, measure; the same code on every engine.

A :class:`ScanWorker` holds one model and its explainer. It takes a batch as columns
(``index``, ``path``, ``label``, ``region``: strings only) and returns a
:class:`pyarrow.Table` with one row per image: the prediction, the probabilities, the
mass of positive relevance on the object (the metric of the suites, at the model's input
resolution) and a downsized heatmap for SpRAy. The local engine calls it directly; Ray
Data instantiates it once per actor and calls it from ``map_batches``.

One bad image fails alone: its row carries an ``error`` and the rest of the batch runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from harness.errors import HarnessError

__all__ = ["SCHEMA", "ScanSettings", "ScanWorker", "heatmaps_of", "to_columns"]


@dataclass(frozen=True)
class ScanSettings:
    """Everything a worker needs to rebuild the scan's model and explainer anywhere."""

    model: str
    registry: str  # absolute path: workers may run in another directory
    explainer: str = "lrp/epsilon_plus_flat"
    backend: str = "auto"
    device: str = "auto"
    heatmap_size: int = 32
    min_object_mass: float = 0.5

    def identity(self) -> dict[str, Any]:
        """The settings a resumed scan must share with the parts already written."""
        return {
            "model": self.model,
            "registry": self.registry,
            "explainer": self.explainer,
            "heatmap_size": self.heatmap_size,
            "min_object_mass": self.min_object_mass,
        }


SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("label", pa.string()),
        ("predicted", pa.string()),
        ("p_label", pa.float64()),
        ("p_predicted", pa.float64()),
        ("probabilities", pa.list_(pa.float32())),
        ("target_logit", pa.float64()),
        ("relevance_sum", pa.float64()),
        ("has_region", pa.bool_()),
        ("object_area", pa.float64()),
        ("mass", pa.float64()),
        ("lift", pa.float64()),
        ("rank_accuracy", pa.float64()),
        ("pointing_game", pa.bool_()),
        ("mostly_outside", pa.bool_()),
        ("error", pa.string()),
        ("heatmap_peak", pa.float64()),
        ("heatmap", pa.binary()),
    ]
)


def to_columns(batch: Any) -> dict[str, list[Any]]:
    """A batch as plain column lists, whatever format the engine hands over."""
    if isinstance(batch, pa.Table):
        return batch.to_pydict()
    if isinstance(batch, dict):
        return {k: list(v.tolist() if isinstance(v, np.ndarray) else v) for k, v in batch.items()}
    if hasattr(batch, "to_dict"):  # pandas
        return {k: list(v) for k, v in batch.to_dict(orient="list").items()}
    raise HarnessError(f"cannot read a batch of type {type(batch).__name__}")


def heatmaps_of(table: pa.Table, size: int) -> np.ndarray:
    """The downsized maps of a table's rows as (N, size, size) float32 (zeros for errors)."""
    out = np.zeros((table.num_rows, size, size), np.float32)
    blobs = table.column("heatmap").to_pylist()
    peaks = table.column("heatmap_peak").to_pylist()
    for i, (blob, peak) in enumerate(zip(blobs, peaks)):
        if blob:
            out[i] = np.frombuffer(blob, np.float16).reshape(size, size).astype(np.float32) * np.float32(peak)
    return out


@dataclass
class _Loaded:
    """A batch after reading: the images that loaded, and the rows' early errors."""

    columns: dict[str, list[Any]]
    images: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray | None] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # batch row of each loaded image
    errors: dict[int, str] = field(default_factory=dict)
    pixels: np.ndarray | None = None  # the loaded images normalised, (N, H, W, C) float32


class ScanWorker:
    """The model and explainer of a scan, applied to batches of paths."""

    def __init__(self, settings: ScanSettings | dict[str, Any]) -> None:
        import torch

        from harness.api import explain, load_model

        self.settings = settings if isinstance(settings, ScanSettings) else ScanSettings(**settings)
        self.model = load_model(self.settings.model, registry=self.settings.registry, device=self.settings.device)
        # Bind the explainer now (tracing the model, choosing the backend): part of setting
        # up, like loading the weights, not of the first batch.
        height, width = self.model.preprocessing.size
        probe = torch.zeros(1, 3, height, width, device=self.model.device)
        explain(self.model, probe, 0, explainer=self.settings.explainer, backend=self.settings.backend)

    def __call__(self, batch: Any) -> pa.Table:
        return self.compute(self.load(batch))

    # ------------------------------------------------------------------ reading

    def load(self, batch: Any) -> _Loaded:
        """Read and fit every image (and mask) of the batch; failures become row errors."""
        from harness.imageio import read_rgb
        from harness.preprocess import resize_image, resize_mask
        from harness.regions import check_usable, rasterize

        from .manifest import parse_region

        columns = to_columns(batch)
        out = _Loaded(columns)
        pre = self.model.preprocessing
        regions = columns.get("region") or [None] * len(columns["path"])
        for row, (path, region) in enumerate(zip(columns["path"], regions)):
            try:
                image = read_rgb(path)
                mask = None
                if region:
                    native = rasterize([parse_region(region)], image.shape[:2], Path("/"))
                    check_usable(native)
                    mask = resize_mask(native, pre)
                    check_usable(mask, "object region at the model's input size")
                out.images.append(resize_image(image, pre))
                out.masks.append(mask)
                out.rows.append(row)
            except HarnessError as exc:
                out.errors[row] = str(exc)
        if out.images:
            out.pixels = self.normalise(out.images)
        return out

    def normalise(self, images: list[np.ndarray]) -> np.ndarray:
        """The model's normalisation (``Preprocessing.to_tensor``'s arithmetic, in the same
        order and precision, so the values are identical) in numpy, channels last.

        Done here, on the reading thread, instead of in torch on the model's: numpy
        frees the GIL, and ``.float()`` of a channels-last view is slow with several torch
        threads. The tensor stays channels-last (as ``to_tensor`` makes it), the layout
        in which the LRP engine is fastest on the CPU.
        """
        pre = self.model.preprocessing
        lo, hi = pre.value_range
        batch = np.stack(images).astype(np.float32)
        batch *= np.float32((hi - lo) / 255.0)
        batch += np.float32(lo)
        batch -= np.asarray(pre.mean, np.float32)
        batch /= np.asarray(pre.std, np.float32)
        return batch

    # ------------------------------------------------------------------ computing

    def compute(self, loaded: _Loaded) -> pa.Table:
        """Explain the loaded images in one batched pass and build the batch's rows."""
        import torch

        from harness.api import explain

        columns = loaded.columns
        n = len(columns["path"])
        rows: list[dict[str, Any]] = [
            {"path": columns["path"][i], "label": columns["label"][i], "error": loaded.errors.get(i)} for i in range(n)
        ]
        if loaded.pixels is not None:
            x = torch.from_numpy(loaded.pixels).permute(0, 3, 1, 2).to(self.model.device)
            labels = [columns["label"][i] for i in loaded.rows]
            logits_t, relevance_t = explain(
                self.model, x, labels, explainer=self.settings.explainer, backend=self.settings.backend
            )
            logits = logits_t.float().cpu()
            probabilities = torch.softmax(logits, dim=1).numpy()
            maps = relevance_t.float().sum(dim=1).cpu().numpy()
            logits_np = logits.numpy()
            for j, row in enumerate(loaded.rows):
                rows[row].update(self._measure(logits_np[j], probabilities[j], maps[j], loaded.masks[j], labels[j]))
        return pa.Table.from_pylist(rows, schema=SCHEMA)

    def _measure(
        self, logits: np.ndarray, probabilities: np.ndarray, relevance: np.ndarray, mask: np.ndarray | None, label: str
    ) -> dict[str, Any]:
        from harness.errors import MetricError
        from harness.metrics import region_metrics

        classes = self.model.classes
        target = classes.index(label)
        top = int(np.argmax(probabilities))
        out: dict[str, Any] = {
            "predicted": classes[top],
            "p_label": float(probabilities[target]),
            "p_predicted": float(probabilities[top]),
            "probabilities": probabilities.astype(np.float32).tolist(),
            "target_logit": float(logits[target]),
            "relevance_sum": float(relevance.astype(np.float64).sum()),
            "has_region": mask is not None,
        }
        if not np.isfinite(relevance).all() or not np.isfinite(probabilities).all():
            out["error"] = "explanation unreliable: the relevance map or the probabilities are not finite"
            return out
        size = self.settings.heatmap_size
        small = cv2.resize(relevance.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        peak = float(np.abs(small).max())
        # float16 keeps three digits of the map over its peak; relevance itself may lie
        # below float16's normal range, so the peak is stored beside it.
        scaled = small / peak if peak > 0 and math.isfinite(peak) else np.zeros_like(small)
        out["heatmap_peak"] = peak
        out["heatmap"] = scaled.astype(np.float16).tobytes()
        if mask is not None:
            try:
                metrics = region_metrics(relevance, mask)
            except MetricError as exc:
                out["error"] = f"object mass undefined: {exc}"
                return out
            out.update(
                object_area=metrics.area,
                mass=metrics.mass,
                lift=metrics.lift,
                rank_accuracy=metrics.rank_accuracy,
                pointing_game=metrics.pointing_game,
                mostly_outside=metrics.mass < self.settings.min_object_mass,
            )
        return out
