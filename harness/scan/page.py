"""The scan's HTML page: one self-contained file in the report's look.

The class figures (share mostly outside the object, with its interval) and, per class,
the SpRAy clusters as cards: mean heatmap, size, and the members closest to the mean
drawn as relevance over the image. Images are inlined as PNG data URIs; the only style
is the report's own CSS, allowed by hash in the page's Content-Security-Policy.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from harness import render
from harness.errors import HarnessError
from harness.imageio import read_rgb
from harness.preprocess import Preprocessing, resize_image

from .clusters import ClassClusters
from .stats import ClassSummary

__all__ = ["render_page", "write_page"]

_HERE = Path(__file__).resolve().parent
_CSS_EXTRA = """
.scan-figure { font-size: 1.1rem; margin: 0.3rem 0 0.8rem; }
.scan-share { font-weight: 700; }
.scan-clusters { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 460px), 1fr)); gap: 1rem; }
.scan-card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 0.8rem 1rem; }
.scan-mean { float: left; margin: 0 1rem 0.5rem 0; image-rendering: pixelated; border: 1px solid var(--line); }
.scan-facts { margin: 0; padding-left: 1rem; color: var(--muted); font-size: 0.9rem; }
.scan-reps { clear: both; display: flex; flex-wrap: wrap; gap: 0.5rem; }
.scan-reps figure { margin: 0; font-size: 0.75rem; color: var(--muted); width: 96px; overflow-wrap: anywhere; }
.scan-reps img { image-rendering: pixelated; }
"""


def _png(rgb: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise HarnessError("cannot encode a picture of the scan page")
    return "data:image/png;base64," + base64.b64encode(data.tobytes()).decode("ascii")


def _style() -> str:
    text = (_HERE.parent / "report" / "static" / "report.css").read_text(encoding="utf-8") + _CSS_EXTRA
    if "</" in text:
        raise HarnessError("the report's CSS must not contain '</'")
    return text


def _representative(
    table: pa.Table, row: int, maps: np.ndarray, size: tuple[int, int], pre: Preprocessing | None
) -> dict[str, Any]:
    path = table.column("path")[row].as_py()
    relevance = cv2.resize(np.asarray(maps[row], np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    try:
        # The image as the model saw it (crop or letterbox included), so the map lies on it.
        seen = resize_image(read_rgb(path), pre) if pre is not None else read_rgb(path)
        image = cv2.resize(seen, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        picture = render.overlay(image, relevance, scale=1.0)
    except HarnessError:  # the image went away since the scan: the map alone still says something
        picture = render.signed_heatmap(relevance, 1.0)
    return {
        "path": path,
        "name": Path(path).name,
        "overlay": Markup(_png(picture)),
        "p_label": table.column("p_label")[row].as_py(),
        "mass": table.column("mass")[row].as_py(),
    }


def render_page(
    table: pa.Table,
    maps: np.ndarray,
    summaries: Sequence[ClassSummary],
    groups: Sequence[ClassClusters],
    meta: dict[str, Any],
    notes: Sequence[str] = (),
    preprocessing: Preprocessing | None = None,
) -> str:
    """The page as a string; ``maps`` are the scan's heatmaps (over their peaks) in table order."""
    size = (int(meta.get("input_size", (96, 96))[0]), int(meta.get("input_size", (96, 96))[1]))
    view = []
    for group in groups:
        total = sum(len(c.rows) for c in group.clusters)
        cards = []
        for c in group.clusters:
            peak = float(np.abs(c.mean_map).max()) or 1.0
            mean_png = _png(render.heatmap_image(c.mean_map / peak, scale=1.0))
            cards.append(
                {
                    "number": c.number,
                    "size": len(c.rows),
                    "share": len(c.rows) / total,
                    "mean_png": Markup(mean_png),
                    "mean_p_label": c.mean_p_label,
                    "predicted_as_label": c.predicted_as_label,
                    "mean_mass": c.mean_mass,
                    "share_outside": c.share_outside,
                    "representatives": [
                        _representative(table, r, maps, size, preprocessing) for r in c.representatives
                    ],
                }
            )
        view.append(
            {
                "label": group.label,
                "k": group.result.k,
                "sampled": group.sampled,
                "of": group.of,
                "neighbours": group.result.neighbours,
                "chosen_by": group.result.chosen_by,
                "eigenvalues": ", ".join(f"{v:.3f}" for v in group.result.eigenvalues),
                "clusters": cards,
            }
        )
    style = _style()
    digest = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode()
    csp = f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; base-uri 'none'; form-action 'none'"
    env = Environment(loader=FileSystemLoader(str(_HERE / "templates")), autoescape=select_autoescape(["html"]))
    return env.get_template("scan.html").render(
        style=Markup(style), csp=csp, meta=meta, summaries=summaries, groups=view, notes=list(notes)
    )


def write_page(path: str | Path, html: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(html, encoding="utf-8")
    partial.replace(path)
    return path
