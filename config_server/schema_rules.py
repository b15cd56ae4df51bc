"""JSON Schemas kept in the configuration repository, checked against an application's settings.

`schemas/application.schema.{json,yml,yaml}` applies to every application and
`schemas/{app}.schema.{json,yml,yaml}` to one (to a request listing several names, each name's
schema applies); all are JSON Schema Draft 2020-12, checked with
`jsonschema` against the merged, nested settings of an environment (after placeholders and
decryption). A schema that does not parse or is not a valid schema is itself a violation, so a
bad schema commit is held back like any other bad commit.

Pure: the caller hands in a file reader; compiled validators are kept per schema text.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from config_server.errors import InvalidConfigFile
from config_server.parsing import check_size
from config_server.positions import node_line
from config_server.resolve import SHARED

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


@dataclass(frozen=True)
class Schema:
    """One schema file: its path and text, and its validator (or why it cannot be used)."""

    path: str
    text: str
    validator: Draft202012Validator | None
    unusable: str | None = None
    unusable_line: int | None = None


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
                schemas.append(compile_schema(path, data))
                break
    return schemas


@functools.lru_cache(maxsize=256)
def compile_schema(path: str, data: bytes) -> Schema:
    """Parse and check a schema file once per content; a broken one is kept with its reason."""
    try:
        text = data.decode("utf-8-sig")
        if not path.endswith(".json"):
            check_size(path, text)  # the same alias and depth bounds as a configuration file
        document = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except InvalidConfigFile as exc:
        return Schema(path, "", None, str(exc))
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
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
    return Schema(path, text, Draft202012Validator(document))


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
        errors = sorted(schema.validator.iter_errors(settings), key=_order)
        for error in errors:
            yield from _violations_of(error, schema, secrets)


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
