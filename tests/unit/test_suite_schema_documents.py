"""The JSON Schema that ``harness schema`` prints (and docs/suite.schema.json, which
editors load) accepts every shipped suite and every suite example of the docs, checked
with a real JSON Schema validator, so that the schema and the documents cannot drift
apart (an editor would underline every case of a suite the schema rejects)."""

from __future__ import annotations

import copy
import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.spec import suite_json_schema

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
SUITES = sorted((ROOT / "testcases").rglob("*.xai.yaml"))
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
_FENCE = re.compile(r"^```ya?ml[^\n]*\n(.*?)^```", re.S | re.M)


def printed_schema() -> dict[str, Any]:
    """What ``python -m harness schema`` prints."""
    from harness.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["schema"]) == 0
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return printed_schema()


def validator(schema: dict[str, Any]) -> Any:
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def problems(schema: dict[str, Any], document: Any) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message[:300]}"
        for error in validator(schema).iter_errors(document)
    ]


def doc_examples() -> list[tuple[str, Any]]:
    """(where, document) of every YAML example in the docs that is a suite or a part of
    a suite's header (registries and class files are other formats)."""
    suite_keys = set(suite_json_schema()["properties"])
    out = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            where = f"{path.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 1}"
            document = yaml.safe_load(match.group(1))
            if not isinstance(document, dict):
                continue
            is_registry = isinstance(document.get("models"), dict)
            if "cases" in document or (set(document) <= suite_keys and not is_registry):
                out.append((where, document))
    return out


EXAMPLES = doc_examples()


def test_there_is_something_to_check() -> None:
    assert len(SUITES) >= 3
    assert len(EXAMPLES) >= 5
    assert any("cases" in document for _, document in EXAMPLES)


def test_the_printed_schema_is_the_generated_one_and_a_valid_schema(schema: dict[str, Any]) -> None:
    assert schema == json.loads(json.dumps(suite_json_schema()))
    validator(schema)


def test_the_schema_file_in_docs_is_the_printed_one(schema: dict[str, Any]) -> None:
    shipped = json.loads((ROOT / "docs" / "suite.schema.json").read_text(encoding="utf-8"))
    assert shipped == schema, "regenerate: python -m harness schema --output docs/suite.schema.json"


@pytest.mark.parametrize("path", SUITES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_suite_validates(schema: dict[str, Any], path: Path) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert problems(schema, document) == []


@pytest.mark.parametrize(("where", "document"), EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_every_documented_suite_validates(schema: dict[str, Any], where: str, document: Any) -> None:
    if "cases" not in document:
        # A header fragment (e.g. only 'defaults'): the rest of the suite is elided.
        schema = copy.deepcopy(schema)
        schema.pop("required", None)
    assert problems(schema, document) == []


@pytest.mark.parametrize(
    "region",
    [{"mask": "m.png"}, {"box": [0, 0, 4, 4]}, {"polygon": [[0, 0], [4, 0], [4, 4]]}, [{"mask": "m.png"}]],
    ids=["mask", "box", "polygon", "list"],
)
def test_object_accepts_each_documented_form(schema: dict[str, Any], region: Any) -> None:
    suite = {"model": "m", "cases": [{"id": "a", "image": "a.png", "label": "cat", "object": region}]}
    assert problems(schema, suite) == []


@pytest.mark.parametrize(
    "suite",
    [
        {"model": "m", "cases": [{"id": "a", "image": "a.png", "object": "m.png"}]},
        {"model": "m", "cases": []},
        {"model": "m", "cases": [{"id": "a", "image": "a.png", "object": {"mask": "m.png"}, "colour": "red"}]},
    ],
    ids=["object-is-a-string", "no-cases", "unknown-key"],
)
def test_the_schema_still_rejects_what_the_loader_rejects(schema: dict[str, Any], suite: Any) -> None:
    assert problems(schema, suite) != []
