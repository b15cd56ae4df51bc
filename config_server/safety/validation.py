"""One notion of "broken": what makes an environment at a version unfit to serve.

An environment (application, profiles) at a version is broken when resolving it fails: a file
does not parse (every `InvalidConfigFile`, limits included), a `{cipher}` value does not decrypt,
or the repository's JSON Schema for the application rejects its merged settings. The server's
serving path, the watch hub (through the service) and `config-server validate` all call
`checked_environment`, so the three can never disagree.

Pure over what the caller hands in (a file reader, a keyring): no git, no HTTP. A broken
environment raises `BrokenEnvironment` carrying every `Problem`, each naming a file and line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from config_server.content import render
from config_server.content.approval_policy import POLICY_FILE, PolicyError, parse_policy
from config_server.content.crypto import CIPHER_PREFIX, Keyring
from config_server.content.decryption import decrypt_environment
from config_server.content.positions import key_line
from config_server.content.resolve import ReadFile
from config_server.errors import BrokenEnvironment, ConfigServerError, CryptoError, InvalidConfigFile, Problem
from config_server.model import Environment
from config_server.safety import schema_rules

log = logging.getLogger(__name__)

_DOCUMENT_SUFFIX = re.compile(r" \(document #(\d+)\)$")
_FILE_IN_MESSAGE = re.compile(r"^(?P<file>[^\s:]+\.(?:ya?ml|properties|json))\b")
_LINE_IN_MESSAGE = re.compile(r"\bline (\d+)")
_KEY_IN_MESSAGE = re.compile(r"key '([^']*)'")


def broken(problems: Sequence[Problem]) -> BrokenEnvironment:
    """The error for these problems; its message is the first one, with a count of the rest."""
    first = problems[0]
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return BrokenEnvironment(f"{first.location}: {first.message}{more}", tuple(problems))


def checked_environment(
    resolve: Callable[[], Environment],
    applications: Sequence[str],
    read: ReadFile,
    uri: str,
    keyring: Keyring | None,
    decrypt: bool = True,
) -> Environment:
    """Resolve and decrypt the environment and check it against the schemas; raise BrokenEnvironment.

    `resolve` builds the environment from the files (it raises InvalidConfigFile for a file
    that does not parse or hits a limit); `applications` are the names whose schemas apply;
    `read` reads a file of the version checked (for schemas and line numbers). `decrypt=False`
    (only `config-server validate` without a key) leaves `{cipher}` values unchecked.

    Any other exception while checking (what committed content should never cause, but a bug
    could) makes the environment broken too, never an error for the caller: a server error
    (ConfigServerError: a label or repository that cannot be read), an OSError and a MemoryError
    are not about the content and propagate, so no verdict is kept for them.
    """
    try:
        return _checked_environment(resolve, applications, read, uri, keyring, decrypt)
    except (ConfigServerError, OSError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - content must never turn into a 500
        kind = type(exc).__name__
        log.warning(
            "%s could not be checked (%s, at %s): held back as broken", ",".join(applications), kind, uri
        )
        raise broken([Problem(None, None, f"could not be checked: {kind} while checking it")]) from None


def _checked_environment(
    resolve: Callable[[], Environment],
    applications: Sequence[str],
    read: ReadFile,
    uri: str,
    keyring: Keyring | None,
    decrypt: bool,
) -> Environment:
    try:
        environment = resolve()
    except InvalidConfigFile as exc:
        raise broken([problem_of_error(exc, uri, read)]) from exc
    encrypted = environment
    failures: tuple[tuple[str, str], ...] = ()
    if decrypt:
        environment, failures = decrypt_environment(environment, keyring)
    problems = [_decryption_problem(name, key, encrypted, keyring, uri, read) for name, key in failures]
    if problems:
        raise broken(problems)
    try:  # placeholders bounded (`limits.py`): a bomb is a broken environment like any other
        merged = render.resolve_placeholders(render.merge(environment.property_sources))
    except InvalidConfigFile as exc:
        raise broken(
            _redacted([problem_of_error(exc, uri, read)], _plaintexts(encrypted, environment))
        ) from exc
    problems.extend(policy_problems(read))
    schemas = schema_rules.load(applications, read)
    if schemas:
        secrets = _plaintexts(encrypted, environment)
        problems += _redacted(_schema_problems(environment, merged, schemas, uri, read, secrets), secrets)
    if problems:
        raise broken(problems)
    return environment


def policy_problems(read: ReadFile) -> list[Problem]:
    """The problem of an approval policy (`policy/approvals.yml`) that is not one, else nothing.

    A policy that cannot be read cannot say which environments are protected, so the commit is
    broken for every environment (fail closed): the last good commit keeps serving everywhere,
    with the problem in `/health`, `validate` and `diff`, instead of a protected environment
    being released unapproved."""
    try:
        parse_policy(read(POLICY_FILE))
    except PolicyError as exc:
        return [exc.problem]
    return []


def problem_of_error(exc: InvalidConfigFile, uri: str = "", read: ReadFile | None = None) -> Problem:
    """A Problem from a parse or limit error, whose message starts with the file and names the line.

    A limit error names the property source (`<uri>/orders.yml (document #1): key 'a': ...`):
    the file and, when `read` is given, the line of that key are found from it.
    """
    message = str(exc)
    path = getattr(exc, "path", None)
    line = getattr(exc, "line", None)
    if uri and message.startswith(uri + "/"):
        source, _, rest = message.partition(": ")
        path, document = source_file(source, uri)
        message = f"{path}: {rest}"
        key = _KEY_IN_MESSAGE.match(rest)
        if line is None and key is not None and read is not None:
            line = _line_of(path, document, key.group(1), read)
    found = _FILE_IN_MESSAGE.match(message)
    if path is None and found:
        path = found["file"]
    if line is None:
        number = _LINE_IN_MESSAGE.search(message)
        line = int(number.group(1)) if number else None
    if path and message.startswith(f"{path}: "):
        message = message[len(path) + 2 :]
    elif path and message.startswith(path):
        message = message[len(path) :].lstrip(": ")
    return Problem(path, line, message)


def source_file(name: str, uri: str) -> tuple[str, int]:
    """(repository path, document index) of a property source named `<uri>/<path>[ (document #n)]`."""
    document = 0
    found = _DOCUMENT_SUFFIX.search(name)
    if found:
        document = int(found.group(1))
        name = name[: found.start()]
    return name.removeprefix(uri + "/"), document


def _line_of(path: str, document: int, flat_key: str, read: ReadFile) -> int | None:
    try:
        data = read(path)
    except InvalidConfigFile:
        return None
    return None if data is None else key_line(path, data, document, flat_key)


def _decryption_problem(
    name: str, key: str, encrypted: Environment, keyring: Keyring | None, uri: str, read: ReadFile
) -> Problem:
    path, document = source_file(name, uri)
    return Problem(
        path,
        _line_of(path, document, key, read),
        f"{key}: cannot decrypt: {_why(name, key, encrypted, keyring)}",
    )


def _why(name: str, key: str, encrypted: Environment, keyring: Keyring | None) -> str:
    """Why a value did not decrypt (asked again: only for the rare value that failed)."""
    if keyring is None:
        return "no encryption key is configured"
    for source in encrypted.property_sources:
        if source.name == name and isinstance(source.source.get(key), str):
            try:
                keyring.decrypt(source.source[key])
            except CryptoError as exc:
                return str(exc)
    return "it does not decrypt with the configured key"


def _schema_problems(
    environment: Environment,
    merged: dict[str, Any],
    schemas: list[schema_rules.Schema],
    uri: str,
    read: ReadFile,
    secrets: Sequence[str],
) -> list[Problem]:
    try:
        settings = render.unflatten(merged)
    except InvalidConfigFile as exc:  # a list index over the limit
        return [problem_of_error(exc, uri, read)]
    problems = []
    for violation in schema_rules.violations(settings, schemas, secrets):
        if violation.missing or not violation.key:
            problems.append(Problem(violation.schema_file, violation.schema_line, violation.message))
            continue
        origin = _origin(environment, violation.key)
        if origin is None:
            problems.append(Problem(violation.schema_file, violation.schema_line, violation.message))
            continue
        path, document = source_file(origin, uri)
        problems.append(Problem(path, _line_of(path, document, violation.key, read), violation.message))
    return problems


def _plaintexts(encrypted: Environment, decrypted: Environment) -> list[str]:
    """The decrypted values (longest first), which no message may quote."""
    secrets = set()
    for before, after in zip(encrypted.property_sources, decrypted.property_sources, strict=True):
        if before is after:
            continue
        for key, value in before.source.items():
            if isinstance(value, str) and value.startswith(CIPHER_PREFIX):
                plain = after.source.get(key)
                if isinstance(plain, str) and plain:
                    secrets.add(plain)
    return sorted(secrets, key=len, reverse=True)


def _redacted(problems: list[Problem], secrets: list[str]) -> list[Problem]:
    """Defence in depth: every secret masked, raw or as Python quotes it (a cut one too)."""
    if not secrets:
        return problems
    out = []
    for problem in problems:
        message = _without_cut_secret(schema_rules.scrub(problem.message, secrets), secrets)
        out.append(Problem(problem.file, problem.line, message))
    return out


def _without_cut_secret(message: str, secrets: list[str]) -> str:
    """A message cut short (`...`) right inside a secret: the part of the secret before the cut masked."""
    if "..." not in message:
        return message
    pieces = message.split("...")
    for index, body in enumerate(pieces[:-1]):
        for secret in secrets:
            for form in (secret, repr(secret)[1:-1]):
                size = next(
                    (n for n in range(min(len(form), len(body)), 3, -1) if body.endswith(form[:n])), 0
                )
                if size:
                    body = body[:-size] + schema_rules.SECRET_MASK
        pieces[index] = body
    return "...".join(pieces)


def _origin(environment: Environment, flat_key: str) -> str | None:
    """The name of the most specific property source that set `flat_key` (or a key below it)."""
    below = (flat_key + ".", flat_key + "[")
    for source in environment.property_sources:
        if flat_key in source.source or any(k.startswith(below) for k in source.source):
            return source.name
    return None
