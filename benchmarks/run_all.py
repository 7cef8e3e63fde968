"""Every speed figure of the README in one command.

Usage::

    .venv/bin/python benchmarks/run_all.py [--json reports/benchmarks.json] [--quick]

Runs ``bench_lrp.py`` (forward vs zennit vs the fast engine per model and batch size,
peak memory), ``bench_e2e.py`` (pytest vs bare batched LRP vs a one-image loop, and
``-n 2`` vs ``-n 0``) and ``bench_report.py`` one after another, each in its own
process so that none inherits another's threads or caches; their tables go to the
terminal and their JSON into one file. About 25 minutes on 2 cores (``--quick``: a
smoke run of a few minutes whose figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=Path("reports/benchmarks.json"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    runs = {
        "lrp": ["bench_lrp.py", *(["--quick"] if args.quick else [])],
        "e2e": ["bench_e2e.py", *(["--setups", "demo", "--rounds", "1"] if args.quick else [])],
        "report": ["bench_report.py", *(["--items", "100"] if args.quick else [])],
    }
    combined: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (script, *extra) in runs.items():
            out = Path(tmp) / f"{name}.json"
            print(f"\n=== {script} {' '.join(extra)}", flush=True)
            done = subprocess.run([sys.executable, str(HERE / script), *extra, "--json", str(out)])
            if done.returncode != 0:
                print(f"{script} failed with exit status {done.returncode}", file=sys.stderr)
                return done.returncode
            combined[name] = json.loads(out.read_text())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(combined, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
