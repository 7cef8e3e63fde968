"""One colour scale per case: the report recolours a case's heatmaps and overlays.

Items run (and write their pictures) one by one, each coloured on its own maximum,
so a map of ±0.0015 looks as saturated as one of ±0.093 beside it. Each picture job
also saves the signed relevance and the masks (``images["heatmap_data"]``, written
by :func:`harness.render.save_heatmap_data`); once the whole run is known the report
colours every map of a case (one model, one explainer) on one symmetric scale, the
``HEATMAP_PERCENTILE`` of |R| over those maps (the predicted class's maps included),
and states it once per case.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .model import Case

__all__ = ["DATA_KIND", "PREDICTED_KIND", "CaseHeatmaps", "case_heatmaps", "each_case_heatmaps"]

#: The image kind under which a row names its saved relevance (not an image).
DATA_KIND = "heatmap_data"
#: The predicted class's heatmap, where the item explains a class other than its label too.
PREDICTED_KIND = "heatmap_predicted"


@dataclass
class CaseHeatmaps:
    """Pictures of one case recoloured on its shared scale."""

    scale: float
    percentile: float
    maps: int
    pictures: dict[str, dict[str, bytes]] = field(default_factory=dict)  # item key -> kind -> PNG
    # item key -> SHA-256 of its input file, read here anyway (the review fingerprint needs it)
    input_digests: dict[str, bytes] = field(default_factory=dict)


def _resolve(path: str, base: Path | None) -> Path:
    source = Path(path)
    return source if source.is_absolute() or base is None else base / source


def case_heatmaps(case: Case, base_dir: Path | None = None) -> CaseHeatmaps | None:
    """Recolour the heatmap (and overlay, when the input is there) of every item of
    ``case`` that saved its relevance; ``None`` when none did (an older run, or pictures
    switched off): the items' own pictures are shown then."""
    data = {}
    for item in case.items:
        path = item.images.get(DATA_KIND)
        if path and _resolve(path, base_dir).is_file():
            data[item.key] = path
    if not data:
        return None
    import cv2

    from harness import render

    loaded = {key: render.load_heatmap_data(_resolve(path, base_dir)) for key, path in data.items()}
    # The predicted class's map (a second pass where the prediction is not the label) is
    # shown beside the label's, so it is coloured, and counted, on the same scale.
    predicted = {key: render.load_predicted_data(_resolve(path, base_dir)) for key, path in data.items()}
    maps = [relevance for relevance, _, _ in loaded.values()] + [m for m in predicted.values() if m is not None]
    scale = render.case_scale(maps)
    out = CaseHeatmaps(scale=scale, percentile=render.HEATMAP_PERCENTILE, maps=len(maps))
    for item in case.items:
        if item.key not in loaded:
            continue
        relevance, object_mask, sticker_mask = loaded[item.key]
        rgb = {"heatmap": render.heatmap_image(relevance, object_mask, sticker_mask, scale=scale)}
        other = predicted[item.key]
        if other is not None:
            rgb[PREDICTED_KIND] = render.heatmap_image(other, object_mask, sticker_mask, scale=scale)
        source = item.images.get("input")
        image = None
        if source:
            try:
                raw = _resolve(source, base_dir).read_bytes()
            except OSError:
                raw = b""
            if raw:
                out.input_digests[item.key] = hashlib.sha256(raw).digest()
                image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        if image is not None and image.shape[:2] == relevance.shape:
            rgb["overlay"] = render.overlay(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), relevance, scale=scale)
        # Encoded here, so that a thread pool running this function also does the encoding (OpenCV frees the GIL).
        encoded = {kind: cv2.imencode(".png", cv2.cvtColor(rgb[kind], cv2.COLOR_RGB2BGR)) for kind in rgb}
        out.pictures[item.key] = {kind: data.tobytes() for kind, (ok, data) in encoded.items() if ok}
    return out


def each_case_heatmaps(
    cases: list[Case], base_dir: Path | None = None, workers: int | None = None, window: int = 64
) -> Iterator[CaseHeatmaps | None]:
    """:func:`case_heatmaps` of each case, in order, computed on a few threads with at
    most ``window`` cases in flight (their PNGs are held until the page takes them)."""
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1 or len(cases) < 2:
        for case in cases:
            yield case_heatmaps(case, base_dir)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xai-report-heatmaps") as pool:
        pending: deque[Future[CaseHeatmaps | None]] = deque()
        for case in cases:
            pending.append(pool.submit(case_heatmaps, case, base_dir))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
