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
