"""Render the report model to one HTML file plus an assets folder.

The template renders the summary and metadata itself; the per-case cards are built in
the browser from a JSON data island, so that a run with thousands of items opens
without the browser laying out tens of thousands of elements at once.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import stat
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from .baseline_view import baseline_section
from .charts import metric_charts, svg
from .heatmaps import DATA_KIND, each_case_heatmaps
from .model import (
    IMAGE_KINDS,
    METRICS,
    VARIANTS,
    VERDICT_HELP,
    Item,
    Report,
    build_report,
    verdict_label,
)
from .source import SourceViews

__all__ = ["AssetWriter", "decode_payload", "render_html", "write_report"]

_HERE = Path(__file__).parent
_MARKER = ".xai-report-assets"
_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _slug(text: str, limit: int = 48) -> str:
    slug = _UNSAFE.sub("_", text).strip("._-")
    return slug[:limit] or "image"


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (no second copy of every PNG; the
    core replaces its pictures by renaming, so a link keeps this run's picture), a
    copy otherwise."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


class AssetWriter:
    """Copy images next to the report, or inline them as data URIs.

    Parameters
    ----------
    report_path
        Path of the HTML file; assets go to ``<stem>_assets/`` beside it.
    self_contained
        Inline every image as a ``data:`` URI instead of copying it.
    base_dir
        Directory that relative image paths are resolved against.
    """

    def __init__(self, report_path: Path, self_contained: bool = False, base_dir: Path | None = None) -> None:
        self.report_path = report_path
        self.self_contained = self_contained
        self.base_dir = base_dir or Path.cwd()
        self.folder = report_path.with_name(f"{report_path.stem}_assets")
        self._urls: dict[Path, str | None] = {}
        self._names: set[str] = set()
        self._prepared = False
        self._made = 0
        # Files an earlier run left in the folder (only in a folder this writer created),
        # with their inode numbers (free from the directory listing: no stat per file).
        self._earlier: dict[str, int] = {}
        self._device = -1

    def _prepare(self) -> None:
        # Stale images from an earlier run at the same path would linger forever, but
        # only a folder this writer created may be cleaned: the marker file proves it.
        # It is not wiped first: a file this run would write again with the same content
        # is kept (deleting and rewriting tens of thousands of files was most of a rerun's
        # time), and whatever this run did not write goes in finish().
        if self.folder.exists() and (self.folder / _MARKER).exists():
            self._earlier = {entry.name: entry.inode() for entry in os.scandir(self.folder) if entry.name != _MARKER}
            self._device = self.folder.stat().st_dev
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / _MARKER).write_text("created by harness.report; rewritten on every run\n")
        self._prepared = True

    def finish(self) -> None:
        """Remove the files of an earlier run that this run did not write."""
        for name in set(self._earlier) - self._names:
            try:
                (self.folder / name).unlink()
            except IsADirectoryError:
                shutil.rmtree(self.folder / name, ignore_errors=True)
            except FileNotFoundError:
                pass
        self._earlier = {}

    def _place(self, source: Path, found: os.stat_result, name: str) -> None:
        target = self.folder / name
        if name in self._earlier:
            if (found.st_ino, found.st_dev) == (self._earlier[name], self._device):
                return  # the earlier run's hard link to this very file
            target.unlink(missing_ok=True)
        _link_or_copy(source, target)

    def url(self, path: str, hint: str) -> str | None:
        """Return the URL under which the page loads ``path``.

        Parameters
        ----------
        path
            Image file written by the core.
        hint
            Human part of the asset name (case, variant, kind); sanitised here.

        Returns
        -------
        str or None
            A relative URL or ``data:`` URI; ``None`` when the file is missing.
        """
        source = Path(path)
        if not source.is_absolute():
            source = self.base_dir / source
        if source in self._urls:
            return self._urls[source]
        try:
            found = source.stat()
        except OSError:
            found = None
        if found is None or not stat.S_ISREG(found.st_mode):
            self._urls[source] = None
            return None
        suffix = source.suffix.lower()
        if self.self_contained:
            mime = _MIME.get(suffix, "application/octet-stream")
            data = base64.b64encode(source.read_bytes()).decode("ascii")
            url: str | None = f"data:{mime};base64,{data}"
        else:
            if not self._prepared:
                self._prepare()
            digest = hashlib.sha1(str(source).encode("utf-8", "surrogatepass")).hexdigest()[:10]
            ext = suffix if suffix in _MIME else ".bin"
            name = f"{_slug(hint)}-{digest}{ext}"
            counter = 1
            while name in self._names:  # only on a digest collision
                counter += 1
                name = f"{_slug(hint)}-{digest}-{counter}{ext}"
            self._names.add(name)
            self._place(source, found, name)
            url = f"{quote(self.folder.name)}/{quote(name)}"
        self._urls[source] = url
        return url

    def png(self, content: bytes, hint: str, suffix: str = ".png") -> str:
        """The URL of a picture made for the report (a recoloured heatmap, a PNG; a source
        view, ``suffix`` ``.jpg`` for a photo), like :meth:`url` for a file."""
        if self.self_contained:
            mime = _MIME.get(suffix, "image/png")
            url = f"data:{mime};base64," + base64.b64encode(content).decode("ascii")
        else:
            if not self._prepared:
                self._prepare()
            name = f"{_slug(hint)}-{hashlib.sha1(content).hexdigest()[:10]}{suffix}"
            if name not in self._names:
                self._names.add(name)
                if name not in self._earlier:  # else: same name, same content hash, same bytes
                    (self.folder / name).write_bytes(content)
            url = f"{quote(self.folder.name)}/{quote(name)}"
        self._made += 1
        return url

    @property
    def count(self) -> int:
        """Number of distinct images that resolved to a URL, and pictures made here."""
        return sum(1 for url in self._urls.values() if url) + self._made


_ITEM_FIELDS = (
    "key", "nodeid", "line", "variant", "model", "explainer", "verdict", "passed", "message", "label", "predicted",
    "p_predicted", "p_label", "original_predicted", "pointing_game", "heatmap_scale", "heatmap_class",
    "longrepr", *METRICS,
)  # fmt: skip


def fingerprint(item: Item, base_dir: Path | None = None, input_digest: bytes | None = None) -> str:
    """What an expert judged: case, variant, model, explainer, verdict and the input
    image's content. A review is kept under it, so a rerun that changes none of these
    keeps the review, and one that changes any of them asks again. ``input_digest``:
    the SHA-256 of the input file when the caller has read it already."""
    digest = hashlib.sha256()
    for part in (item.suite, item.case_id, item.variant, item.model, item.explainer, item.group):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    source = item.images.get("input")
    if source and input_digest is not None:
        digest.update(input_digest)
    elif source:
        path = Path(source) if Path(source).is_absolute() or base_dir is None else base_dir / source
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digest.update(b"no input image")
    return digest.hexdigest()[:20]


# The data island stores each item and check as a list in these fields' order (field
# names repeated for every item were a third of a large report); decode_payload and the
# page turn them back into objects.
ITEM_FIELDS = (
    *_ITEM_FIELDS, "fingerprint", "rank", "outcome", "group", "review", "checks", "images",
)  # fmt: skip
CHECK_FIELDS = ("name", "metric", "value", "threshold", "op", "passed", "source")


def _packed(item: dict[str, Any], prefix: str) -> list[Any]:
    checks = [[check.get(name) for name in CHECK_FIELDS] for check in item["checks"]]
    # The assets folder is said once (DATA.assets), not in every image's URL.
    images = {k: url.removeprefix(prefix) if prefix else url for k, url in item["images"].items()}
    packed = {**item, "checks": checks, "images": images}
    return [packed.get(name) for name in ITEM_FIELDS]


def decode_payload(data: dict[str, Any]) -> dict[str, Any]:
    """The data island with its items and checks as dictionaries again (for readers of
    a written report: tests, scripts)."""
    item_fields: list[str] = data.get("item_fields") or []
    check_fields: list[str] = data.get("check_fields") or list(CHECK_FIELDS)
    if not item_fields:
        return data
    prefix = data.get("assets", "")
    for case in data["cases"]:
        items = []
        for row in case["items"]:
            item = dict(zip(item_fields, row))
            item["images"] = {k: url if url.startswith("data:") else prefix + url for k, url in item["images"].items()}
            item["checks"] = [
                {k: v for k, v in zip(check_fields, check) if not (k == "source" and v is None)}
                for check in item["checks"]
            ]
            items.append(item)
        case["items"] = items
        if case.get("source") and not case["source"].startswith("data:"):
            case["source"] = prefix + case["source"]
    return data


def _short(value: Any) -> Any:
    """Floats to six significant digits: the page shows three, and 17-digit reprs are
    most of the data island of a large run."""
    return float(f"{value:.6g}") if isinstance(value, float) else value


def _check_payload(check: Any) -> dict[str, Any]:
    data = {key: _short(value) for key, value in asdict(check).items()}
    if data.get("source") is None:
        data.pop("source", None)
    return data


def _item_payload(
    item: Item, assets: AssetWriter, recoloured: dict[str, Any] | None = None, input_digest: bytes | None = None
) -> dict[str, Any]:
    data = {name: _short(getattr(item, name)) for name in _ITEM_FIELDS}
    data["fingerprint"] = fingerprint(item, assets.base_dir, input_digest)
    data["rank"] = item.rank
    data["outcome"] = item.outcome
    data["group"] = item.group
    data["review"] = item.needs_review
    data["checks"] = [_check_payload(check) for check in item.checks]
    recoloured = recoloured or {}
    kinds = (*IMAGE_KINDS, *sorted(set(item.images) - set(IMAGE_KINDS) - {DATA_KIND}))
    data["images"] = {
        kind: url
        for kind in kinds
        if kind in item.images
        and kind not in recoloured  # the item's own picture is replaced, not copied
        and (url := assets.url(item.images[kind], f"{item.case_id}-{item.variant}-{kind}"))
    }
    for kind, picture in recoloured.items():
        data["images"][kind] = assets.png(picture, f"{item.case_id}-{item.variant}-{kind}-case-scale")
    return data


def _payload(report: Report, assets: AssetWriter) -> dict[str, Any]:
    meta = report.meta
    # Reviews are stored per project and report file, so two projects opened from
    # file:// (one shared origin in Chromium) do not overwrite each other's marks.
    namespace = hashlib.sha1(f"{meta.rootdir}|{assets.report_path.name}".encode()).hexdigest()[:12]
    prefix = "" if assets.self_contained else f"{quote(assets.folder.name)}/"
    cases = []
    sources = SourceViews(assets.base_dir)
    source_urls: dict[tuple[str, str], str] = {}
    # Recoloured on a few threads, a window of cases at a time (not the whole run's pictures at once).
    for case, shared in zip(report.cases, each_case_heatmaps(report.cases, assets.base_dir)):
        source = sources.picture(case)
        if source is not None and (case.suite, case.case_id) not in source_urls:
            url = assets.png(source.data, f"{case.case_id}-source", source.suffix)
            source_urls[(case.suite, case.case_id)] = url.removeprefix(prefix) if prefix else url
        cases.append(
            {
                "key": case.key,
                "suite": case.suite,
                "line": case.line,
                "location": case.location,
                "case_id": case.case_id,
                "description": case.description,
                "label": case.label,
                "model": case.model,
                "explainer": case.explainer,
                "device": case.device,
                "rank": case.rank,
                "heatmap_scale": shared.scale if shared else None,
                "heatmap_percentile": shared.percentile if shared else None,
                "heatmap_maps": shared.maps if shared else 0,
                # Variants of this case the run's explainers judge apart: [variant, [[explainer, verdict], ...]].
                "disagree": [[d.variant, [list(pair) for pair in d.verdicts.items()]] for d in case.disagreements],
                # The case's image file at its own resolution, object outlined (shared by its models and explainers).
                "source": source_urls.get((case.suite, case.case_id)) if source else None,
                "source_size": list(source.size) if source else None,
                "items": [
                    _packed(
                        _item_payload(
                            item,
                            assets,
                            shared.pictures.get(item.key) if shared else None,
                            shared.input_digests.get(item.key) if shared else None,
                        ),
                        prefix,
                    )
                    for item in case.items
                ],
            }
        )
        # Keys a case does not use are left out (a large run's data island must stay small).
        for key in ("disagree", "source", "source_size"):
            if not cases[-1][key]:
                del cases[-1][key]
    return {
        "version": 2,
        "assets": prefix,
        "item_fields": list(ITEM_FIELDS),
        "check_fields": list(CHECK_FIELDS),
        "title": meta.title,
        "namespace": namespace,
        "run": meta.started.isoformat() if meta.started else "",
        "verdicts": [{"id": verdict, "label": verdict_label(verdict)} for verdict in report.summary.by_verdict],
        "variants": list(VARIANTS),
        "metrics": METRICS,
        "cases": cases,
    }


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Compact JSON keeps the data island small; NaN would be invalid JSON.
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "separators": (",", ":"), "allow_nan": False}
    env.filters["verdict_label"] = verdict_label
    env.filters["duration"] = _format_duration
    return env


def _format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{seconds:.1f} s"


def _static(name: str) -> str:
    text = (_HERE / "static" / name).read_text(encoding="utf-8")
    # Inlined verbatim into <script>/<style>: a closing tag inside would end it early.
    if "</" in text:
        raise ValueError(f"static/{name} must not contain '</'")
    return text


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def render_html(report: Report, assets: AssetWriter) -> str:
    """Render ``report`` to an HTML string, resolving its images through ``assets``.

    Parameters
    ----------
    report
        The report model.
    assets
        Where images go (copied or inlined).

    Returns
    -------
    str
        The complete HTML document.
    """
    script, style = _static("report.js"), _static("report.css")
    payload = _payload(report, assets)
    # The inline script and style are allowed by hash only: even if some user string
    # escaped escaping, the browser would refuse to run an injected script.
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_csp_hash(script)}",
            f"style-src {_csp_hash(style)}",
            "img-src 'self' data: file: blob:",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    template = _environment().get_template("report.html")
    return template.render(
        report=report,
        meta=report.meta,
        summary=report.summary,
        verdict_help=VERDICT_HELP,
        payload=payload,
        script=Markup(script),
        style=Markup(style),
        csp=csp,
        baseline=baseline_section(report, assets),  # before image_count: it may add pictures
        image_count=assets.count,
        charts=[(chart, svg(chart)) for chart in metric_charts(report.items)],
        self_contained=assets.self_contained,
    )


def write_report(
    rows: Iterable[Mapping[str, Any] | Item],
    path: str | os.PathLike[str],
    meta: Mapping[str, Any] | None = None,
    self_contained: bool = False,
) -> Path:
    """Write the HTML report for ``rows`` to ``path``.

    Parameters
    ----------
    rows
        Rows of the data contract (dicts), or :class:`~harness.report.model.Item`
        objects.
    path
        Target HTML file; parent folders are created.
    meta
        Run metadata, see :meth:`~harness.report.model.RunMeta.from_mapping`; its
        ``rootdir`` also resolves relative image paths.
    self_contained
        Inline images as data URIs instead of copying them to ``<stem>_assets/``.

    Returns
    -------
    Path
        The written file.
    """
    target = Path(path).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    report = build_report(rows, meta)
    base = Path(meta["rootdir"]) if meta.get("rootdir") else None
    assets = AssetWriter(target, self_contained=self_contained, base_dir=base)
    html = render_html(report, assets)
    # Write then rename, so a browser reloading the report never sees half a file.
    partial = target.with_name(target.name + ".partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(target)
    assets.finish()
    return target
