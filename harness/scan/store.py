"""Where a scan writes: one Parquet part per batch, so that it streams and resumes.

``DIR/parts/part-NNNNNN.parquet`` holds one batch's rows, written beside and renamed, so
a part is either complete or absent; an interrupted scan resumes by skipping the paths
its parts already hold. ``DIR/scan.json`` records the settings the parts were made with:
a resume with another model or explainer is refused instead of mixing two scans. Once
every image is done, :func:`finalize` writes ``DIR/scan.parquet`` (the rows in scan
order, without the heatmaps) and ``DIR/heatmaps.npy`` ((N, s, s) float16 over each
map's peak; the peaks are the table's ``heatmap_peak`` column), streaming part by part.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import HarnessError

from .manifest import ScanItem
from .worker import SCHEMA

__all__ = ["PartStore"]

_PART = re.compile(r"^part-(\d{6})\.parquet$")


class PartStore:
    """The parts folder of one scan output directory."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.parts_dir = self.out_dir / "parts"
        self._lock = threading.Lock()
        self._next = 0

    # ------------------------------------------------------------------ set-up

    def open(self, identity: dict[str, Any], restart: bool = False) -> set[str]:
        """Prepare the folder; return the paths already scanned (empty for a new scan).

        Raises
        ------
        HarnessError
            The folder holds a scan made with other settings (and ``restart`` is off).
        """
        meta = self.out_dir / "scan.json"
        if restart and self.parts_dir.exists():
            shutil.rmtree(self.parts_dir)
        if meta.is_file() and self.parts_dir.is_dir() and any(self.parts()):
            try:
                before = json.loads(meta.read_text(encoding="utf-8")).get("settings", {})
            except (OSError, json.JSONDecodeError) as exc:
                raise HarnessError(f"{meta}: cannot read ({exc}); remove the folder or use --restart") from None
            changed = [k for k in identity if before.get(k) != identity[k]]
            if changed:
                diff = ", ".join(f"{k} {before.get(k)!r} -> {identity[k]!r}" for k in changed)
                raise HarnessError(
                    f"{self.out_dir} holds a scan made with other settings ({diff}); "
                    "use --restart to discard it, or another -o folder"
                )
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self.write_meta({"settings": identity})
        numbers = [int(m.group(1)) for p in self.parts() if (m := _PART.match(p.name))]
        self._next = max(numbers, default=-1) + 1
        done: set[str] = set()
        for part in self.parts():
            done.update(pq.read_table(part, columns=["path"]).column("path").to_pylist())
        return done

    def write_meta(self, update: dict[str, Any]) -> None:
        meta = self.out_dir / "scan.json"
        data: dict[str, Any] = {}
        if meta.is_file():
            try:
                data = json.loads(meta.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                data = {}
        data.update(update)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(meta, json.dumps(data, indent=2, sort_keys=True).encode())

    def parts(self) -> list[Path]:
        if not self.parts_dir.is_dir():
            return []
        return sorted(p for p in self.parts_dir.iterdir() if _PART.match(p.name))

    # ------------------------------------------------------------------ writing

    def write(self, table: pa.Table) -> Path:
        """Write one batch's rows as the next part (atomically)."""
        with self._lock:
            number = self._next
            self._next += 1
        path = self.parts_dir / f"part-{number:06d}.parquet"
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        pq.write_table(table.cast(SCHEMA), partial, compression="zstd")
        os.replace(partial, path)
        return path

    # ------------------------------------------------------------------ the result

    def finalize(self, items: Sequence[ScanItem], heatmap_size: int) -> tuple[Path, Path]:
        """Write ``scan.parquet`` and ``heatmaps.npy`` in the order of ``items``.

        Rows of paths that are not among ``items`` (a resumed scan over a changed input)
        are left out; a path written twice keeps its first row.
        """
        position = {item.path: item.index for item in items}
        light = [name for name in SCHEMA.names if name != "heatmap"]
        pieces: list[pa.Table] = []
        where: list[tuple[Path, np.ndarray, np.ndarray]] = []  # part, its row numbers, their positions
        seen: set[str] = set()
        for part in self.parts():
            table = pq.read_table(part, columns=light)
            paths = table.column("path").to_pylist()
            keep = []
            for row, path in enumerate(paths):
                if path in position and path not in seen:
                    seen.add(path)
                    keep.append(row)
            if not keep:
                continue
            rows = np.asarray(keep)
            table = table.take(pa.array(rows))
            positions = np.asarray([position[p] for p in table.column("path").to_pylist()])
            pieces.append(table.append_column("index", pa.array(positions, pa.int64())))
            where.append((part, rows, positions))
        schema = pa.schema([("index", pa.int64()), *[SCHEMA.field(n) for n in light]])
        table = pa.concat_tables(pieces).select(schema.names) if pieces else schema.empty_table()
        table = table.sort_by("index")
        # The heatmaps follow the table's order: row r of the table is map r.
        order = {int(i): r for r, i in enumerate(table.column("index").to_pylist())}
        maps_path = self.out_dir / "heatmaps.npy"
        partial_maps = maps_path.with_name(f".{maps_path.name}.{os.getpid()}.part")
        maps = np.lib.format.open_memmap(
            partial_maps, mode="w+", dtype=np.float16, shape=(table.num_rows, heatmap_size, heatmap_size)
        )
        for part, rows, positions in where:
            blobs = pq.read_table(part, columns=["heatmap"]).column("heatmap").to_pylist()
            for row, pos in zip(rows, positions):
                blob = blobs[int(row)]
                if blob:
                    maps[order[int(pos)]] = np.frombuffer(blob, np.float16).reshape(heatmap_size, heatmap_size)
        maps.flush()
        del maps
        os.replace(partial_maps, maps_path)
        table_path = self.out_dir / "scan.parquet"
        partial = table_path.with_name(f".{table_path.name}.{os.getpid()}.part")
        pq.write_table(table, partial, compression="zstd")
        os.replace(partial, table_path)
        return table_path, maps_path


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, path)
