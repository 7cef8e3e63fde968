"""The line-marking YAML loader is a safe loader."""

import pytest
import yaml

from harness.yamlio import line_of, load_marked


def test_lines_of_keys_and_items():
    data = load_marked("a: 1\nb:\n  - x\n  - {c: 2}\n")
    assert line_of(data, ("b", 1, "c")) == 4
    assert line_of(data, ("b", 0)) == 3


def test_python_tags_are_refused():
    with pytest.raises(yaml.YAMLError):
        load_marked("x: !!python/object/apply:os.system ['true']\n")


def test_duplicate_keys_are_refused():
    with pytest.raises(yaml.YAMLError, match="duplicate key"):
        load_marked("a: 1\na: 2\n")


def _marks(data):
    """Every container's own line and its keys'/items' lines, recursively."""
    if isinstance(data, dict):
        return (data.line, dict(data.key_lines), {k: _marks(v) for k, v in data.items()})
    if isinstance(data, list):
        return (data.line, list(data.item_lines), [_marks(v) for v in data])
    return data


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")
def test_libyaml_and_python_parsers_give_the_same_data_and_lines():
    from pathlib import Path

    from harness.yamlio import _FastMarkedLoader, _MarkedLoader, _parse

    for path in sorted(Path(__file__).parents[2].joinpath("testcases").rglob("*.xai.yaml")):
        text = path.read_text()
        assert _marks(_parse(_FastMarkedLoader, text)) == _marks(_parse(_MarkedLoader, text)), path


def test_syntax_errors_point_at_the_line_of_their_cause():
    with pytest.raises(yaml.YAMLError) as info:
        load_marked("model: m\ncases:\n  - id: [unclosed\n")
    assert info.value.context_mark.line + 1 == 3  # libyaml gives no context mark
