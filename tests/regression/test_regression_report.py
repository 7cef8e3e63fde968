"""The report's baseline section: the summary line and the changed items side by side."""

import re

import cv2
import numpy as np

from harness.report.render import write_report


def row(case_id, variant, status, verdict="passed", oracle=None, before="passed", **extra):
    out = {
        "suite": "signs.xai.yaml",
        "line": 3,
        "case_id": case_id,
        "variant": variant,
        "model": "new-net",
        "explainer": "lrp/epsilon_plus_flat",
        "label": "thing",
        "predicted": "thing",
        "p_label": 0.6,
        "mass_object": 0.3,
        "verdict": verdict,
        "passed": verdict == "passed",
        "message": f"{verdict}: sentence",
        "regression_status": status,
        "oracle_verdict": oracle or verdict,
        "baseline_model": "old-net",
        "baseline_verdict": before,
        "baseline_mass_object": 0.9,
        "baseline_p_label": 0.95,
        "delta_mass_object": -0.6,
    }
    out.update(extra)
    return out


def test_changed_items_side_by_side(tmp_path):
    picture = tmp_path / "old_overlay.png"
    cv2.imwrite(str(picture), np.zeros((8, 8, 3), np.uint8))
    rows = [
        row("a", "original", "unchanged"),
        row("b", "original", "improved", before="wrong_reasons", delta_mass_object=0.1),
        row(
            "c<script>",
            "original",
            "regressed",
            verdict="regression",
            oracle="wrong_reasons",
            baseline_heatmap=str(picture),
        ),
        row("d", "sticker_added", "new", baseline_model=None, baseline_verdict=None),
    ]
    meta = {"baseline": {"source": "/runs/base.parquet", "missing": 2, "missing_examples": ["x", "y"]}}
    html = write_report(rows, tmp_path / "index.html", meta=meta).read_text()
    assert "1 item regressed, 1 improved, 1 unchanged, 1 new (not in the baseline), 2 missing" in html
    section = html[html.index('id="baseline-table"') : html.index("</table>", html.index('id="baseline-table"'))]
    changed = re.findall(r'<tr class="baseline-(\w+)"', section)
    assert changed == ["regressed", "improved"]  # the unchanged and the new item are not listed
    assert "c&lt;script&gt;" in section and "<script>" not in section
    assert "90 % → 30 %" in section and "(-60 points)" in section
    # The baseline's picture is copied next to the report when its file still exists.
    assert section.count('class="side-img"') == 1
    assert 'badge v-wrong_reasons">wrong reasons</span>' in section
    assert '<span class="badge v-regression">regression</span>' in html  # the summary tile


def test_no_section_without_a_baseline(tmp_path):
    rows = [{k: v for k, v in row("a", "original", "unchanged").items() if not k.startswith(("baseline", "delta"))}]
    rows[0].pop("regression_status")
    rows[0].pop("oracle_verdict")
    html = write_report(rows, tmp_path / "index.html").read_text()
    assert 'id="baseline-table"' not in html and "Against the baseline" not in html
