"""Safe YAML loading that remembers where every mapping key and list item came from.

PyYAML's node marks hold the line numbers; we keep them on dict/list subclasses so a
validation error at ``cases[3].object.mask`` can be reported as ``file.yaml:27``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel


class MarkedDict(dict):
    """A dict that knows its own line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]


class MarkedList(list):
    """A list that knows its own line and the line of each item (1-based)."""

    line: int = 0
    item_lines: list[int]


class _MarkedLoader(yaml.SafeLoader):
    """SafeLoader (no arbitrary objects) whose containers carry line numbers."""


# libyaml's parser, when PyYAML was built with it, is several times faster on large
# suites and gives nodes with the same marks; the constructor is the same safe one.
class _FastMarkedLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same, parsed by libyaml."""


def _construct_mapping(loader: _MarkedLoader, node: yaml.MappingNode) -> MarkedDict:
    loader.flatten_mapping(node)
    result = MarkedDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found an unhashable key", key_node.start_mark
            ) from None
        if key in result:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _MarkedLoader, node: yaml.SequenceNode) -> MarkedList:
    result = MarkedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


for _loader in (_MarkedLoader, _FastMarkedLoader):
    _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_marked(text: str) -> Any:
    """Parse YAML text safely into :class:`MarkedDict` / :class:`MarkedList` containers.

    Raises
    ------
    yaml.YAMLError
        On syntax errors; ``problem_mark`` holds the position.
    """
    # Both loaders derive from SafeLoader: only plain YAML types are constructed.
    try:
        return _parse(_FastMarkedLoader, text)
    except yaml.YAMLError:
        # The pure-Python parser places syntax errors on the line of their cause
        # (libyaml often on the line where it gave up); parse again for its message.
        return _parse(_MarkedLoader, text)


def _parse(loader_class: type, text: str) -> Any:
    loader = loader_class(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_marked_file(path: str | Path) -> Any:
    """Read and parse a YAML file (see :func:`load_marked`)."""
    return load_marked(Path(path).read_text(encoding="utf-8"))


def line_of(data: Any, loc: Sequence[Any]) -> int | None:
    """Best line for a location path such as ``("cases", 3, "object", "mask")``.

    Walks as deep as the data goes; a key that does not exist (a missing field) is
    reported at the line of its parent mapping.
    """
    line = getattr(data, "line", None) or None
    node = data
    for part in loc:
        if isinstance(node, MarkedDict) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, MarkedList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line


def plain(data: Any) -> Any:
    """Convert marked containers back to plain dicts and lists (for dumping)."""
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [plain(v) for v in data]
    return data


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's type accepts a boolean anywhere (``bool | str``, ``list[bool]``, ...)."""
    if annotation is bool:
        return True
    return any(_admits_bool(arg) for arg in get_args(annotation))


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_bool(v) for v in value)


def refuse_booleans(model: type[BaseModel], field_name: str | None, value: Any) -> Any:
    """Refuse ``yes``/``true`` where a number belongs: pydantic would read ``true`` as 1,
    so ``min_object_mass: yes`` or ``color: [true, 0, 0]`` would pass as numbers."""
    info = model.model_fields.get(field_name or "")
    if info is not None and not _admits_bool(info.annotation) and _holds_bool(value):
        raise ValueError("expected a number, got a boolean (true/false/yes/no)")
    return value
