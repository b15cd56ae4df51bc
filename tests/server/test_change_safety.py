"""A commit broken for one environment holds back that environment only; everything else moves on.

Real repositories and a real HTTP server: broken YAML, a schema violation, a deleted required key
and a value that does not decrypt each leave their environment at its previous version (200 with
`X-Config-Held-Back`), a commit-id label for the broken commit is a 422, and watchers never see
a broken version.
"""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from config_server.content.crypto import Keyring
from tests.helpers import http_ready, wait_for
from tests.server.test_metrics import scrape, value

HELD = "X-Config-Held-Back"

BASE = {
    "application.yml": "database:\n  host: localhost\n",
    "orders.yml": "orders:\n  max-items: 100\n  currency: EUR\n",
    "orders-prod.yml": "orders:\n  max-items: 500\n",
    "payments.yml": "payments:\n  provider: stripe\n",
    "schemas/orders.schema.yml": (
        "$schema: https://json-schema.org/draft/2020-12/schema\n"
        "type: object\n"
        "required: [orders]\n"
        "properties:\n"
        "  orders:\n"
        "    type: object\n"
        "    required: [currency]\n"
        "    properties:\n"
        "      max-items:\n"
        "        type: integer\n"
        "        maximum: 1000\n"
        "      currency:\n"
        "        enum: [EUR, USD]\n"
    ),
}


def source(response: requests.Response) -> dict:
    """The merged-by-hand view of the two most specific sources, enough for these tests."""
    merged: dict = {}
    for ps in reversed(response.json()["propertySources"]):
        merged.update(ps["source"])
    return merged


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def moved_on(server, http, good: str, head: str) -> None:
    """Other environments of the broken commit serve it, with no held-back header."""
    payments = http.get(f"{server.url}/payments/default")
    assert payments.status_code == 200 and payments.json()["version"] == head and HELD not in payments.headers
    assert source(payments)["payments.provider"] == "adyen"


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        ({"orders-prod.yml": "orders:\n  max-items: [500\n"}, "orders-prod.yml:3", "line 3"),
        (
            {"orders-prod.yml": "orders:\n  max-items: 5000\n"},
            "orders-prod.yml:2",
            "orders.max-items: 5000 is greater than the maximum of 1000 "
            "[maximum at schemas/orders.schema.yml:11]",
        ),
        (
            {"orders-prod.yml": "orders:\n  max-items: 500\n  currency: null\n"},
            "orders-prod.yml:3",
            "orders.currency: None is not one of ['EUR', 'USD'] [enum at schemas/orders.schema.yml:13]",
        ),
        (
            {"orders-prod.yml": "orders:\n  max-items: 500\n  token: '{cipher}0badc0de'\n"},
            "orders-prod.yml:3",
            "orders.token: cannot decrypt",
        ),
    ],
    ids=["broken-yaml", "schema-violation", "schema-enum", "failed-decryption"],
)
def test_broken_environment_is_held_back_while_the_rest_moves_on(repo, serve, http, change, where, words):
    good = repo.commit(BASE)
    server = serve(repo.path, encrypt_key="foo")
    before = http.get(f"{server.url}/orders/prod")
    head = repo.commit({**change, "payments.yml": "payments:\n  provider: adyen\n"})

    held = http.get(f"{server.url}/orders/prod")
    assert held.status_code == 200
    assert held.headers[HELD] == head
    assert held.json()["version"] == good and held.content == before.content
    assert held.headers["ETag"] == before.headers["ETag"]
    # the same through Flask (a query string skips the fast path), byte for byte
    slow = http.get(f"{server.url}/orders/prod?via=flask")
    assert slow.content == held.content and slow.headers[HELD] == head
    rendered = http.get(f"{server.url}/orders-prod.yml")
    assert (
        rendered.status_code == 200 and rendered.headers[HELD] == head and "max-items: 500" in rendered.text
    )

    default = http.get(f"{server.url}/orders/default")
    assert default.json()["version"] == head and HELD not in default.headers
    moved_on(server, http, good, head)

    pinned = http.get(f"{server.url}/orders/prod/{head}")
    assert pinned.status_code == 422
    assert pinned.json()["message"].startswith(f"{where}: ")
    assert words in pinned.json()["message"]
    assert "0badc0de" not in pinned.text

    health = http.get(f"{server.url}/health").json()["details"]["heldBack"]
    assert [(h["application"], h["profiles"], h["brokenVersion"], h["servedVersion"]) for h in health] == [
        ("orders", "prod", head, good)
    ]
    problem = health[0]["problems"][0]
    assert f"{problem['file']}:{problem['line']}" == where and words.split(" [")[0] in problem["message"]


def test_deleted_required_key_names_missing_and_the_schema_line(repo, serve, http):
    good = repo.commit(BASE)
    server = serve(repo.path)
    head = repo.commit(
        {"orders.yml": "orders:\n  max-items: 100\n", "payments.yml": "payments:\n  provider: adyen\n"}
    )
    for profiles in ("default", "prod"):
        held = http.get(f"{server.url}/orders/{profiles}")
        assert held.status_code == 200 and held.headers[HELD] == head and held.json()["version"] == good
    moved_on(server, http, good, head)
    pinned = http.get(f"{server.url}/orders/default/{head}").json()
    assert pinned["status"] == 422
    assert pinned["message"].startswith(
        "schemas/orders.schema.yml:7: orders.currency: missing [required at schemas/orders.schema.yml:7]"
    )


def test_every_broken_commit_is_skipped_back_to_the_newest_good_one(repo, serve, http):
    repo.commit(BASE)
    good = repo.commit({"orders-prod.yml": "orders:\n  max-items: 600\n"})
    server = serve(repo.path)
    repo.commit({"orders-prod.yml": "orders:\n  max-items: 7000\n"})
    repo.commit({"orders.yml": "orders: [\n"})
    head = repo.commit({"payments.yml": "payments:\n  provider: adyen\n"})
    held = http.get(f"{server.url}/orders/prod")
    assert held.headers[HELD] == head and held.json()["version"] == good
    assert source(held)["orders.max-items"] == 600
    repaired = repo.commit(
        {"orders.yml": BASE["orders.yml"], "orders-prod.yml": "orders:\n  max-items: 700\n"}
    )
    fixed = http.get(f"{server.url}/orders/prod")
    assert fixed.json()["version"] == repaired and HELD not in fixed.headers


def test_first_commit_broken_is_422_and_a_tag_is_held_back_like_a_branch(repo, serve, http):
    first = repo.commit({"orders.yml": "orders: [\n"})
    server = serve(repo.path)
    response = http.get(f"{server.url}/orders/default")
    assert response.status_code == 422 and response.json()["message"].startswith("orders.yml:2: ")
    assert first[:12] in response.json()["message"]
    good = repo.commit({"orders.yml": "orders: {a: 1}\n"})
    broken = repo.commit({"orders.yml": "orders: {a: 1, a: 2}\n"})
    repo.git("tag", "v2")
    tagged = http.get(f"{server.url}/orders/default/v2")
    assert tagged.status_code == 200 and tagged.headers[HELD] == broken and tagged.json()["version"] == good


def test_watcher_is_not_woken_by_a_schema_violation_and_gets_the_repair(repo, serve, http, pool):
    repo.commit(BASE)
    server = serve(repo.path)
    hub = server.app.extensions["config_server"].hub
    url = f"{server.url}/orders/prod"
    etag = http.get(url).headers["ETag"]
    future = pool.submit(requests.get, f"{url}?wait=30", headers={"If-None-Match": etag}, timeout=40)
    wait_for(lambda: hub.watchers() == 1, what="the watcher to wait")
    checks = hub.checks
    broken = repo.commit({"orders-prod.yml": "orders:\n  max-items: 5000\n"})
    wait_for(lambda: hub.checks > checks, what="the hub to check the broken commit")
    assert http.get(url).headers[HELD] == broken
    assert not future.done()
    repair = repo.commit({"orders-prod.yml": "orders:\n  max-items: 900\n"})
    answer = future.result(timeout=20)
    assert answer.status_code == 200 and HELD not in answer.headers
    assert answer.json()["version"] == repair and source(answer)["orders.max-items"] == 900
    assert http.get(f"{server.url}/health").json()["details"]["heldBack"] == []


def test_verdicts_survive_a_restart_and_a_gevent_watcher_waits_through(repo, server_process, tmp_path):
    good = repo.commit(BASE)
    first = server_process("--repo", str(repo.path), "--workers", "1")
    first.wait_ready(lambda: http_ready(f"{first.url}/health"))
    url = f"{first.url}/orders/prod"
    etag = requests.get(url, timeout=5).headers["ETag"]
    with ThreadPoolExecutor(max_workers=1) as executor:
        watcher = executor.submit(requests.get, f"{url}?wait=30", headers={"If-None-Match": etag}, timeout=40)
        wait_for(
            lambda: requests.get(f"{first.url}/health", timeout=5).json()["details"]["watchers"] == 1,
            what="the long poll to wait",
        )
        broken = repo.commit({"orders-prod.yml": "orders:\n  max-items: 5000\n"})
        wait_for(
            lambda: requests.get(url, timeout=5).headers.get(HELD) == broken, what="the held-back answer"
        )
        before = requests.get(url, timeout=5)
        assert not watcher.done()
        first.stop()  # the pending long poll ends with the server, whatever it answers

    with sqlite3.connect(tmp_path / "data" / "verdicts.sqlite3") as db:
        rows = db.execute("SELECT head, environment, good FROM held").fetchall()
    assert (broken, "orders/prod", good) in rows

    second = server_process("--repo", str(repo.path), "--workers", "1")
    second.wait_ready(lambda: http_ready(f"{second.url}/health"))
    after = requests.get(f"{second.url}/orders/prod", timeout=5)
    assert after.status_code == 200 and after.headers[HELD] == broken
    assert after.content == before.content and after.headers["ETag"] == before.headers["ETag"]
    pinned = requests.get(f"{second.url}/orders/prod/{broken}", timeout=5)
    assert pinned.status_code == 422 and "orders-prod.yml:2: orders.max-items" in pinned.json()["message"]

    url = f"{second.url}/orders/prod"
    with ThreadPoolExecutor(max_workers=1) as executor:
        watcher = executor.submit(
            requests.get, f"{url}?wait=30", headers={"If-None-Match": after.headers["ETag"]}, timeout=40
        )
        wait_for(
            lambda: requests.get(f"{second.url}/health", timeout=5).json()["details"]["watchers"] == 1,
            what="the long poll to wait",
        )
        again = repo.commit({"orders-prod.yml": "orders:\n  max-items: 6000\n"})
        wait_for(
            lambda: requests.get(url, timeout=5).headers.get(HELD) == again, what="the second broken commit"
        )
        assert not watcher.done()
        repair = repo.commit({"orders-prod.yml": "orders:\n  max-items: 800\n"})
        answer = watcher.result(timeout=20)
    assert answer.status_code == 200 and answer.json()["version"] == repair and HELD not in answer.headers


def test_a_restart_without_the_key_does_not_trust_old_verdicts(repo, serve, http, tmp_path):
    secret = Keyring.single("foo").encrypt("hunter2")
    good = repo.commit({"orders.yml": f"orders:\n  password: '{{cipher}}{secret}'\n"})
    data = str(tmp_path / "shared-data")
    with_key = serve(repo.path, encrypt_key="foo", data_dir=data)
    assert http.get(f"{with_key.url}/orders/default").json()["version"] == good
    without = serve(repo.path, data_dir=data)
    response = http.get(f"{without.url}/orders/default")
    assert response.status_code == 422 and "no encryption key" in response.json()["message"]


def test_a_held_back_answer_is_remembered_not_resolved_again(repo, serve, http):
    repo.commit(BASE)
    server = serve(repo.path)
    head = repo.commit({"orders-prod.yml": "orders: [\n"})
    assert http.get(f"{server.url}/orders/prod").headers[HELD] == head
    backend = server.app.extensions["config_server"].service.backend
    reads = []
    original = backend.read
    backend.read = lambda version, path: reads.append(path) or original(version, path)
    for _ in range(3):
        assert http.get(f"{server.url}/orders/prod").headers[HELD] == head
        assert http.get(f"{server.url}/orders/prod/{head}").status_code == 422
    assert reads == []


def test_a_name_list_is_checked_against_each_names_schema_and_a_label_list_is_never_substituted(
    repo, serve, http
):
    good = repo.commit(BASE)
    repo.git("branch", "stable")
    server = serve(repo.path)
    head = repo.commit({"orders-prod.yml": "orders:\n  max-items: 5000\n"})
    held = http.get(f"{server.url}/payments,orders/prod")
    assert held.status_code == 200 and held.headers[HELD] == head and held.json()["version"] == good
    assert HELD not in http.get(f"{server.url}/payments/prod").headers
    listed = http.get(f"{server.url}/orders/prod/stable,main")
    assert listed.status_code == 422
    assert listed.json()["message"].startswith("orders-prod.yml:2: orders.max-items: 5000 is greater")


def test_console_and_metrics_show_what_is_held_back_until_the_repair(repo, serve, http):
    repo.commit(BASE)
    server = serve(repo.path)
    broken = repo.commit({"orders-prod.yml": "orders:\n  max-items: 5000\n"})
    assert http.get(f"{server.url}/orders/prod").headers[HELD] == broken
    page = http.get(f"{server.url}/console/app/orders").text
    assert 'id="held-back"' in page and broken[:12] in page
    assert "orders-prod.yml:2: orders.max-items: 5000 is greater than the maximum of 1000" in page
    held = {"application": "orders", "profiles": "prod", "label": "main"}
    metrics = scrape(server.url)
    assert value(metrics, "config_server_held_back_environments", **held) == 1
    assert value(metrics, "config_server_validation_failures_total", application="orders") == 1
    repo.commit({"orders-prod.yml": "orders:\n  max-items: 900\n"})
    assert HELD not in http.get(f"{server.url}/orders/prod").headers
    assert 'id="held-back"' not in http.get(f"{server.url}/console/app/orders").text
    assert value(scrape(server.url), "config_server_held_back_environments", **held) == 0


def test_a_plain_text_file_of_a_held_back_environment_carries_the_header(repo, serve, http):
    """A plain-text file is rendered from the newest good version, and says so, as the
    Environment answer does; an environment that is not broken gets no header."""
    repo.commit({**BASE, "templates/limits.conf": "max=${orders.max-items}\n"})
    server = serve(repo.path)
    head = repo.commit({"orders-prod.yml": "orders:\n  max-items: 5000\n"})
    held = http.get(f"{server.url}/orders/prod/main/templates/limits.conf")
    assert held.status_code == 200 and held.text == "max=500\n" and held.headers[HELD] == head
    by_default = http.get(f"{server.url}/orders/prod/templates/limits.conf?useDefaultLabel")
    assert by_default.text == "max=500\n" and by_default.headers[HELD] == head
    fine = http.get(f"{server.url}/orders/default/main/templates/limits.conf")
    assert fine.status_code == 200 and fine.text == "max=100\n" and HELD not in fine.headers


@pytest.fixture
def counting_http_server():
    """A real HTTP server on 127.0.0.1 answering `true` (a schema that accepts anything) to every
    request, and the list of paths it was asked for."""
    from tests.helpers import LiveServer

    asked: list[str] = []

    def app(environ, start_response):
        asked.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"true"]

    server = LiveServer(app)
    yield server, asked
    server.stop()


def hostile_schema_changes(tmp_path, url: str) -> dict[str, tuple[dict[str, str], str, str]]:
    """Commits that break orders/prod through its schema or a value: (files, where, words)."""
    accept_all = tmp_path / "accept-all.json"
    accept_all.write_text("true")  # read from disk before: it would have made the commit good
    ref = "schemas/orders.schema.yml"
    return {
        "ref-to-nowhere": (
            {ref: BASE[ref] + "      currency: {$ref: 'nowhere.schema.yml'}\n"},
            f"{ref}:14",
            "$ref 'nowhere.schema.yml' cannot be resolved",
        ),
        "ref-over-http": (
            {ref: BASE[ref] + f"      currency: {{$ref: '{url}/currency.json'}}\n"},
            f"{ref}:14",
            f"$ref '{url}/currency.json' cannot be resolved",
        ),
        "ref-to-a-file": (
            {ref: BASE[ref] + f"      currency: {{$ref: '{accept_all.as_uri()}'}}\n"},
            f"{ref}:14",
            "cannot be resolved",
        ),
        "deep-json-schema": (
            {"schemas/orders.schema.json": "[" * 100_000},
            "schemas/orders.schema.json:1",
            "schema does not parse: nested deeper than 64 levels",
        ),
        "no-such-date": (
            {"orders-prod.yml": "orders:\n  max-items: 500\n  launch-date: 2026-02-30\n"},
            "orders-prod.yml:3",
            "'2026-02-30' is not a valid timestamp: day is out of range for month",
        ),
    }


@pytest.mark.parametrize(
    "case", ["ref-to-nowhere", "ref-over-http", "ref-to-a-file", "deep-json-schema", "no-such-date"]
)
def test_a_hostile_schema_or_value_holds_back_its_environment_never_a_500(
    repo, serve, http, tmp_path, counting_http_server, case
):
    """Before: an unresolvable `$ref`, a deep `[[[[` schema or a date that does not exist answered
    500 and /health said nothing; a `$ref` over http was fetched (8 s a request to a slow host)
    and one to a file:// URL read from disk, both deciding the verdict."""
    web, asked = counting_http_server
    change, where, words = hostile_schema_changes(tmp_path, web.url)[case]
    good = repo.commit(BASE)
    server = serve(repo.path)
    head = repo.commit({**change, "payments.yml": "payments:\n  provider: adyen\n"})
    held = http.get(f"{server.url}/orders/prod")
    assert held.status_code == 200 and held.headers[HELD] == head and held.json()["version"] == good
    moved_on(server, http, good, head)
    pinned = http.get(f"{server.url}/orders/prod/{head}")
    assert pinned.status_code == 422 and pinned.json()["message"].startswith(f"{where}: ")
    assert words in pinned.json()["message"]
    health = http.get(f"{server.url}/health").json()["details"]["heldBack"]
    assert [(h["application"], h["profiles"], h["brokenVersion"]) for h in health] == [
        ("orders", "prod", head)
    ]
    assert asked == []  # nothing was ever fetched
