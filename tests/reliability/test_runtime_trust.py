"""The trust model of docs/reliability.md, kept true by static checks of the package:
suites are data (safe YAML, a fixed set of keys, nothing that names code); only the
model registry's ``architecture`` imports and runs code; weights are loaded without
unpickling objects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "harness"
SOURCES = sorted(PACKAGE.rglob("*.py"))

# Where code may be imported or executed by name, and why.
IMPORTS_ALLOWED = {
    "architectures.py": "the registry's `architecture` (code, like conftest.py)",
}


def _code_lines(path: Path) -> list[tuple[int, str]]:
    return [
        (n, line)
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.strip() and not line.strip().startswith("#")
    ]


@pytest.mark.parametrize(
    "pattern",
    [
        r"\byaml\.(load|full_load|unsafe_load|load_all|unsafe_load_all)\(",
        r"\bpickle\b",
        r"\bdill\b",
        r"\bmarshal\.loads?\(",
        r"\bshelve\b",
        r"(?<![\w.])eval\(",
        r"(?<![\w.])exec\(",
        r"\bos\.system\(",
        r"\bsubprocess\b",
        r"yaml\.(Unsafe|Full)?Loader\b",
        r"__import__\(",
    ],
)
def test_nothing_unpickles_or_evaluates(pattern: str) -> None:
    hits = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in SOURCES
        for n, line in _code_lines(path)
        if re.search(pattern, line)
    ]
    assert not hits, hits


def test_weights_are_loaded_as_tensors_only() -> None:
    loads = [(path, line) for path in SOURCES for _, line in _code_lines(path) if "torch.load(" in line]
    assert loads, "the registry loads weights somewhere"
    assert all("weights_only=True" in line for _, line in loads), loads


def test_code_is_imported_only_for_the_registry() -> None:
    hits = {
        path.name
        for path in SOURCES
        for _, line in _code_lines(path)
        if re.search(r"import_module\(|exec_module\(|spec_from_file_location\(", line)
    }
    assert hits <= set(IMPORTS_ALLOWED), hits - set(IMPORTS_ALLOWED)


def test_suite_keys_name_no_code() -> None:
    """A suite can name a model (a registry key), an explainer (a fixed table), variants
    (a fixed table) and files to read; no key takes a module, a factory or a registry."""
    from harness.attribution import EXPLAINERS
    from harness.spec import CaseModel, Defaults, SuiteHeader

    assert set(SuiteHeader.model_fields) == {
        "suite",
        "description",
        "model",
        "models",
        "explainer",
        "defaults",
        "cases",
    }
    for model in (SuiteHeader, Defaults, CaseModel):
        assert not {"architecture", "registry", "models_file", "factory", "import"} & set(model.model_fields)
    assert all(name.startswith(("lrp/", "gradient/", "cam/")) for name in EXPLAINERS)


def test_python_tags_in_a_suite_are_refused(tmp_path: Path) -> None:
    from harness.spec import load_suite

    marker = tmp_path / "executed"
    path = tmp_path / "evil.xai.yaml"
    path.write_text(f"model: m\ncases: !!python/object/apply:os.system ['touch {marker}']\n")
    suite = load_suite(path)
    assert suite.error is not None and not marker.exists()
