"""The results table: one row per item, written with pandas (CSV, plus Parquet when
pyarrow is installed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.evaluate import RESULT_COLUMNS
from harness.perturb import VARIANTS

if TYPE_CHECKING:
    import pandas as pd


def results_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with the documented columns first; nested values as JSON."""
    import pandas as pd  # only when the table is written (a quarter of a second)

    frame = pd.DataFrame(rows)
    for column in RESULT_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    extra = [c for c in frame.columns if c not in RESULT_COLUMNS]
    for column in extra:
        frame[column] = frame[column].map(lambda v: json.dumps(v) if isinstance(v, (dict, list)) else v)
    frame = frame[RESULT_COLUMNS + extra]
    # Run order differs under xdist; sort by where the case is written, variants in oracle order.
    order = {name: i for i, name in enumerate(VARIANTS)}
    frame = frame.assign(_v=frame["variant"].map(lambda v: order.get(v, len(order))))
    return frame.sort_values(["suite", "line", "case_id", "_v", "model"], kind="stable").drop(columns="_v")


def write_results(rows: list[dict[str, Any]], path: Path, failures: list[str] | None = None) -> list[Path]:
    """Write ``path`` (CSV) and, if pyarrow is available, the same table as Parquet.

    With ``failures`` each output that cannot be written adds one line there instead
    of raising, and the other output is still written (a read-only folder must not
    cost the session its summary, report and exit status).
    """
    frame = results_frame(rows)
    written: list[Path] = []
    outputs: list[tuple[str, Path, Any]] = [("results table", path, lambda: frame.to_csv(path, index=False))]
    if importlib.util.find_spec("pyarrow") is not None:
        parquet = path.with_suffix(".parquet")
        from harness.baseline import write_parquet

        # With the baseline marker: a previous run's Parquet table can serve as --xai-baseline.
        outputs.append(("results parquet", parquet, lambda: write_parquet(frame, parquet)))
    for what, target, write in outputs:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write()
        except Exception as exc:  # noqa: BLE001 - an output failing alone is reported, not raised
            if failures is None:
                raise
            failures.append(output_failure(what, target, exc))
        else:
            written.append(target)
    return written


def output_failure(what: str, target: Path, exc: BaseException) -> str:
    """One line for an output that could not be written."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{what} not written: {target}: {type(exc).__name__}: {text}"
