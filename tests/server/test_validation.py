"""`validation.checked_environment` over plain dicts of files: what is broken, and where it says so."""

from __future__ import annotations

import pytest

from config_server.content.crypto import Keyring
from config_server.content.positions import key_line, node_line
from config_server.content.resolve import Request, resolve_environment
from config_server.errors import BrokenEnvironment
from config_server.safety.validation import checked_environment

URI = "file:///repo"


def check(files: dict[str, str], app: str = "orders", profiles: tuple[str, ...] = ("default",), keyring=None):
    def read(path: str) -> bytes | None:
        text = files.get(path)
        return None if text is None else text.encode()

    request = Request(app, profiles, None)
    return checked_environment(
        lambda: resolve_environment(request, "v1", [""], read, URI), (app,), read, URI, keyring
    )


def problems(files: dict[str, str], **kwargs) -> list[str]:
    with pytest.raises(BrokenEnvironment) as caught:
        check(files, **kwargs)
    return [f"{p.location}: {p.message}" for p in caught.value.problems]


SCHEMA = "properties:\n  limits:\n    properties:\n      max: {type: integer, maximum: 10}\n"


def test_a_violation_names_the_most_specific_file_that_set_the_value():
    files = {
        "application.yml": "limits:\n  max: 1\n",
        "orders.yml": "other: 1\n---\nspring.profiles: prod\nlimits:\n  max: 99\n",
        "schemas/application.schema.yml": SCHEMA,
    }
    assert check(files).name == "orders"
    assert problems(files, profiles=("prod",)) == [
        "orders.yml:5: limits.max: 99 is greater than the maximum of 10 "
        "[maximum at schemas/application.schema.yml:4]"
    ]


def test_properties_files_report_the_line_of_the_key():
    files = {
        "orders.properties": "# comment\nname=x\nlimits.max=\\\n  12\n",
        "schemas/orders.schema.yml": (
            "properties:\n  limits:\n    properties:\n      max: {pattern: '^[0-9]$'}\n"
        ),
    }
    assert problems(files) == [
        "orders.properties:3: limits.max: '12' does not match '^[0-9]$' "
        "[pattern at schemas/orders.schema.yml:4]"
    ]


def test_placeholders_are_resolved_before_the_schema_check():
    files = {
        "orders.yml": "base: 20\nlimits:\n  max: ${base}\n",
        "schemas/orders.schema.yml": "properties:\n  limits:\n    properties:\n      max: {pattern: '^1'}\n",
    }
    assert problems(files) == [
        "orders.yml:3: limits.max: '20' does not match '^1' [pattern at schemas/orders.schema.yml:4]"
    ]


def test_a_decrypted_value_is_never_quoted():
    keyring = Keyring.single("foo")
    files = {
        "orders.yml": (
            f"db:\n  password: '{{cipher}}{keyring.encrypt('hunter2')}'\n  url: x/${{db.password}}\n"
        ),
        "schemas/orders.schema.yml": (
            "properties:\n  db:\n    properties:\n"
            "      password: {minLength: 10}\n      url: {pattern: '^jdbc'}\n"
        ),
    }
    found = problems(files, keyring=keyring)
    assert len(found) == 2 and not any("hunter2" in p for p in found)
    assert found[0].startswith("orders.yml:2: db.password: <secret> fails minLength 10")


def test_an_unusable_schema_breaks_the_environments_it_applies_to():
    files = {"orders.yml": "a: 1\n", "schemas/orders.schema.json": '{"type": "object",\n "minimum": "x"}'}
    (found,) = problems(files)
    assert found.startswith("schemas/orders.schema.json:2: not a valid Draft 2020-12 schema")
    assert check({"payments.yml": "a: 1\n", **files}, app="payments").name == "payments"
    (broken_json,) = problems({"orders.yml": "a: 1\n", "schemas/orders.schema.json": "{\n\n  nope"})
    assert broken_json.startswith("schemas/orders.schema.json:3: schema does not parse")


def test_positions_of_yaml_keys_list_items_and_schema_rules():
    data = b"a:\n  b:\n    - x\n    - c: 1\n'dotted.key': 2\n---\nz: 3\n"
    assert key_line("f.yml", data, 0, "a.b[1].c") == 4
    assert key_line("f.yml", data, 0, "a.b") == 2
    assert key_line("f.yml", data, 0, "dotted.key") == 5
    assert key_line("f.yml", data, 1, "z") == 7
    assert key_line("f.yml", data, 0, "nope") is None
    assert node_line('{\n "properties": {\n  "x": {"maximum": 3}}}', ["properties", "x", "maximum"]) == 3


def test_a_placeholder_bomb_is_a_problem_naming_file_line_and_key():
    bomb = "a0: xxxxxxxxxx\n" + "".join(
        f"a{i}: ${{a{i - 1}}}${{a{i - 1}}}${{a{i - 1}}}${{a{i - 1}}}\n" for i in range(1, 13)
    )
    (found,) = problems({"application.yml": "x: 1\n", "orders.yml": "---\n" + bomb})
    assert found.startswith("orders.yml:9: key 'a7': ")


SECRET_SCHEMA = "properties:\n  db:\n    properties:\n      password: {pattern: '^x'}\n"


def secret_problems(secret: str, schema: str = SECRET_SCHEMA) -> list[str]:
    keyring = Keyring.single("foo")
    files = {
        "orders.yml": f"db:\n  password: '{{cipher}}{keyring.encrypt(secret)}'\n",
        "schemas/orders.schema.yml": schema,
    }
    return problems(files, keyring=keyring)


def leaks(found: list[str], secret: str) -> bool:
    """The secret, as itself, as Python quotes it, or any 6-character piece of either, in a message."""
    forms = (secret, repr(secret)[1:-1])
    pieces = {form[i : i + 6] for form in forms for i in range(max(1, len(form) - 5))}
    return any(piece in message for message in found for piece in pieces)


@pytest.mark.parametrize(
    "secret",
    ["hun\\ter2-s3cret", "hunter2\nline-two", "tab\there-s3cret", "bell\x07s3cret-xyz", "quote'd\"s3cret"],
    ids=["backslash", "newline", "tab", "non-printable", "quotes"],
)
def test_a_secret_that_python_escapes_is_not_quoted_in_a_schema_message(secret):
    found = secret_problems(secret)
    assert found == [
        "orders.yml:2: db.password: <secret> fails pattern '^x' [pattern at schemas/orders.schema.yml:4]"
    ]
    assert not leaks(found, secret)


def test_a_secret_longer_than_the_message_limit_is_not_quoted_even_in_part():
    secret = "s3cret-" + "abcdefghij" * 40
    found = secret_problems(secret)
    assert len(found) == 1 and "<secret> fails pattern" in found[0]
    assert not leaks(found, secret)


def test_a_map_holding_a_secret_that_fails_a_type_rule_is_not_quoted():
    secret = "hun\\ter2-s3cret"
    schema = "properties:\n  db: {type: string}\n"
    found = secret_problems(secret, schema)
    assert found == ["orders.yml:1: db: <secret> fails type 'string' [type at schemas/orders.schema.yml:2]"]
    assert not leaks(found, secret)


def test_a_schema_alias_bomb_is_refused_before_it_is_built():
    """A schema file gets the alias and depth bounds of a configuration file: 400 bytes that
    expand to 9**8 sub-schemas are a broken schema at once (it took minutes of CPU before)."""
    from config_server.safety.schema_rules import compile_schema

    lines = ["a0: &a0 {type: object}"]
    for n in range(1, 9):
        lines.append(f"a{n}: &a{n} {{allOf: [{', '.join([f'*a{n - 1}'] * 9)}]}}")
    bomb = ("\n".join(lines) + "\nallOf: [*a8]\n").encode()
    schema = compile_schema("schemas/application.schema.yml", bomb)
    assert schema.validator is None
    assert "expands to more than" in schema.unusable and "schemas/application.schema.yml" in schema.unusable


def test_a_ref_resolves_to_another_schema_file_of_the_same_version_only():
    """References resolve inside `schemas/` (a `referencing` registry over the version's files)."""
    files = {
        "orders.yml": "orders:\n  port: 99999\n",
        "schemas/orders.schema.yml": (
            "properties:\n  orders:\n    properties:\n      port: {$ref: 'common.yml#/$defs/port'}\n"
        ),
        "schemas/common.yml": "$defs:\n  port: {type: integer, maximum: 65535}\n",
    }
    [found] = problems(files)
    assert found.startswith("orders.yml:2: orders.port: 99999 is greater than the maximum of 65535")
    files["schemas/common.yml"] = "$defs:\n  port: {type: integer}\n"
    assert check(files).name == "orders"
    files["schemas/common.yml"] = "$defs:\n  port: {type: [\n"
    assert problems(files) == [
        "schemas/orders.schema.yml:4: $ref 'common.yml#/$defs/port' names an unusable schema: "
        "schemas/common.yml:3: schema does not parse: while parsing a flow node did not find expected "
        'node content in "<unicode string>", line 3, column 1'
    ]


@pytest.mark.parametrize(
    ("ref", "shown"),
    [
        ("nowhere.schema.yml", "nowhere.schema.yml"),
        ("../orders.yml", "../orders.yml"),
        ("file:///etc/hostname", "file:///etc/hostname"),
        ("http://127.0.0.1:9/x.json", "http://127.0.0.1:9/x.json"),
    ],
)
def test_a_ref_outside_the_schemas_folder_is_a_problem_naming_it_never_fetched(ref, shown):
    """Before: an unknown `$ref` raised out of the check (a 500 on the serving path), and a URL
    was fetched with urlopen (no timeout) or read from the file system, deciding the verdict."""
    files = {
        "orders.yml": "a: 1\n",
        "schemas/orders.schema.yml": f"type: object\nproperties:\n  a: {{$ref: '{ref}'}}\n",
    }
    assert problems(files) == [
        f"schemas/orders.schema.yml:3: $ref {shown!r} cannot be resolved: a $ref names a file in "
        "schemas/ of the same version (such as common.yml#/$defs/port)"
    ]


def test_a_schema_nested_beyond_the_limit_is_an_unusable_schema_not_a_crash():
    """A 100 KB `[[[[` schema raised RecursionError out of json.loads (a 500)."""
    deep = "{\n" + '"allOf": [' * 100 + "\n" + "[" * 50_000
    [found] = problems({"orders.yml": "a: 1\n", "schemas/orders.schema.json": deep})
    assert found == "schemas/orders.schema.json:2: schema does not parse: nested deeper than 64 levels"


def test_a_ref_that_loops_for_ever_is_a_problem_not_a_crash():
    files = {
        "orders.yml": "a: 1\n",
        "schemas/orders.schema.yml": "$defs:\n  x: {$ref: '#/$defs/x'}\n$ref: '#/$defs/x'\n",
    }
    [found] = problems(files)
    assert found.startswith("schemas/orders.schema.yml: the schema cannot be applied")


def test_a_date_that_does_not_exist_is_a_problem_at_its_line():
    """`launch-date: 2026-02-30` raised ValueError (day is out of range) out of the check."""
    assert problems({"orders.yml": "a: 1\nlaunch-date: 2026-02-30\n"}) == [
        "orders.yml:2: '2026-02-30' is not a valid timestamp: day is out of range for month at line 2, "
        "column 14"
    ]


def test_an_unexpected_error_while_checking_is_a_broken_environment_not_a_crash():
    """Whatever a bug lets content raise is the environment's problem (held back, a 422 by
    commit id), never an exception for the serving path; its message quotes no value."""

    def resolve():
        raise RecursionError("maximum recursion depth exceeded: 's3cr3t'")

    with pytest.raises(BrokenEnvironment) as caught:
        checked_environment(resolve, ("orders",), lambda path: None, URI, None)
    assert [p.to_json() for p in caught.value.problems] == [
        {"file": None, "line": None, "message": "could not be checked: RecursionError while checking it"}
    ]
