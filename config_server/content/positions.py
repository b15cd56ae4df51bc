"""Where in a file a key was set: line numbers for problem reports, found only when reporting.

Serving parses files without positions (fast); when `validation.py` reports a problem with one
value, it re-reads that one file here with marks and finds the line that set the key. Pure
functions over file text: the flat key (`a.b[0].c`, as `parsing.flatten` names it) or a path of
map keys and list indexes (a JSON Schema location) in, a 1-based line number (or None) out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from config_server.content.parsing import _SEPARATOR, _continues, _key_text, _unescape

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


def key_line(path: str, data: bytes, document: int, flat_key: str) -> int | None:
    """The line of `flat_key` (or the first key below it) in document #`document` of the file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if path.endswith(".properties"):
        return _properties_line(text, flat_key)
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=_BaseLoader)):
            if index == document:
                return _yaml_line(node, flat_key)
    except yaml.YAMLError:
        return None
    return None


def _yaml_line(root: Any, flat_key: str) -> int | None:
    prefix_match: int | None = None
    for name, line in _flat_lines(root, ""):
        if name == flat_key:
            return line
        if prefix_match is None and (name.startswith(flat_key + ".") or name.startswith(flat_key + "[")):
            prefix_match = line
    return prefix_match


def _flat_lines(node: Any, prefix: str) -> Iterator[tuple[str, int]]:
    """(flat key, line) of every key and list item, in document order (keys before their values)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            name = _key_text(_scalar(key_node))
            full = f"{prefix}.{name}" if prefix else name
            yield full, key_node.start_mark.line + 1
            yield from _flat_lines(value_node, full)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            full = f"{prefix}[{index}]"
            yield full, item.start_mark.line + 1
            yield from _flat_lines(item, full)


def _scalar(node: yaml.ScalarNode) -> Any:
    if node.tag == "tag:yaml.org,2002:str":
        return node.value
    try:
        return yaml.safe_load(node.value)
    except yaml.YAMLError:
        return node.value


def _properties_line(text: str, flat_key: str) -> int | None:
    lines = text.splitlines()
    number = 0
    prefix_match: int | None = None
    while number < len(lines):
        start = number
        stripped = lines[number].lstrip()
        number += 1
        if not stripped or stripped[0] in "#!":
            continue
        while _continues(stripped) and number < len(lines):
            stripped = stripped[:-1] + lines[number].lstrip()
            number += 1
        match = _SEPARATOR.search(stripped)
        key = _unescape(stripped[: match.start(1)] if match else stripped)
        if key == flat_key:
            return start + 1
        if prefix_match is None and (key.startswith(flat_key + ".") or key.startswith(flat_key + "[")):
            prefix_match = start + 1
    return prefix_match


def node_line(text: str, location: Sequence[str | int]) -> int | None:
    """The line of the node at `location` (map keys and list indexes) in a YAML or JSON text.

    Follows the location as far as the text has it and answers the line of the deepest node
    found: a JSON Schema error's `absolute_schema_path` gives the rule's line in the schema file.
    """
    try:
        node = yaml.compose(text, Loader=_BaseLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = node.start_mark.line + 1
    for step in location:
        found = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(step):
                    found = (key_node.start_mark.line + 1, value_node)
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            item = node.value[step]
            found = (item.start_mark.line + 1, item)
        if found is None:
            break
        line, node = found
    return line
