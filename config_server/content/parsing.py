"""Turn one configuration file's bytes into documents of flat `a.b[0].c` keys.

Pure functions: no git, no HTTP. YAML keeps its types; `.properties` values are strings. A file
that does not parse, has duplicate keys or a top level that is not a mapping raises
InvalidConfigFile with the file, line and column; a key with a list index above
`limits.MAX_LIST_INDEX` (`servers[2000000000]`) raises ConfigLimitExceeded naming the file and key.

What other readers of configuration text need is here once: `SafeYamlLoader` and the
`StrictLoader` built on it, the `.properties` line reader (`properties_entries`), and the flat key
and line of every YAML key (`key_lines`) with the rule that finds a key's line (`line_of_key`).
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from config_server.content.limits import check_list_indexes
from config_server.errors import InvalidConfigFile

#: PyYAML's safe loader, the C (libyaml) one when PyYAML was built with it: the fast way to read,
#: compose or parse any YAML of the repository.
SafeYamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Deepest nesting of maps and lists a file may have.
MAX_DEPTH = 64
#: Most values (scalars, maps, lists) a file may expand to, aliases counted as many times as used.
MAX_NODES = 200_000


_MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictLoader(SafeYamlLoader):  # type: ignore[misc, valid-type]
    """The safe loader configuration is read with: it refuses duplicate keys in a mapping and keys
    that are not scalars, and reports a scalar that does not convert (a date such as 2026-02-30)
    as a YAML error at its line."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
    loader.flatten_mapping(node)
    inherited = len(node.value) - own  # `<<` merges come first; the mapping's own keys override them
    mapping: dict[Any, Any] = {}
    own_keys: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(None, None, "a key must be a scalar", key_node.start_mark)
        if index >= inherited:
            if key in own_keys:
                message = f"duplicate key {key!r}"
                raise yaml.constructor.ConstructorError(None, None, message, key_node.start_mark)
            own_keys.add(key)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _marked(construct: Any) -> Any:
    """A scalar constructor whose ValueError (a date such as 2026-02-30, an integer longer than
    Python converts) is a YAML error at the value's line, like any other that does not parse."""

    def checked(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, OverflowError) as exc:
            text = str(node.value)
            shown = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
            why = f": {exc}" if node.tag.endswith("timestamp") else ""
            problem = f"{shown!r} is not a valid {node.tag.rsplit(':', 1)[-1]}{why}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None

    return checked


for _tag, _construct in (
    ("tag:yaml.org,2002:timestamp", SafeYamlLoader.construct_yaml_timestamp),
    ("tag:yaml.org,2002:int", SafeYamlLoader.construct_yaml_int),
    ("tag:yaml.org,2002:float", SafeYamlLoader.construct_yaml_float),
):
    StrictLoader.add_constructor(_tag, _marked(_construct))


@dataclass(frozen=True)
class Document:
    """One document of a file: its position, its profile activation (if any) and its flat keys."""

    index: int
    activation: Any
    values: dict[str, Any]


def parse_file(path: str, data: bytes) -> list[Document]:
    """Parse `.yml`/`.yaml` (multi-document) or `.properties` bytes into documents."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidConfigFile(f"{path}: not valid UTF-8 at byte {exc.start}") from exc
    if path.endswith(".properties"):
        values = parse_properties(text)
        check_list_indexes(path, values)
        return [Document(0, _activation(values), values)]
    documents = _parse_yaml(path, text)
    for document in documents:
        check_list_indexes(path, document.values)
    return documents


def check_size(path: str, text: str) -> None:
    """Refuse alias bombs and deep nesting from the event stream, before anything is built.

    One running count of values: an alias adds its anchor's expanded size (remembered when the
    anchored node ends), so it costs what it would cost written out; nothing is ever expanded.
    """
    anchored: dict[str | None, int] = {}  # an alias always names an anchor; the stubs allow None
    open_collections: list[tuple[str | None, int]] = []  # (anchor, count when it opened)
    count = 0
    for event in yaml.parse(text, Loader=SafeYamlLoader):
        if isinstance(event, yaml.AliasEvent):
            count += anchored.get(event.anchor, 1)
        elif isinstance(event, yaml.ScalarEvent):
            count += 1
            if event.anchor:
                anchored[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            open_collections.append((event.anchor, count))
            count += 1
            if len(open_collections) > MAX_DEPTH:
                where = f"line {event.start_mark.line + 1}" if event.start_mark else "somewhere"
                raise InvalidConfigFile(f"{path}: nested deeper than {MAX_DEPTH} levels at {where}")
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, opened_at = open_collections.pop()
            if anchor:
                anchored[anchor] = count - opened_at
        if count > MAX_NODES:
            raise InvalidConfigFile(
                f"{path}: expands to more than {MAX_NODES} values (an alias bomb or an oversized file)"
            )


def _parse_yaml(path: str, text: str) -> list[Document]:
    try:
        check_size(path, text)
        raw_documents = list(yaml.load_all(text, Loader=StrictLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = exc.problem or exc.context or "malformed YAML"
        raise InvalidConfigFile(f"{path}: {problem} at {where}") from exc
    except yaml.YAMLError as exc:
        raise InvalidConfigFile(f"{path}: malformed YAML ({exc})") from exc
    documents = []
    for index, raw in enumerate(raw_documents):
        if raw is None:
            continue
        if not isinstance(raw, dict):
            raise InvalidConfigFile(
                f"{path}: document #{index} must be a mapping of keys to values, not a {type(raw).__name__}"
            )
        values = flatten(raw)
        documents.append(Document(index, _activation(values), values))
    return documents


def _activation(values: dict[str, Any]) -> Any:
    """The profile expression of a document, from either spelling, nested or dotted."""
    for key in ("spring.config.activate.on-profile", "spring.profiles"):
        if key in values:
            return values[key]
        listed = [v for k, v in values.items() if k.startswith(f"{key}[")]
        if listed:
            return listed
    return None


def flatten(data: dict[Any, Any]) -> dict[str, Any]:
    """Nested maps to `a.b` keys and lists to `a[0]`, keeping JSON-typed scalars."""
    out: dict[str, Any] = {}
    _flatten_into(out, "", data)
    return out


def _flatten_into(out: dict[str, Any], prefix: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            name = _key_text(key)
            _flatten_into(out, f"{prefix}.{name}" if prefix else name, item)
    elif isinstance(value, list):
        if not value:
            out[prefix] = ""
        for i, item in enumerate(value):
            _flatten_into(out, f"{prefix}[{i}]", item)
    else:
        out[prefix] = _json_scalar(value)


def _key_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return "" if key is None else str(key)


def _json_scalar(value: Any) -> Any:
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, set):
        return sorted(map(str, value))
    return value


def key_lines(node: yaml.Node | None, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(flat key, 1-based line) of every key and list item of a composed YAML node, in document
    order (a key before the keys below it); flat keys as `flatten` names them (`a.b[0].c`), below
    `prefix`. `<<` merge keys and keys that are not scalars are skipped: they set no key themselves.
    """
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            name = _key_text(_key_value(key_node))
            full = f"{prefix}.{name}" if prefix else name
            yield full, key_node.start_mark.line + 1
            yield from key_lines(value_node, full)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            full = f"{prefix}[{index}]"
            yield full, item.start_mark.line + 1
            yield from key_lines(item, full)


def _key_value(node: yaml.ScalarNode) -> Any:
    """A key's value as the loader builds it (`1:` is the number 1), its text when it does not load."""
    if node.tag == "tag:yaml.org,2002:str":
        return node.value
    try:
        return yaml.load(node.value, Loader=StrictLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        return node.value


def line_of_key(lines: Iterable[tuple[str, int]], flat_key: str) -> int | None:
    """The line of `flat_key` among (flat key, line) pairs, else of the first key below it
    (`a.b` for `a`, `a[0]` for `a`), else None: where a problem with that key is reported."""
    below: int | None = None
    for name, line in lines:
        if name == flat_key:
            return line
        if below is None and (name.startswith(flat_key + ".") or name.startswith(flat_key + "[")):
            below = line
    return below


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_SEPARATOR = re.compile(r"(?<!\\)(?:\\\\)*(\s*[=:]\s*|\s+)")


def parse_properties(text: str) -> dict[str, str]:
    """Java `.properties`: comments, `=`/`:`/space separators, continuations and escapes."""
    return {key: value for key, value, _ in properties_entries(text)}


def properties_entries(text: str) -> Iterator[tuple[str, str, int]]:
    """(key, value, 1-based line it starts on) of every entry of a `.properties` text, in order.

    The one reader of `.properties` lines: comments (`#`, `!`), `=`/`:`/space separators, a
    trailing odd `\\` continuing onto the next line, and escapes, as Java reads them.
    """
    lines = text.splitlines()
    count = len(lines)
    number = 0
    while number < count:
        start = number
        stripped = lines[number].lstrip()
        number += 1
        if not stripped or stripped[0] in "#!":
            continue
        while _continues(stripped):
            stripped = stripped[:-1] + (lines[number].lstrip() if number < count else "")
            number += 1
        match = _SEPARATOR.search(stripped)
        if match:
            key, value = stripped[: match.start(1)], stripped[match.end(1) :]
        else:
            key, value = stripped, ""
        yield _unescape(key), _unescape(value), start + 1


def _continues(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text  # nothing escaped: most keys and values
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
