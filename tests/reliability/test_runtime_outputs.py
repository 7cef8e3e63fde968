"""Session end: each output (results table, pictures, HTML report) that cannot be written
fails alone, with one line in the terminal summary and a non-zero exit status, while
the others are still written; and ``--xai-model a,b`` with an unknown ``b`` errors only
``b``'s items.

An unwritable folder is simulated by a regular file where the folder should be (the
tests may run as root, for whom permission bits do not stop a write).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .runtime_support import ONE_CLEAN_CASE, Session, make_world, run_session, suite

BLOCKED = "blocked"  # a file; anything "inside" it cannot be created


def _run(root: Path, results: str, assets: str, report: str, *extra: str) -> Session:
    make_world(root)
    (root / BLOCKED).write_text("a file, not a folder\n")
    (root / "one.xai.yaml").write_text(suite("good", ONE_CLEAN_CASE))
    return run_session(
        root, "--xai-results", results, "--xai-assets", assets, "--xai-report", report, *extra, results=results
    )


@pytest.fixture(scope="module")
def results_blocked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Session]:
    root = tmp_path_factory.mktemp("results_blocked")
    return root, _run(root, f"{BLOCKED}/results.csv", "out/assets", "out/index.html", "--xai-model", "good,nosuch")


@pytest.fixture(scope="module")
def assets_blocked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Session]:
    root = tmp_path_factory.mktemp("assets_blocked")
    return root, _run(root, "out/results.csv", f"{BLOCKED}/assets", "out/index.html")


@pytest.fixture(scope="module")
def report_blocked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Session]:
    root = tmp_path_factory.mktemp("report_blocked")
    return root, _run(root, "out/results.csv", "out/assets", f"{BLOCKED}/index.html")


def _no_crash(session: Session) -> None:
    assert "Traceback" not in session.output and "INTERNALERROR" not in session.output, session.output[-3000:]
    assert "xai verdicts" in session.output


def test_results_folder_unwritable(results_blocked: tuple[Path, Session]) -> None:
    root, session = results_blocked
    _no_crash(session)
    assert session.returncode == 1
    lines = [line for line in session.output.splitlines() if line.startswith("xai: results table not written:")]
    assert len(lines) == 1 and f"{BLOCKED}/results.csv" in lines[0], session.output[-2000:]
    assert "results: " not in session.output  # no claim that the table was written
    assert (root / "out" / "index.html").is_file()
    assert len(list((root / "out" / "assets").rglob("*.png"))) == 4 * 4  # 4 variants x 4 pictures of "good"


def test_unknown_model_among_two_errors_only_its_items(results_blocked: tuple[Path, Session]) -> None:
    _, session = results_blocked
    for variant in ("original", "instance_removed", "background_removed", "sticker_added"):
        assert f"PASSED one.xai.yaml::clean[{variant}-good]" in session.output
        assert f"ERROR one.xai.yaml::clean[{variant}-nosuch]" in session.output
    assert "unknown model 'nosuch'" in session.output


def test_assets_folder_unwritable(assets_blocked: tuple[Path, Session]) -> None:
    root, session = assets_blocked
    _no_crash(session)
    assert session.returncode == 1
    lines = [line for line in session.output.splitlines() if line.startswith("xai: pictures not written under")]
    assert len(lines) == 1 and "4 item(s) failed" in lines[0], session.output[-2000:]
    assert [row["verdict"] for row in session.rows] == ["passed"] * 4  # the table is complete
    assert (root / "out" / "index.html").is_file()


def test_report_folder_unwritable(report_blocked: tuple[Path, Session]) -> None:
    root, session = report_blocked
    _no_crash(session)
    assert session.returncode == 1
    assert "xai report could not be written:" in session.output
    assert [row["verdict"] for row in session.rows] == ["passed"] * 4
    assert len(list((root / "out" / "assets").rglob("*.png"))) == 16


def test_conservation_band_from_the_command_line(tmp_path: Path) -> None:
    make_world(tmp_path)
    (tmp_path / "one.xai.yaml").write_text(suite("good", ONE_CLEAN_CASE, thresholds="{conservation: [0.5, 2]}"))
    session = run_session(tmp_path, "--xai-conservation", "2,3", "--xai-assets", "")
    assert len(session.rows) == 4
    for row in session.rows:  # the command line wins over the suite's band
        assert row["verdict"] == "error", row["message"]
        assert "explanation unreliable: relevance sums to" in row["message"]
        assert "conservation 1 outside [2, 3] (lrp/epsilon_plus_flat)" in row["message"]
    refused = run_session(tmp_path, "--xai-conservation", "3,2")
    assert refused.returncode == 4 and "--xai-conservation needs finite LO < HI, got '3,2'" in refused.output
