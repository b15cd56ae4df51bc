"""JSON Schemas kept in the configuration repository, checked against an application's settings.

`schemas/application.schema.{json,yml,yaml}` applies to every application and
`schemas/{app}.schema.{json,yml,yaml}` to one (to a request listing several names, each name's
schema applies); all are JSON Schema Draft 2020-12, checked with
`jsonschema` against the merged, nested settings of an environment (after placeholders and
decryption). A schema that does not parse or is not a valid schema is itself a violation, so a
bad schema commit is held back like any other bad commit.

A `$ref` resolves only to another file of `schemas/` at the same version (`common.yml#/$defs/port`,
through a `referencing` registry over the caller's file reader): never the network, never the
file system. Every schema is read as if it lived at `SCHEMA_BASE` + its name, so a relative `$ref`
names a file next to it; one that resolves anywhere else, a `$ref` loop and any other failure
while applying a schema are violations of that schema, never an exception for the caller.

Pure: the caller hands in a file reader; parsed and checked schemas are kept per schema text.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast
from urllib.parse import urljoin

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT202012

from config_server.content.file_names import SHARED
from config_server.content.parsing import MAX_DEPTH, check_size
from config_server.content.positions import node_line
from config_server.errors import InvalidConfigFile

SCHEMA_FOLDER = "schemas"
#: Within one name, `.json` beats `.yml` beats `.yaml` (the first one found is used).
EXTENSIONS = (".schema.json", ".schema.yml", ".schema.yaml")
#: Longest part of a value quoted in a message.
_MAX_MESSAGE = 300
#: What a decrypted value is shown as in a message (never the value, never part of it).
SECRET_MASK = "******"
SECRET_QUOTED = f"'{SECRET_MASK}'"
#: How a rule broken by a value holding a decrypted secret names that value.
SECRET_VALUE = "<secret>"
#: The URI a schema file `schemas/<name>` is read under: a relative `$ref` resolves next to it, and
#: only URIs below this one are ever looked up (in the repository, never on the network).
SCHEMA_BASE = "https://config-repo.invalid/schemas/"
#: What a `$ref` may name below SCHEMA_BASE: a YAML or JSON file of `schemas/` (sub-folders too).
_REFERENCED = re.compile(r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]*/)*[A-Za-z0-9_-][A-Za-z0-9._-]*\.(?:json|ya?ml)")
_EMPTY_REGISTRY: Registry[Any] = Registry()


@dataclass(frozen=True)
class Schema:
    """One schema file: its path and text, and its validator (or why it cannot be used)."""

    path: str
    text: str
    validator: Draft202012Validator | None
    unusable: str | None = None
    unusable_line: int | None = None
    #: The parsed schema, as checked (None when unusable).
    document: Any = None


@dataclass(frozen=True)
class Violation:
    """One failed rule: the flat key it is about, whether the key is missing, and the message."""

    key: str
    missing: bool
    message: str
    schema_file: str
    schema_line: int | None


def schema_paths(applications: Sequence[str]) -> list[list[str]]:
    """Candidate files per schema that applies, shared first: `[[application.schema.json, ...], ...]`."""
    names = [SHARED, *(a for a in dict.fromkeys(applications) if a != SHARED)]
    return [[f"{SCHEMA_FOLDER}/{name}{ext}" for ext in EXTENSIONS] for name in names]


def load(applications: Sequence[str], read: Callable[[str], bytes | None]) -> list[Schema]:
    """The schemas that apply to the applications (a request may list several) at a version."""
    schemas = []
    for candidates in schema_paths(applications):
        for path in candidates:
            try:
                data = read(path)
            except InvalidConfigFile as exc:
                schemas.append(Schema(path, "", None, str(exc)))
                break
            if data is not None:
                schemas.append(_resolving(compile_schema(path, data), read))
                break
    return schemas


def _resolving(schema: Schema, read: Callable[[str], bytes | None]) -> Schema:
    """The schema with a validator whose `$ref`s resolve to the files `read` reads in `schemas/`."""
    if schema.validator is None:
        return schema
    return replace(schema, validator=Draft202012Validator(schema.document, registry=_registry(read)))


def _registry(read: Callable[[str], bytes | None]) -> Registry[Any]:
    """A registry that retrieves `SCHEMA_BASE` + name as the file `schemas/<name>` of one version,
    and nothing else (NoSuchResource)."""

    def retrieve(uri: str) -> Resource[Any]:
        name = uri[len(SCHEMA_BASE) :] if uri.startswith(SCHEMA_BASE) else ""
        data = read(f"{SCHEMA_FOLDER}/{name}") if _REFERENCED.fullmatch(name) else None
        if data is None:
            raise NoSuchResource(ref=uri)  # type: ignore[call-arg]
        schema = compile_schema(f"{SCHEMA_FOLDER}/{name}", data)
        if schema.validator is None:  # its own problem, told by the violation of the referring schema
            where = f"{schema.path}:{schema.unusable_line}" if schema.unusable_line else schema.path
            reason = schema.unusable or "unusable schema"
            raise InvalidConfigFile(reason if reason.startswith(schema.path) else f"{where}: {reason}")
        return Resource.from_contents(schema.document, default_specification=DRAFT202012)

    return Registry(retrieve=retrieve)  # type: ignore[call-arg]  # an attrs field the stubs miss


@functools.lru_cache(maxsize=256)
def compile_schema(path: str, data: bytes) -> Schema:
    """Parse and check a schema file once per content; a broken one is kept with its reason."""
    try:
        text = data.decode("utf-8-sig")
        if not path.endswith(".json"):
            check_size(path, text)  # the same alias and depth bounds as a configuration file
        else:
            _check_json_depth(text)
        document = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except InvalidConfigFile as exc:
        return Schema(path, "", None, str(exc))
    except (UnicodeDecodeError, ValueError, yaml.YAMLError, RecursionError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        line = line + 1 if line is not None else getattr(exc, "lineno", None)
        return Schema(path, "", None, f"schema does not parse: {_first_line(exc)}", line)
    if not isinstance(document, dict | bool):
        return Schema(path, text, None, "schema must be a mapping (a JSON object)", 1)
    try:
        Draft202012Validator.check_schema(document)
    except SchemaError as exc:
        line = node_line(text, list(exc.absolute_path))
        return Schema(path, text, None, f"not a valid Draft 2020-12 schema: {_short(exc.message)}", line)
    except Exception as exc:  # noqa: BLE001 - whatever a committed schema does is that schema's problem
        return Schema(path, text, None, f"not a usable schema ({type(exc).__name__})", None)
    if isinstance(document, dict):  # its own `$id` too: a relative `$ref` names a file next to it
        document = {**document, "$id": SCHEMA_BASE + path.removeprefix(f"{SCHEMA_FOLDER}/")}
    validator = Draft202012Validator(document, registry=_EMPTY_REGISTRY)  # resolves nothing yet
    return Schema(path, text, validator, document=document)


def _check_json_depth(text: str) -> None:
    """ValueError (with the line, as json's own errors have) when JSON nests deeper than
    MAX_DEPTH; one linear pass, before a recursive parser sees the text."""
    depth, in_string, escaped = 0, False, False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                error = ValueError(f"nested deeper than {MAX_DEPTH} levels")
                error.lineno = text.count("\n", 0, index) + 1  # type: ignore[attr-defined]
                raise error
        elif char in "]}":
            depth -= 1


def violations(
    settings: dict[str, Any], schemas: Sequence[Schema], secrets: Sequence[str] = ()
) -> Iterator[Violation]:
    """Every rule of every schema that the nested `settings` break, in a stable order.

    `secrets` are decrypted values: a value that is or holds one (a map or list around it, a
    string a placeholder put it in) is never quoted; the message names the rule without it.
    """
    for schema in schemas:
        if schema.validator is None:
            reason = schema.unusable or "unusable schema"
            yield Violation("", False, reason, schema.path, schema.unusable_line)
            continue
        try:
            found = [
                violation
                for error in sorted(schema.validator.iter_errors(settings), key=_order)
                for violation in _violations_of(error, schema, secrets)
            ]
        except Exception as exc:  # noqa: BLE001 - a schema that cannot be applied is its own violation
            yield _not_applied(schema, exc)
            continue
        yield from found


def _not_applied(schema: Schema, exc: Exception) -> Violation:
    """The violation of a schema that raised while it was applied: a `$ref` that resolves outside
    `schemas/` (named as written, at its line), a `$ref` loop, anything else."""
    uri = getattr(exc, "ref", None)
    if isinstance(uri, str):
        written = _written_ref(schema.document, uri)
        unusable = _unusable_target(exc)
        if unusable is not None:
            message = f"$ref {written!r} names an unusable schema: {unusable}"
        else:
            message = (
                f"$ref {written!r} cannot be resolved: a $ref names a file in {SCHEMA_FOLDER}/ of the "
                "same version (such as common.yml#/$defs/port)"
            )
        return Violation("", False, _short(message), schema.path, _line_with(schema.text, written))
    if isinstance(exc, RecursionError):
        why = "its $refs recurse without end"
    else:
        why = f"{type(exc).__name__} while applying it"
    return Violation("", False, f"the schema cannot be applied: {why}", schema.path, None)


def _unusable_target(exc: BaseException) -> InvalidConfigFile | None:
    """The problem of the schema file a `$ref` named, when that is why it did not resolve."""
    seen: BaseException | None = exc
    for _ in range(8):  # jsonschema wraps referencing's error, which wraps the retrieval's
        if seen is None or isinstance(seen, InvalidConfigFile):
            return seen
        seen = getattr(seen, "_wrapped", None) or seen.__cause__
    return None


def _written_ref(document: Any, uri: str) -> str:
    """The `$ref` of the document that resolves to `uri` (its fragment aside), as written; else `uri`."""
    base = document.get("$id", SCHEMA_BASE) if isinstance(document, dict) else SCHEMA_BASE
    wanted = uri.split("#", 1)[0]
    pending = [document]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and urljoin(str(base), ref).split("#", 1)[0] == wanted:
                return ref
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return uri.removeprefix(SCHEMA_BASE)


def _line_with(text: str, needle: str) -> int | None:
    """The 1-based line of the first occurrence of `needle` in `text`, if any."""
    found = text.find(needle)
    return None if found < 0 else text.count("\n", 0, found) + 1


def _order(error: ValidationError) -> tuple[list[str], list[str]]:
    return (
        [str(p) for p in error.absolute_path],
        [str(p) for p in error.absolute_schema_path],
    )


def _violations_of(error: ValidationError, schema: Schema, secrets: Sequence[str]) -> Iterator[Violation]:
    rule = str(error.validator)
    line = node_line(schema.text, list(error.absolute_schema_path))
    where = f"{schema.path}:{line}" if line else schema.path
    path = list(error.absolute_path)
    if rule == "required" and isinstance(error.instance, dict):
        # Always set on an error from a validator (the stubs allow the "unset" sentinel).
        for name in cast(list[str], error.validator_value):
            if name not in error.instance:
                key = flat_key([*path, name])
                yield Violation(key, True, f"{key}: missing [required at {where}]", schema.path, line)
        return
    key = flat_key(path)
    if holds_secret(error.instance, secrets):
        text = f"{SECRET_VALUE} fails {rule} {_short(repr(error.validator_value))}"
    else:
        text = _short(scrub(error.message, secrets))
    message = f"{key or '(root)'}: {text} [{rule} at {where}]"
    yield Violation(key, False, message, schema.path, line)


def flat_key(path: Sequence[str | int]) -> str:
    """`["orders", "tags", 0]` -> `orders.tags[0]`, as the Environment names keys."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def holds_secret(value: Any, secrets: Sequence[str]) -> bool:
    """Whether a value (or any string inside a map or list) is or contains one of the secrets."""
    if not secrets:
        return False
    if isinstance(value, str):
        return any(secret in value for secret in secrets)
    if isinstance(value, dict):
        return any(holds_secret(k, secrets) or holds_secret(v, secrets) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(holds_secret(item, secrets) for item in value)
    return False


def scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret masked, as itself and as Python quotes it (escapes and all).

    Call it before cutting a message short: a cut secret is no longer found.
    """
    for secret in secrets:
        quoted = repr(secret)
        text = text.replace(quoted, SECRET_QUOTED)
        escaped = quoted[1:-1]
        if escaped:
            text = text.replace(escaped, SECRET_MASK)
        text = text.replace(secret, SECRET_MASK)
    return text


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _first_line(exc: Exception) -> str:
    return _short(" ".join(str(exc).split()))
