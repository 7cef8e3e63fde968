"""The determinism statement of docs/reliability.md, tested on a shipped demo suite:

* the same command twice writes a byte-identical results table;
* batch sizes 1, 8 and 32, one torch thread instead of two, and two xdist workers
  (``-n 2``) instead of none, give identical verdicts
  and metric values within ``REPRODUCIBLE_TOLERANCE`` (convolutions sum in different
  orders).
"""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from harness.verdicts import REPRODUCIBLE_TOLERANCE

from .runtime_support import REPO

SUITE = "testcases/signs/speed_50.xai.yaml"
METRICS = (
    "p_predicted",
    "p_label",
    "mass_object",
    "mass_removed",
    "mass_sticker",
    "signed_object",
    "negative_object",
    "rank_accuracy",
    "target_logit",
    "relevance_sum",
    "conservation",
)


# One interpreter runs the five sessions one after the other (pytest.main each time), so
# the torch start-up is paid once; each session is still a complete pytest run.
DRIVER = """
import sys, pytest, torch
tmp, suite = sys.argv[1], sys.argv[2]
CASES = " or ".join(f"speed_50_00{i}" for i in range(5))
RUNS = (("b32", 32, 2, "0"), ("b32_again", 32, 2, "0"), ("b8", 8, 2, "0"), ("b1", 1, 2, "0"), ("t1", 32, 1, "0"),
        ("n2", 32, 2, "2"))
for name, batch, threads, workers in RUNS:
    torch.set_num_threads(threads)
    code = pytest.main([suite, "-q", "-p", "no:cacheprovider", "--xai-model", "signs-shortcut", "-k", CASES,
                        "-n", workers, "--xai-batch-size", str(batch), "--xai-results", f"{tmp}/{name}.csv",
                        "--xai-assets", ""])
    print("exit", name, int(code))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[dict[str, str]], bytes]]:
    tmp = tmp_path_factory.mktemp("determinism")
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp), SUITE], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    out: dict[str, tuple[list[dict[str, str]], bytes]] = {}
    for name in ("b32", "b32_again", "b8", "b1", "t1", "n2"):
        assert f"exit {name} 1" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]  # the demo fails items
        path = tmp / f"{name}.csv"
        with open(path, newline="") as handle:
            out[name] = (list(csv.DictReader(handle)), path.read_bytes())
    return out


def test_same_command_is_byte_identical(runs: dict[str, tuple[list[dict[str, str]], bytes]]) -> None:
    assert runs["b32"][1] == runs["b32_again"][1]


@pytest.mark.parametrize("other", ["b8", "b1", "t1", "n2"])
def test_batch_size_or_threads_change_no_verdict_and_no_value_beyond_tolerance(
    runs: dict[str, tuple[list[dict[str, str]], bytes]], other: str
) -> None:
    reference, compared = runs["b32"][0], runs[other][0]
    assert [(r["case_id"], r["variant"]) for r in reference] == [(r["case_id"], r["variant"]) for r in compared]
    assert len(reference) == 20
    worst = 0.0
    for a, b in zip(reference, compared):
        assert (a["verdict"], a["predicted"], a["pointing_game"]) == (b["verdict"], b["predicted"], b["pointing_game"])
        for column in METRICS:
            assert (a[column] == "") == (b[column] == ""), column
            if a[column]:
                scale = max(1.0, abs(float(a[column]))) if column in ("target_logit", "relevance_sum") else 1.0
                worst = max(worst, abs(float(a[column]) - float(b[column])) / scale)
    assert worst <= REPRODUCIBLE_TOLERANCE, worst
    print(f"largest difference b32 vs {other}: {worst:.3g}")
