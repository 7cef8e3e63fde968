"""A draft suite from a scan: the most and least confident images of a chosen group.

``--suite-from cluster=3`` picks the members of cluster 3 (of the scanned class),
``outside`` the images whose relevance lies mostly outside the object, ``all`` every
scanned image; ``--sample N`` takes the ``ceil(N/2)`` most and ``floor(N/2)`` least
confident of them (by the probability of their label), as the seed talk tested the
images a model was surest and least sure about. Regions the scan knew are written as
the cases' objects; the others get the ``TODO`` placeholder that ``validate`` and pytest
report until an expert draws the object.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from harness.authoring.drafts import CaseDraft, RegionDraft, sanitise_id
from harness.authoring.writer import SuiteHead, WriteResult, write_suite
from harness.errors import HarnessError

from .manifest import ScanItem

__all__ = ["choose_rows", "parse_choice", "write_draft"]


def parse_choice(text: str) -> tuple[str, int | None]:
    """``cluster=N``, ``outside`` or ``all`` as (kind, cluster number)."""
    text = text.strip()
    if text in ("outside", "all"):
        return text, None
    if text.startswith("cluster="):
        try:
            number = int(text.split("=", 1)[1])
        except ValueError:
            number = 0
        if number >= 1:
            return "cluster", number
    raise HarnessError(f"--suite-from {text!r}: expected cluster=N (N >= 1), outside or all")


def choose_rows(table: pa.Table, choice: str, label: str | None, sample: int) -> tuple[list[int], list[int]]:
    """Table rows of the most and the least confident images of the chosen group."""
    kind, number = parse_choice(choice)
    labels = table.column("label").to_pylist()
    errors = table.column("error").to_pylist()
    p_label = table.column("p_label").to_pylist()
    rows = [i for i in range(table.num_rows) if errors[i] is None and (label is None or labels[i] == label)]
    if kind == "cluster":
        if "cluster" not in table.column_names:
            raise HarnessError("--suite-from cluster=N: the scan has no clusters (too few heatmaps)")
        clusters = table.column("cluster").to_pylist()
        known = sorted({clusters[i] for i in rows if clusters[i] is not None})
        if number not in known:
            raise HarnessError(f"--suite-from cluster={number}: no such cluster; the scan found {known}")
        rows = [i for i in rows if clusters[i] == number]
    elif kind == "outside":
        outside = table.column("mostly_outside").to_pylist()
        rows = [i for i in rows if outside[i]]
    if not rows:
        raise HarnessError(f"--suite-from {choice}: no images in that group")
    ranked = sorted(rows, key=lambda i: (-p_label[i], Path(table.column("path")[i].as_py()).name))
    most = ranked[: (sample + 1) // 2]
    rest = ranked[len(most) :]
    least = list(reversed(rest[len(rest) - sample // 2 :])) if sample // 2 else []
    return most, least


def _regions(region: str | None) -> list[RegionDraft]:
    if not region:
        return [RegionDraft.todo()]
    data = json.loads(region)
    if "mask" in data:
        return [RegionDraft("mask", Path(data["mask"]), data.get("mask_value"))]
    if "polygon" in data:
        return [RegionDraft("polygon", [tuple(p) for p in data["polygon"]])]
    return [RegionDraft("box", tuple(data["box"]))]


def write_draft(
    table: pa.Table,
    items: Sequence[ScanItem],
    choice: str,
    sample: int,
    path: str | Path,
    model: str,
    explainer: str,
    label: str | None,
) -> WriteResult:
    """Write (or append to) the draft suite at ``path``."""
    if sample < 1:
        raise HarnessError(f"--sample must be at least 1, got {sample}")
    most, least = choose_rows(table, choice, label, sample)
    region_of = {item.path: item.region for item in items}
    paths = table.column("path").to_pylist()
    p_label = table.column("p_label").to_pylist()
    predicted = table.column("predicted").to_pylist()
    mass = table.column("mass").to_pylist()
    clusters = table.column("cluster").to_pylist() if "cluster" in table.column_names else [None] * table.num_rows
    cases = []
    for group, rows in (("most", most), ("least", least)):
        for rank, row in enumerate(rows, start=1):
            facts = [f"p({table.column('label')[row].as_py()}) = {p_label[row]:.3f}", f"predicted {predicted[row]}"]
            if mass[row] is not None:
                facts.append(f"object mass {mass[row]:.2f}")
            if clusters[row] is not None:
                facts.append(f"SpRAy cluster {clusters[row]}")
            cases.append(
                CaseDraft(
                    id=sanitise_id(Path(paths[row]).stem),
                    image=Path(paths[row]),
                    label=table.column("label")[row].as_py(),
                    regions=_regions(region_of.get(paths[row])),
                    description=f"{group} confident image no. {rank} of scan group {choice}",
                    comment=f"from a scan ({choice}), {group} confident no. {rank}: " + ", ".join(facts),
                )
            )
    head = SuiteHead(model=model, explainer=explainer, label=label, origin="python -m harness scan")
    return write_suite(path, cases, head)
