"""The client refuses what the service cannot use (issue 9 section 4): `validate=`, `bind()`, and
the instance report headers seen by a real server."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from dataclasses import dataclass, field

import pydantic
import pytest

from config_client import ConfigClientError, RejectedVersion
from config_client.client import rejected_header
from tests.helpers import LiveServer, wait_for

FILES = {"orders.yml": "orders:\n  limit: 10\n  currency: EUR\n  max-items: 5\n"}


def test_validate_callable_rejects_a_version_and_keeps_the_last_good(repo, serve, clients, tmp_path, caplog):
    repo.commit(FILES)
    server = serve(repo.path)

    def validate(snapshot):
        if snapshot.get("orders.limit", 0) > 100:
            raise ValueError("orders.limit above 100")

    client = clients(server.url, "orders", cache_dir=tmp_path / "lkg", validate=validate).start()
    good = client.version
    seen = []
    client.on_change(seen.append)
    with caplog.at_level(logging.ERROR, logger="config_client"):
        bad = repo.commit({"orders.yml": "orders:\n  limit: 1000\n  currency: EUR\n"})
        wait_for(lambda: client.rejected, what="the version to be refused")
    assert client.rejected == (bad, "orders.limit above 100")
    assert "orders.limit above 100" in caplog.text
    assert client.version == good and client.get("orders.limit") == 10 and seen == []
    assert json.loads(client.store.path.read_text())["environment"]["version"] == good
    with pytest.raises(RejectedVersion, match="above 100"):
        client.refresh()
    fixed = repo.commit({"orders.yml": "orders:\n  limit: 50\n  currency: EUR\n"})
    wait_for(lambda: client.version == fixed, what="the repair to be applied")
    wait_for(lambda: seen, what="the listener (called right after the swap)")
    assert client.rejected is None and seen[0].changed["orders.limit"] == (10, 50)


class Orders(pydantic.BaseModel):
    limit: int
    currency: str
    max_items: int = 1


def test_bind_pydantic_model_rejects_a_version_that_does_not_fit(repo, serve, clients):
    repo.commit(FILES)
    server = serve(repo.path)
    client = clients(server.url, "orders")
    orders = client.bind(Orders, prefix="orders")
    with pytest.raises(ConfigClientError, match="no version"):
        orders.current()
    client.start()
    assert (orders.limit, orders.currency, orders.max_items) == (10, "EUR", 5)
    assert isinstance(orders.current(), Orders) and orders() == orders.current()
    seen = []
    client.on_change(seen.append)
    bad = repo.commit({"orders.yml": "orders:\n  limit: lots\n  currency: EUR\n"})
    wait_for(lambda: client.rejected, what="the version to be refused")
    version, reason = client.rejected
    assert version == bad and "Orders" in reason and "limit" in reason
    assert orders.limit == 10 and client.get("orders.limit") == 10 and seen == []
    good = repo.commit({"orders.yml": "orders:\n  limit: 11\n  currency: USD\n"})
    wait_for(lambda: client.version == good, what="the good version")
    assert (orders.limit, orders.currency, orders.max_items) == (11, "USD", 1)
    with pytest.raises(RejectedVersion, match="limit: Field required"):
        client.bind(Orders, prefix="missing")  # the current settings must fit a model bound late


@dataclass
class Pool:
    max: int
    hosts: list[str] = field(default_factory=list)


@dataclass
class Database:
    pool: Pool
    timeout_ms: float = 1.5
    enabled: bool = True


def test_bind_dataclass_checks_types_and_required_fields(repo, serve, clients):
    repo.commit({"orders.yml": "db:\n  pool:\n    max: 4\n    hosts: [a, b]\n  timeout-ms: 2\n"})
    server = serve(repo.path)
    client = clients(server.url, "orders").start()
    db = client.bind(Database, prefix="db")
    assert db.current() == Database(Pool(4, ["a", "b"]), 2.0, True)
    repo.commit({"orders.yml": "db:\n  pool:\n    hosts: [a]\n"})
    wait_for(lambda: client.rejected, what="a missing required field to be refused")
    assert "pool.max: missing" in client.rejected[1]
    repo.commit({"orders.yml": "db:\n  pool:\n    max: 4\n  enabled: maybe\n"})
    wait_for(lambda: "enabled" in (client.rejected or ("", ""))[1], what="a bad boolean to be refused")
    assert db.pool.max == 4 and db.pool.hosts == ["a", "b"]
    good = repo.commit({"orders.properties": "db.pool.max=8\ndb.enabled=false\n", "orders.yml": None})
    wait_for(lambda: client.version == good, what="strings from .properties, converted")
    assert db.current() == Database(Pool(8, []), 1.5, False)


class Pair(pydantic.BaseModel):
    a: int
    b: int


def test_bound_model_and_settings_swap_atomically_under_concurrent_reads(repo, serve, clients):
    repo.commit({"orders.yml": "pair:\n  a: 0\n  b: 0\n"})
    server = serve(repo.path)
    client = clients(server.url, "orders", wait=5)
    pair = client.bind(Pair, prefix="pair")
    client.start()
    stop = threading.Event()
    mismatches: list[tuple] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            snapshot = client.snapshot
            model = snapshot.model(pair)
            flat = (snapshot.get("pair.a"), snapshot.get("pair.b"))
            if not (model.a == model.b == flat[0] == flat[1]):
                mismatches.append((model, flat))
            current = pair.current()
            if current.a != current.b:
                mismatches.append((current,))
            reads[0] += 1

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for thread in readers:
        thread.start()
    try:
        for n in range(1, 9):
            sha = repo.commit({"orders.yml": f"pair:\n  a: {n}\n  b: {n}\n"})
            wait_for(lambda sha=sha: client.version == sha, what=f"version {n}")
    finally:
        stop.set()
        for thread in readers:
            thread.join(10)
    assert reads[0] > 100 and mismatches == []
    assert pair.a == pair.b == 8


class RecordHeaders:
    """WSGI middleware that records the instance-report headers of every request."""

    NAMES = ("X-Config-Client-Id", "X-Config-Applied", "X-Config-Rejected")

    def __init__(self, app):
        self.app = app
        self.seen: list[dict[str, str]] = []

    def __call__(self, environ, start_response):
        keys = {name: "HTTP_" + name.upper().replace("-", "_") for name in self.NAMES}
        self.seen.append({name: environ[key] for name, key in keys.items() if key in environ})
        return self.app(environ, start_response)


def test_instance_headers_are_sent_on_every_environment_request(repo, serve, clients):
    repo.commit(FILES)
    server = serve(repo.path)
    recorder = RecordHeaders(server.app)
    front = LiveServer(recorder)
    try:

        def validate(snapshot):
            if snapshot.get("orders.currency") == "XXX":
                raise ValueError('currency "XXX" is not allowed\nsee the wiki')

        client = clients(front.url, "orders", validate=validate, wait=1).start()
        good = client.version
        first = recorder.seen[0]
        assert re.fullmatch(
            rf"{re.escape(socket.gethostname())}:{os.getpid()}:[0-9a-f]{{8}}", first["X-Config-Client-Id"]
        )
        assert "X-Config-Applied" not in first and "X-Config-Rejected" not in first
        wait_for(lambda: len(recorder.seen) >= 2, what="the first long poll")
        assert recorder.seen[1]["X-Config-Applied"] == good
        bad = repo.commit({"orders.yml": "orders:\n  currency: XXX\n"})
        wait_for(lambda: any("X-Config-Rejected" in h for h in recorder.seen), what="a rejected report")
        report = next(h for h in recorder.seen if "X-Config-Rejected" in h)
        assert (
            report["X-Config-Rejected"] == f'{bad}; reason="currency \\"XXX\\" is not allowed see the wiki"'
        )
        assert report["X-Config-Applied"] == good
        ids = {h["X-Config-Client-Id"] for h in recorder.seen}
        assert ids == {first["X-Config-Client-Id"]}
        fixed = repo.commit({"orders.yml": "orders:\n  currency: EUR\n"})
        wait_for(lambda: client.version == fixed, what="the repair")
        count = len(recorder.seen)
        wait_for(lambda: len(recorder.seen) > count, what="the next request")
        assert recorder.seen[-1]["X-Config-Applied"] == fixed and "X-Config-Rejected" not in recorder.seen[-1]
    finally:
        front.stop()


def test_rejected_header_is_sanitised_escaped_and_bounded():
    header = rejected_header("abc123", 'bad "value"\\ in\nline ü ' + "x" * 2000)
    version, _, rest = header.partition("; ")
    assert version == "abc123" and rest.startswith('reason="') and rest.endswith('"')
    inside = rest[len('reason="') : -1]
    assert len(inside) <= 512
    assert inside.startswith('bad \\"value\\"\\\\ in line ? x')
    assert all(" " <= c <= "~" for c in header)
    assert not re.search(r'(?<!\\)"', inside)  # every quote inside is escaped


def test_a_dataclass_type_mismatch_names_the_type_never_the_value():
    from config_client.binding import construct

    secret = "s3cret-hunter2"
    for data, expected in (
        ({"pool": {"max": secret, "hosts": []}}, "pool.max: expected an integer, got str"),
        ({"pool": {"max": 1, "hosts": []}, "enabled": secret}, "enabled: expected a boolean, got str"),
        ({"pool": secret}, "pool: expected a mapping, got str"),
    ):
        with pytest.raises(ValueError) as caught:
            construct(Database, data)
        assert str(caught.value) == expected
        assert "s3cret" not in str(caught.value)


def test_a_rejection_reason_masks_the_values_of_secret_keys_and_is_bounded(repo, serve, clients, caplog):
    """A service's own validator may quote a value: the client masks the values of keys it knows
    to be secret (password, secret, token, key, credentials) wherever the reason goes."""
    repo.commit({"orders.yml": "orders:\n  currency: EUR\ndb:\n  password: hunter2-s3cr3t\n  pool: 5\n"})
    server = serve(repo.path)

    def validate(snapshot):
        password = snapshot.get("db.password")
        if snapshot.get("db.pool") == 6:
            raise ValueError(f"db.password {password!r} too short; pool 6 above 5; " + "x" * 2000)

    client = clients(server.url, "orders", validate=validate, wait=1).start()
    bad = repo.commit({"orders.yml": "db:\n  password: hunter2-s3cr3t\n  pool: 6\n"})
    wait_for(lambda: client.rejected is not None, what="the rejection")
    version, reason = client.rejected
    assert version == bad and "hunter2" not in reason and "pool 6 above 5" in reason
    assert reason.startswith("db.password '******' too short") and len(reason) <= 1024
    assert "hunter2" not in caplog.text and "too short" in caplog.text
    state = server.app.extensions["config_server"]
    wait_for(
        lambda: (
            state.inventory.flush() is not None
            and any(r.rejected_reason for r in state.store.instances("orders"))
        ),
        what="the report on the server",
    )
    [record] = [r for r in state.store.instances("orders") if r.rejected_reason]
    assert "hunter2" not in record.rejected_reason and "pool 6 above 5" in record.rejected_reason


def test_secret_keys_are_those_spring_boot_masks():
    from config_client.masking import MASK, is_secret_key, masked_reason

    secret = ["db.password", "api-key", "API_KEY", "oauth.client-secret", "auth.token", "aws.credentials.id"]
    plain = ["orders.currency", "db.pool", "keys.count", "server.port"]
    assert all(is_secret_key(k) for k in secret) and not any(is_secret_key(k) for k in plain)
    values = {"db.password": "abcdef", "db.passwords[0]": "ghijkl", "db.pool": "abcd", "a.token": "x"}
    assert masked_reason("abcdef ghijkl abcd x", values) == f"{MASK} {MASK} abcd x"
