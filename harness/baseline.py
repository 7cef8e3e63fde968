"""Model-version regression: compare a run's items with a baseline run's table.

A baseline is a results table saved with ``--xai-baseline-save PATH`` (Parquet with
pyarrow, or CSV). It carries a format marker and version (Parquet key-value metadata
``xai_harness``; a first line ``# xai-harness-baseline version=N`` in CSV), so that a
foreign or incompatible table is refused with a clear error instead of matching
nothing. Items are matched on what makes them the same test of the same model slot:
suite, case id, variant, sweep value, the model's *role* (its position in the models
the suite runs under, ``model_slot``: the suite's ``model`` list, or ``--xai-model``'s)
and explainer. The model's name is not part of the key, so the same suites run
against a new model version line up with the old one (docs/regression.md).
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.verdicts import REPRODUCIBLE_TOLERANCE, Check, Judgement, pct

FORMAT = "xai-harness-baseline"
FORMAT_VERSION = 1
META_KEY = b"xai_harness"
CSV_MARKER = "# xai-harness-baseline version="
PARQUET_MAGIC = b"PAR1"

KEY_COLUMNS = ("suite", "case_id", "variant", "sweep", "model_slot", "explainer")
REQUIRED_COLUMNS = (*KEY_COLUMNS, "model", "verdict", "passed", "mass_object", "mass_sticker", "p_label")

# Rules under which the object is in the image, so its relevance share can drop: with
# the object painted out (instance_removed) or absent, less relevance there is no loss.
MASS_RULES = ("original", "background_removed", "sticker_added")

STATUSES = ("regressed", "improved", "unchanged", "new", "not_compared")

# Columns the comparison adds to an item's row (results table, report).
BASELINE_COLUMNS = (
    "regression_status",
    "oracle_verdict",
    "baseline_model",
    "baseline_verdict",
    "baseline_passed",
    "baseline_mass_object",
    "baseline_mass_sticker",
    "baseline_p_label",
    "delta_mass_object",
    "delta_mass_sticker",
    "delta_p_label",
    "baseline_heatmap",
)

Key = tuple[str, str, str, str, int, str]


class BaselineError(HarnessError):
    """The baseline table cannot be used (missing, foreign, incompatible, incomplete)."""


@dataclass
class Match:
    """An item's baseline row (``None``: the baseline has no such item) and where the baseline came from."""

    row: dict[str, Any] | None
    source: str


@dataclass
class Baseline:
    """A loaded baseline: its rows by key."""

    path: Path
    rows: dict[Key, dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    duplicates: int = 0  # rows whose key an earlier row already had (the first one counts)

    def match(self, key: Key | None) -> Match:
        return Match(self.rows.get(key) if key is not None else None, str(self.path))

    def describe(self) -> str:
        models = sorted({str(row.get("model")) for row in self.rows.values() if row.get("model")})
        written = f", written {self.meta['written']}" if self.meta.get("written") else ""
        twice = f"; {self.duplicates} row(s) with a repeated key ignored" if self.duplicates else ""
        return (
            f"baseline {self.path}: {len(self.rows)} items of {', '.join(models) or 'no model'}{written} "
            f"(format version {FORMAT_VERSION}){twice}"
        )


# --------------------------------------------------------------------------- keys


def _clean(value: Any) -> Any:
    """A table value as plain Python: NaN / NA -> None, numpy scalars -> Python."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def _slot(value: Any) -> int | None:
    value = _clean(value)
    if value is None or isinstance(value, bool):
        return None
    try:
        slot = float(value)
    except (TypeError, ValueError):
        return None
    return int(slot) if slot.is_integer() and slot >= 0 else None


def row_key(row: dict[str, Any]) -> Key | None:
    """The matching key of a results row; ``None`` for rows that are no item of a case
    (a suite that could not be collected) or that lack the model slot."""
    slot = _slot(row.get("model_slot"))
    variant = _clean(row.get("variant"))
    explainer = _clean(row.get("explainer"))
    if slot is None or not variant or not explainer:
        return None
    return (
        str(_clean(row.get("suite")) or ""),
        str(_clean(row.get("case_id")) or ""),
        str(variant),
        str(_clean(row.get("sweep")) or ""),
        slot,
        str(explainer),
    )


def describe_key(key: Key) -> str:
    suite, case_id, variant, sweep, slot, explainer = key
    return f"{suite}::{case_id}[{variant}{'-' + sweep if sweep else ''}] (model slot {slot}, {explainer})"


def model_slot(model: str, override: list[str], suite_models: list[str]) -> int | None:
    """The model's role in its suite's run: its position among the models the suite runs
    under (``--xai-model``'s list when given, else the suite's ``model``)."""
    models = override or suite_models
    return models.index(model) if model in models else None


def attach(items: list[Any], override: list[str], baseline: Baseline | None) -> None:
    """Give each collected case item its model slot and, with a baseline, its baseline
    row (an attribute of its context, so the comparison runs where the item is judged:
    in the xdist worker that runs it)."""
    from harness.evaluate import base_row

    for item in items:
        ctx = item.context
        ctx.model_slot = model_slot(item.model, override, list(item.suite.models or []))
        if baseline is not None:
            ctx.baseline = baseline.match(row_key(vars(ctx)))
        # The placeholder row (what a skipped item keeps) carries the slot and match too.
        row = base_row(ctx, "")
        row["verdict"] = "not run"
        item._set_row(row)


# --------------------------------------------------------------------------- writing


def _meta(rows: int) -> dict[str, Any]:
    from importlib import metadata

    try:
        version = metadata.version("xai-harness")
    except metadata.PackageNotFoundError:
        version = None
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "harness": version,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": rows,
        "key": list(KEY_COLUMNS),
    }


def write_parquet(frame: Any, path: Path) -> None:
    """Write a results frame as Parquet carrying the baseline marker, so that any
    results table this harness writes can serve as a baseline."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[META_KEY] = json.dumps(_meta(len(frame))).encode("utf-8")
    pq.write_table(table.replace_schema_metadata(metadata), path)


def save_baseline(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write ``rows`` (the session's results rows) as a baseline table.

    ``.csv`` writes CSV with a marker line; anything else writes Parquet, which needs
    pyarrow (a clear error without it).
    """
    from harness.results import results_frame

    frame = results_frame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    if path.suffix.lower() == ".csv":
        with partial.open("w", encoding="utf-8", newline="") as handle:
            handle.write(f"{CSV_MARKER}{FORMAT_VERSION} {json.dumps(_meta(len(frame)))}\n")
            frame.to_csv(handle, index=False)
    else:
        if importlib.util.find_spec("pyarrow") is None:
            raise BaselineError(
                f"{path}: writing a Parquet baseline needs pyarrow (pip install 'xai-harness[test]' or pyarrow), "
                "or give a path ending in .csv"
            )
        write_parquet(frame, partial)
    partial.replace(path)
    return path


# --------------------------------------------------------------------------- reading


def _expected() -> str:
    return f"an xai-harness baseline (format {FORMAT!r} version {FORMAT_VERSION}, written by --xai-baseline-save)"


def _check_meta(path: Path, meta: Any) -> dict[str, Any]:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BaselineError(f"{path}: not an xai-harness baseline (no {FORMAT!r} marker); expected {_expected()}")
    version = meta.get("version")
    if version != FORMAT_VERSION:
        when = "a newer" if isinstance(version, int) and version > FORMAT_VERSION else "an older or unknown"
        raise BaselineError(
            f"{path}: baseline format version {version!r} comes from {when} xai-harness; this one reads version "
            f"{FORMAT_VERSION}: write the baseline again with --xai-baseline-save"
        )
    return meta


def _read_parquet(path: Path) -> tuple[Any, dict[str, Any]]:
    if importlib.util.find_spec("pyarrow") is None:
        raise BaselineError(
            f"{path}: reading a Parquet baseline needs pyarrow (pip install 'xai-harness[test]' or pyarrow); "
            "or save the baseline as .csv"
        )
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one clear error
        raise BaselineError(f"{path}: cannot read the Parquet file: {type(exc).__name__}: {exc}") from None
    raw = (schema.metadata or {}).get(META_KEY)
    try:
        meta = json.loads(raw.decode("utf-8")) if raw is not None else None
    except (UnicodeDecodeError, ValueError):
        meta = None
    meta = _check_meta(path, meta)
    try:
        frame = pq.read_table(path).to_pandas()
    except Exception as exc:  # noqa: BLE001
        raise BaselineError(f"{path}: cannot read the Parquet file: {type(exc).__name__}: {exc}") from None
    return frame, meta


def _read_csv(path: Path, first: bytes) -> tuple[Any, dict[str, Any]]:
    line = first.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if not line.startswith(CSV_MARKER):
        raise BaselineError(
            f"{path}: not an xai-harness baseline (the first line is not {CSV_MARKER!r}...); expected {_expected()}"
        )
    version_text, _, meta_text = line[len(CSV_MARKER) :].partition(" ")
    try:
        meta = json.loads(meta_text) if meta_text else {}
    except ValueError:
        meta = {}
    try:
        meta["version"] = int(version_text)
    except ValueError:
        meta["version"] = version_text
    meta["format"] = FORMAT
    meta = _check_meta(path, meta)
    import pandas as pd

    try:
        frame = pd.read_csv(path, skiprows=1, dtype={"sweep": "string", "case_id": "string", "suite": "string"})
    except Exception as exc:  # noqa: BLE001
        raise BaselineError(f"{path}: cannot read the CSV table: {type(exc).__name__}: {exc}") from None
    return frame, meta


def _passed(value: Any) -> bool | None:
    value = _clean(value)
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    return {"true": True, "false": False, "1": True, "0": False}.get(text)


def load_baseline(path: Path) -> Baseline:
    """Read and check a baseline table.

    Raises
    ------
    BaselineError
        The file is missing or unreadable, is no xai-harness baseline, has another
        format version, or lacks a column the comparison needs; the message names the
        file and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise BaselineError(f"{path}: baseline file not found; expected {_expected()}")
    try:
        with path.open("rb") as handle:
            first = handle.read(4096)
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read the baseline: {exc}") from None
    if first.startswith(PARQUET_MAGIC):
        frame, meta = _read_parquet(path)
    else:
        frame, meta = _read_csv(path, first)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise BaselineError(
            f"{path}: baseline table lacks the column(s) {', '.join(missing)}; expected at least "
            f"{', '.join(REQUIRED_COLUMNS)}"
        )
    rows: dict[Key, dict[str, Any]] = {}
    duplicates = 0
    for record in frame.to_dict(orient="records"):
        row = {str(k): _clean(v) for k, v in record.items()}
        key = row_key(row)
        if key is None:
            continue
        if key in rows:
            duplicates += 1
            continue
        row["passed"] = _passed(row.get("passed"))
        images = row.get("images")
        if isinstance(images, str):
            try:
                row["images"] = json.loads(images)
            except ValueError:
                row["images"] = {}
        rows[key] = row
    return Baseline(path=path, rows=rows, meta=meta, duplicates=duplicates)


# --------------------------------------------------------------------------- judging


def _num(value: Any) -> float | None:
    value = _clean(value)
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _delta(current: float | None, before: float | None) -> float | None:
    return None if current is None or before is None else current - before


def _verdict(row: dict[str, Any]) -> Any:
    """The oracle's verdict of a baseline row: a baseline that was itself compared with
    an older one says ``regression`` where its model did something the oracle judged."""
    return row.get("oracle_verdict") or row.get("verdict")


def _words(verdict: Any) -> str:
    return str(verdict or "?").replace("_", " ")


def _judged(verdict: Any) -> bool:
    return verdict not in (None, "", "error", "skipped", "not run")


def match_columns(match: Match) -> dict[str, Any]:
    """Columns of an item that has not been judged (an error, skipped): what the
    baseline said, and why nothing is compared."""
    base = match.row
    if base is None:
        return {**dict.fromkeys(BASELINE_COLUMNS), "regression_status": "new"}
    raw = base.get("images")
    images: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return {
        **dict.fromkeys(BASELINE_COLUMNS),
        "regression_status": "not_compared",
        "baseline_model": base.get("model"),
        "baseline_verdict": _verdict(base),
        "baseline_passed": base.get("passed"),
        "baseline_mass_object": _num(base.get("mass_object")),
        "baseline_mass_sticker": _num(base.get("mass_sticker")),
        "baseline_p_label": _num(base.get("p_label")),
        "baseline_heatmap": images.get("overlay") or images.get("heatmap"),
    }


def compare(
    match: Match,
    rule: str,
    judgement: Judgement,
    current: dict[str, float | None],
    thresholds: dict[str, Any],
    sources: dict[str, str] | None = None,
) -> tuple[Judgement, dict[str, Any]]:
    """Judge an item against its baseline row.

    ``current`` holds the item's ``mass_object``, ``mass_sticker`` and ``p_label``.
    Returns the judgement (``regression`` when the item passed in the baseline and
    fails now, or its relevance share on the object fell by more than
    ``max_mass_drop``; otherwise the oracle's own) and the comparison columns.
    Improvements are recorded and never fail an item.
    """
    columns = match_columns(match)
    columns["oracle_verdict"] = judgement.verdict
    base = match.row
    if base is None or not _judged(_verdict(base)):
        return judgement, columns  # new, or a baseline item that was never judged
    mass = _delta(current.get("mass_object"), columns["baseline_mass_object"]) if rule in MASS_RULES else None
    columns.update(
        delta_mass_object=mass,
        delta_mass_sticker=_delta(current.get("mass_sticker"), columns["baseline_mass_sticker"]),
        delta_p_label=_delta(current.get("p_label"), columns["baseline_p_label"]),
    )
    was_passed = _verdict(base) == "passed"
    limit = thresholds.get("max_mass_drop")
    checks = list(judgement.checks)
    dropped = False
    if limit is not None and mass is not None:
        dropped = mass < -float(limit)
        checks.append(
            Check(
                "relevance on object against the baseline",
                "delta_mass_object",
                mass,
                -float(limit),
                ">=",
                not dropped,
                (sources or {}).get("max_mass_drop"),
            )
        )
    now_failed = not judgement.passed
    where = f"baseline {base.get('model') or '?'}: {_words(_verdict(base))}"
    reasons = []
    if was_passed and now_failed:
        reasons.append(f"passed there, now {_words(judgement.verdict)}")
    if dropped:
        assert mass is not None and limit is not None
        borderline = " (borderline)" if abs(-mass - float(limit)) <= REPRODUCIBLE_TOLERANCE else ""
        reasons.append(
            f"positive relevance on the object fell from {pct(columns['baseline_mass_object'])} to "
            f"{pct(current.get('mass_object'))}, by {100 * -mass:.0f} points > {100 * float(limit):.0f} allowed "
            f"(max_mass_drop){borderline}"
        )
    if reasons:
        columns["regression_status"] = "regressed"
        message = f"regression ({where}): {'; '.join(reasons)} — {judgement.message}"
        return Judgement("regression", message, checks), columns
    rose = limit is not None and mass is not None and mass > float(limit)
    if (not was_passed and not now_failed) or rose:
        columns["regression_status"] = "improved"
        why = ["it failed there"] if not was_passed and not now_failed else []
        why += [f"relevance on the object up {100 * (mass or 0):.0f} points"] if rose else []
        message = f"{judgement.message}; improved against the baseline ({where}): {', '.join(why)}"
        return Judgement(judgement.verdict, message, checks), columns
    columns["regression_status"] = "unchanged"
    return Judgement(judgement.verdict, judgement.message, checks), columns


# --------------------------------------------------------------------------- summary


@dataclass
class Comparison:
    """How a run compares with its baseline, for the terminal and the report."""

    counts: Counter[str]
    missing: list[Key]
    source: str

    def line(self) -> str:
        return summary_line(self.counts, len(self.missing))

    @staticmethod
    def regressed_examples(rows: list[dict[str, Any]], limit: int = 5) -> list[str]:
        """Node ids of the first regressed items, with what they were and are."""
        out: list[str] = []
        for row in rows:
            if row.get("regression_status") == "regressed" and len(out) < limit:
                delta = _num(row.get("delta_mass_object"))
                mass = f", relevance on object {100 * delta:+.0f} points" if delta is not None else ""
                out.append(
                    f"{row.get('nodeid')}: {row.get('baseline_verdict')} ({row.get('baseline_model')}) -> "
                    f"{row.get('oracle_verdict')} ({row.get('model')}){mass}"
                )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "counts": {status: self.counts[status] for status in STATUSES},
            "missing": len(self.missing),
            "missing_examples": [describe_key(key) for key in self.missing[:20]],
            "line": self.line(),
        }


def summary_line(counts: Counter[str] | dict[str, int], missing: int) -> str:
    """``"3 items regressed, 5 improved, 112 unchanged"``, then new, missing and not
    compared items where there are any."""
    c = Counter(counts)
    parts = [
        f"{c['regressed']} item{'s' if c['regressed'] != 1 else ''} regressed",
        f"{c['improved']} improved",
        f"{c['unchanged']} unchanged",
    ]
    if c["new"]:
        parts.append(f"{c['new']} new (not in the baseline)")
    if missing:
        parts.append(f"{missing} missing (in the baseline, not in this run: deselected, or gone from the suites)")
    if c["not_compared"]:
        parts.append(f"{c['not_compared']} not compared (errors or skipped)")
    return ", ".join(parts)


def terminal_lines(baseline: Baseline, rows: list[dict[str, Any]], shown_as: str) -> list[str]:
    """The run summary's lines: the counts, what the oracle says now of the regressed
    items (their verdict column says ``regression``), and the first few of them."""
    found = comparison(baseline, rows)
    lines = [f"xai baseline: {found.line()} (against {shown_as})"]
    now = Counter(str(row.get("oracle_verdict")) for row in rows if row.get("regression_status") == "regressed")
    if now:
        said = ", ".join(f"{verdict}: {n}" for verdict, n in sorted(now.items()))
        why = " (passed: only the relevance on the object dropped)" if now["passed"] else ""
        lines.append(f"xai baseline: what the oracle says now of the regressed items: {said}{why}")
    lines += [f"  regressed: {example}" for example in found.regressed_examples(rows)]
    return lines


def comparison(baseline: Baseline, rows: list[dict[str, Any]]) -> Comparison:
    """Count the rows' statuses; baseline items no row matched are missing."""
    counts: Counter[str] = Counter()
    seen = set()
    for row in rows:
        key = row_key(row)
        if key is not None:
            seen.add(key)
        status = row.get("regression_status")
        if status in STATUSES:
            counts[str(status)] += 1
    missing = [key for key in baseline.rows if key not in seen]
    return Comparison(counts, missing, str(baseline.path))
