"""Generated rollout files and schemas (hypothesis) against one real server over a plain folder.

Whatever a committer writes into `rollouts/*.yml` or `schemas/`: no request answers 5xx, no
exception escapes a rollout tick or `config-server validate`, every request is answered within
REQUEST_SECONDS, and the other application's rollout keeps running.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from config_server import create_app
from config_server.backends.native import NativeBackend
from config_server.safety.repo_check import check_repository
from config_server.settings import Settings
from tests.helpers import LiveServer

FUZZ = settings(max_examples=15, deadline=10_000, suppress_health_check=list(HealthCheck), derandomize=True)
#: The longest any one request may take (the slowest seen here is far below it).
REQUEST_SECONDS = 3.0
GOOD_ROLLOUT = "canary: main\nsteps: [50, 100]\nbake: 1h\n"

HOSTILE_VALUES = [
    "main",
    "release/x",
    "9" * 400,
    "7" * 5000,
    "[" * 3000 + "]" * 3000,
    "1h",
    "-1s",
    ".nan",
    "2026-02-30",
    "&a [1]",
    "*a",
    "{rejected: 0}",
    "{rejected: " + "9" * 40 + "}",
    "[5, 50, 100]",
    "{labels: {zone: eu}}",
    "!!python/object/apply:os.system [ls]",
    "!!binary 'not base64'",
    "'\\x00'",
]
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
rollout_keys = st.sampled_from(["id", "canary", "profiles", "match", "steps", "bake", "halt-on", "stepz", ""])
GOOD_FIELDS = {"canary": "main", "steps": "[50, 100]", "bake": "1h"}
rollout_texts = st.one_of(
    # a good rollout with some of its fields (or unknown ones) replaced, mostly by hostile values
    st.dictionaries(
        rollout_keys | st.text(max_size=8),
        st.sampled_from(HOSTILE_VALUES) | json_values.map(json.dumps),
        min_size=1,
        max_size=4,
    ).map(lambda fields: "".join(f"{key}: {value}\n" for key, value in {**GOOD_FIELDS, **fields}.items())),
    st.text(max_size=300),
)
schema_words = st.sampled_from(
    [
        "type",
        "properties",
        "items",
        "$ref",
        "allOf",
        "anyOf",
        "not",
        "$defs",
        "required",
        "enum",
        "minimum",
        "$id",
    ]
)
schema_leaves = st.one_of(
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from(
        [
            "string",
            "object",
            "#",
            "#/$defs/x",
            "common.yml",
            "common.yml#/$defs/port",
            "nowhere.yml",
            "../orders.yml",
            "http://127.0.0.1:9/x.json",
            "file:///etc/hostname",
        ]
    ),
)
schemas = st.recursive(
    schema_leaves,
    lambda children: st.dictionaries(schema_words, children, max_size=4) | st.lists(children, max_size=3),
    max_leaves=12,
)
schema_files = st.one_of(
    st.tuples(st.just("schemas/orders.schema.json"), schemas.map(json.dumps)),
    st.tuples(st.just("schemas/orders.schema.yml"), schemas.map(lambda s: yaml.safe_dump(s, width=200))),
    st.tuples(
        st.sampled_from(["schemas/orders.schema.json", "schemas/orders.schema.yml"]),
        st.sampled_from(
            ["[" * 100_000, "{" * 70, "$ref: '#'\n", "$defs: {x: {$ref: '#/$defs/x'}}\n$ref: '#/$defs/x'\n"]
        ),
    ),
)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One server over a plain folder: orders and payments, a good payments rollout."""
    base = tmp_path_factory.mktemp("rollout-fuzz")
    folder = base / "config"
    for path, text in {
        "orders.yml": "orders:\n  port: 8080\n  name: shop\n",
        "payments.yml": "payments:\n  provider: stripe\n",
        "schemas/common.yml": "$defs:\n  port: {type: integer, maximum: 65535}\n  x: {type: object}\n",
        "rollouts/payments.yml": GOOD_ROLLOUT,
    }.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    app = create_app(Settings(repo=str(folder), data_dir=str(base / "data")))
    server = LiveServer(app)
    server.folder = folder
    server.rollouts = app.extensions["config_server"].rollouts
    yield server
    server.stop()
    app.extensions["config_server"].close()


def answered(method: str, url: str, **kwargs) -> requests.Response:
    """The answer, checked: not a server error, and within REQUEST_SECONDS."""
    started = time.monotonic()
    response = requests.request(method, url, timeout=REQUEST_SECONDS + 5, **kwargs)
    took = time.monotonic() - started
    assert response.status_code < 500, (url, response.status_code, response.text[:300])
    assert took < REQUEST_SECONDS, (url, took)
    return response


def everything_answers(server) -> None:
    """A tick raises nothing, every endpoint that reads rollouts or schemas answers, `validate`
    runs to its end, and the payments rollout keeps running beside whatever orders holds."""
    server.rollouts.tick()
    client = {"X-Config-Client-Id": "orders-1"}
    answered("GET", f"{server.url}/orders/default", headers=client)
    answered("GET", f"{server.url}/orders/default?via=flask", headers=client)
    answered("GET", f"{server.url}/orders-default.yml")
    answered("GET", f"{server.url}/health")
    answered("POST", f"{server.url}/rollouts/orders/halt", json={"reason": "fuzz"})
    status = answered("GET", f"{server.url}/rollouts").json()
    assert "payments" in [r["application"] for r in status["rollouts"]]
    check_repository(NativeBackend(server.folder), None)


@given(text=rollout_texts)
@example(text="canary: main\nsteps: [10]\nbake: " + "9" * 400 + "\n")  # the three
@example(text="canary: main\nsteps: [10]\nbake: 1h\nid: " + "7" * 5000 + "\n")
@example(text="canary: main\nbake: 1h\nsteps: " + "[" * 3000 + "]" * 3000 + "\n")
@FUZZ
def test_generated_rollout_files_break_nothing(live, text):
    (Path(live.folder) / "rollouts/orders.yml").write_text(text)
    everything_answers(live)


@given(schema=schema_files)
@example(schema=("schemas/orders.schema.json", "[" * 100_000))  # the issue's
@example(schema=("schemas/orders.schema.yml", "properties: {orders: {$ref: 'http://127.0.0.1:9/x.json'}}\n"))
@example(schema=("schemas/orders.schema.yml", "properties: {orders: {$ref: nowhere.yml}}\n"))
@FUZZ
def test_generated_schemas_break_nothing(live, schema):
    path, text = schema
    for old in (Path(live.folder) / "schemas").glob("orders.schema.*"):
        old.unlink()
    (Path(live.folder) / path).write_text(text)
    everything_answers(live)
