"""Where in a file a key was set: line numbers for problem reports, found only when reporting.

Serving parses files without positions (fast); when `validation.py` reports a problem with one
value, it re-reads that one file here with marks and finds the line that set the key (with
parsing's own readers: `key_lines`, `properties_entries`, `line_of_key`). Pure functions over
file text: the flat key (`a.b[0].c`, as `parsing.flatten` names it) or a path of map keys and
list indexes (a JSON Schema location) in, a 1-based line number (or None) out.
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml

from config_server.content.parsing import SafeYamlLoader, key_lines, line_of_key, properties_entries


def key_line(path: str, data: bytes, document: int, flat_key: str) -> int | None:
    """The line of `flat_key` (or the first key below it) in document #`document` of the file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if path.endswith(".properties"):
        return line_of_key(((key, line) for key, _, line in properties_entries(text)), flat_key)
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=SafeYamlLoader)):
            if index == document:
                return line_of_key(key_lines(node), flat_key)
    except yaml.YAMLError:
        return None
    return None


def node_line(text: str, location: Sequence[str | int]) -> int | None:
    """The line of the node at `location` (map keys and list indexes) in a YAML or JSON text.

    Follows the location as far as the text has it and answers the line of the deepest node
    found: a JSON Schema error's `absolute_schema_path` gives the rule's line in the schema file.
    """
    try:
        node = yaml.compose(text, Loader=SafeYamlLoader)
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
