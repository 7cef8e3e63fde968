"""Tests of write_report: files, assets, escaping and the data island, without a browser."""

from __future__ import annotations

import math
import re
from html import unescape
from pathlib import Path

import pytest

from harness.report import write_report
from harness.report.model import error_item

EVIL = "<script>window.__xss=1</script>"


def test_writes_html_and_copies_images_with_sanitised_unique_names(tmp_path, rows, payload_of):
    rows[0]["case_id"] = "../../etc/passwd <b>&\"'"
    report = write_report(rows, tmp_path / "out" / "report.html", meta={"title": "T"})
    assert report == (tmp_path / "out" / "report.html").absolute()
    assets = tmp_path / "out" / "report_assets"
    files = sorted(p.name for p in assets.glob("*.png"))
    expected = sum(len(set(r["images"]) - {"heatmap_data"}) for r in rows)  # the saved relevance is no image
    assert len(files) == expected  # one file per distinct source, no collisions
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", name) for name in files)
    payload = payload_of(report)
    urls = [u for case in payload["cases"] for it in case["items"] for u in it["images"].values()]
    assert len(urls) == expected
    for url in urls:
        assert url.startswith("report_assets/")
        assert (report.parent / url).is_file()


def test_missing_images_are_left_out_not_fatal(tmp_path, rows, payload_of):
    rows[0]["images"]["heatmap"] = str(tmp_path / "does-not-exist.png")
    rows[0]["images"]["heatmap_data"] = str(tmp_path / "does-not-exist.npz")  # else the report draws the map
    payload = payload_of(write_report(rows, tmp_path / "r.html"))
    first = next(
        it
        for case in payload["cases"]
        for it in case["items"]
        if it["key"].endswith("[original]") and "0000" in it["key"]
    )
    assert "heatmap" not in first["images"]
    assert "overlay" in first["images"]


def test_self_contained_inlines_images_and_writes_no_assets(tmp_path, rows, payload_of):
    report = write_report(rows, tmp_path / "r.html", self_contained=True)
    assert not (tmp_path / "r_assets").exists()
    urls = [u for case in payload_of(report)["cases"] for it in case["items"] for u in it["images"].values()]
    assert urls and all(u.startswith("data:image/png;base64,") for u in urls)


def test_rewriting_replaces_stale_assets_but_never_foreign_folders(tmp_path, rows):
    target = tmp_path / "r.html"
    write_report(rows, target)
    stale = tmp_path / "r_assets" / "stale.png"
    stale.write_bytes(b"x")
    write_report(rows[:4], target)
    assert not stale.exists()
    shown = sum(len(set(r["images"]) - {"heatmap_data"}) for r in rows[:4])  # the saved relevance is no image
    assert len(list((tmp_path / "r_assets").glob("*.png"))) == shown

    foreign = tmp_path / "mine_assets"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user file")
    write_report(rows[:4], tmp_path / "mine.html")
    assert (foreign / "keep.txt").read_text() == "user file"


def test_user_strings_are_escaped_in_html_and_data_island(tmp_path, rows, payload_of):
    rows[0].update(
        case_id=EVIL,
        label="</script><b>x",
        description="</SCRIPT ><img src=x onerror=alert(1)>",
        model="<i>m</i>",
        message="a & b </script>",
    )
    report = write_report(rows, tmp_path / "r.html", meta={"title": "<title>", "command": "pytest -k '</script>'"})
    html = report.read_text(encoding="utf-8")
    # The only raw <script> tags are the two the template writes.
    assert html.lower().count("<script") == 2
    assert "<b>x" not in html and "<i>m</i>" not in html and "<img src=x" not in html
    assert "&lt;i&gt;m&lt;/i&gt;" in html  # model name in the summary, escaped by Jinja
    payload = payload_of(report)
    case = next(c for c in payload["cases"] if c["case_id"] == EVIL)
    assert case["description"] == "</SCRIPT ><img src=x onerror=alert(1)>"


def test_nan_never_reaches_the_json(tmp_path, rows, payload_of):
    rows[1]["mass_object"] = math.nan
    rows[1]["checks"][0]["value"] = math.inf
    html = write_report(rows, tmp_path / "r.html").read_text()
    assert "NaN" not in html and "Infinity" not in html
    payload_of(tmp_path / "r.html")  # parses


def test_page_loads_nothing_from_the_internet(tmp_path, rows):
    html = write_report(rows, tmp_path / "r.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "default-src 'none'" in unescape(html)


def test_summary_shows_counts_and_meta(tmp_path, rows):
    rows.append(error_item("testcases/x.xai.yaml::boom[original]", "RuntimeError: boom"))  # type: ignore[arg-type]
    html = write_report(
        rows, tmp_path / "r.html", meta={"command": "pytest --xai-report r.html", "duration_s": 3.5}
    ).read_text()
    for label in ("passed", "false positive", "false negative", "artifact reliance", "wrong reasons", "error"):
        assert f">{label}<" in html
    assert "pytest --xai-report r.html" in html
    assert "3.5 s" in html
    assert "Per model" in html and "Per class" in html and "Per variant" in html


def test_empty_run_still_renders(tmp_path, payload_of):
    report = write_report([], tmp_path / "r.html", meta={"interrupted": True, "exitstatus": 2})
    assert "Incomplete run" in report.read_text()
    assert payload_of(report)["cases"] == []


@pytest.mark.parametrize("name", ["report.js", "report.css"])
def test_static_files_cannot_close_their_inline_element(name):
    text = (Path(__import__("harness.report.render").report.render.__file__).parent / "static" / name).read_text()
    assert "</" not in text


def test_assets_are_linked_and_keep_this_runs_picture_when_the_core_rewrites_it(tmp_path):
    import numpy as np

    from harness.imageio import read_rgb, write_rgb
    from harness.report.render import AssetWriter

    source = tmp_path / "core" / "a_heatmap.png"
    write_rgb(source, np.full((4, 4, 3), 10, dtype=np.uint8))
    writer = AssetWriter(tmp_path / "report.html")
    asset = tmp_path / writer.url(str(source), "case-heatmap")
    assert asset.stat().st_ino == source.stat().st_ino  # a link, not a second copy
    # The next run rewrites the core's picture; the report keeps the old one.
    write_rgb(source, np.full((4, 4, 3), 200, dtype=np.uint8))
    assert read_rgb(asset)[0, 0].tolist() == [10, 10, 10]
    assert read_rgb(source)[0, 0].tolist() == [200, 200, 200]
    assert sorted(p.name for p in source.parent.iterdir()) == ["a_heatmap.png"]  # no partial files left


def test_overview_has_a_row_per_suite_with_its_name_and_description(tmp_path, rows):
    (tmp_path / "testcases" / "speed").mkdir(parents=True)
    (tmp_path / "testcases" / "speed" / "speed_50.xai.yaml").write_text(
        "suite: Speed limits\ndescription: <b>50</b> km/h signs\nmodel: m\ncases: []\n", encoding="utf-8"
    )
    html = write_report(rows, tmp_path / "r.html", meta={"rootdir": str(tmp_path)}).read_text(encoding="utf-8")
    table = html.split('id="suite-table"')[1].split("</table>")[0]
    suites = sorted({r["suite"] for r in rows})
    assert table.count("<tr data-suite=") == len(suites)
    assert "Speed limits" in table and "&lt;b&gt;50&lt;/b&gt; km/h signs" in table  # escaped
    assert ">stop<" in table  # a suite file that is not there: its file name


def test_a_chart_per_checked_metric_with_its_thresholds_and_their_sources(tmp_path, rows):
    from harness.report.charts import metric_charts
    from harness.report.model import build_report

    for row in rows:
        for check in row.get("checks", []):
            check["source"] = "suite" if row["case_id"].startswith("speed") else "built-in"
    report = build_report(rows)
    charts = {chart.metric: chart for chart in metric_charts(report.items)}
    assert set(charts) == {"p_label", "mass_object", "mass_sticker"}
    judged = [it for it in report.items if it.group == "passed" or it.needs_review]
    object_checks = [(it, c) for it in judged for c in it.checks if c.metric == "mass_object"]
    chart = charts["mass_object"]
    assert sum(chart.passed) == sum(it.group == "passed" for it, _ in object_checks)
    assert sum(chart.failed) == sum(it.needs_review for it, _ in object_checks)
    assert chart.thresholds == [(0.5, "built-in, suite")]
    html = write_report(rows, tmp_path / "r.html").read_text(encoding="utf-8")
    assert html.count('<svg class="metric-chart"') == 3
    assert "threshold 0.5 from built-in, suite" in html


def test_numbers_in_the_data_island_keep_six_significant_digits(tmp_path, rows, payload_of):
    rows[0].update(mass_object=0.123456789012, p_label=1.0 / 3.0)
    rows[0]["checks"][0].update(value=0.98765432101, threshold=0.5)
    items = [it for case in payload_of(write_report(rows, tmp_path / "r.html"))["cases"] for it in case["items"]]
    first = next(it for it in items if it["key"] == f"{rows[0]['suite']}::{rows[0]['case_id']}[{rows[0]['variant']}]")
    assert (first["mass_object"], first["p_label"]) == (0.123457, 0.333333)
    assert (first["checks"][0]["value"], first["checks"][0]["threshold"]) == (0.987654, 0.5)
    assert "source" not in first["checks"][0]  # no source recorded: left out, not null


def test_a_rerun_keeps_unchanged_assets_removes_stale_ones_and_equals_a_fresh_write(tmp_path, rows, payload_of):
    def files(folder: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}

    first = write_report(rows, tmp_path / "r.html")
    assets = tmp_path / "r_assets"
    # A case the rerun leaves as it was (the second: the first has inputs swapped, the third loses items).
    recoloured = next(p for p in assets.glob(f"{rows[4]['case_id']}-*heatmap-case-scale*.png"))
    inode = recoloured.stat().st_ino
    (assets / "stale-0123456789.png").write_bytes(b"x")
    rows[0]["images"]["input"], rows[1]["images"]["input"] = rows[1]["images"]["input"], rows[0]["images"]["input"]
    write_report(rows[:-3], first)  # fewer items, two inputs swapped under the same names
    write_report(rows[:-3], tmp_path / "fresh" / "r.html")
    assert files(assets) == files(tmp_path / "fresh" / "r_assets")
    assert recoloured.stat().st_ino == inode  # the same picture again: not rewritten
    assert payload_of(first)["cases"] == payload_of(tmp_path / "fresh" / "r.html")["cases"]
