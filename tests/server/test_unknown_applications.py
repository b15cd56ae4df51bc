"""An application no configuration file names (issue 20 item 2): marked on every path, logged once
under `warn`, refused with a 404 under `deny`; the fast path, Flask and the hub's direct long-poll
answers agree byte for byte."""

from __future__ import annotations

import logging
import re
import threading

import pytest
import requests

from config_server.settings import Settings
from tests.helpers import wait_for
from tests.server.test_fast_path import raw_get
from tests.server.test_gevent_worker import watchers

FILES = {
    "application.yml": "shared: 1\n",
    "orders.yml": "a: 1\n",
    "inventory.yml": "b: 2\n",
}


@pytest.fixture
def server(repo, serve):
    repo.commit(FILES)
    return serve(repo.path)


@pytest.mark.parametrize(
    ("path", "unknown", "closest"),
    [
        ("/ordres/default", b"ordres", b"ordres=orders"),
        ("/orders,invntory/default", b"invntory", b"invntory=inventory"),
        ("/zzzzzz/default", b"zzzzzz", None),
    ],
)
def test_an_unknown_application_is_marked_the_same_on_the_fast_path_and_in_flask(
    server, path, unknown, closest
):
    fast = raw_get(server, path)
    slow = raw_get(server, path + "?via=flask")
    assert fast.startswith(b"HTTP/1.1 200") and fast == slow
    assert b"\r\nX-Config-Unknown-Application: " + unknown + b"\r\n" in fast
    if closest is None:
        assert b"X-Config-Closest-Application" not in fast
    else:
        assert b"\r\nX-Config-Closest-Application: " + closest + b"\r\n" in fast


@pytest.mark.parametrize("path", ["/orders/default", "/orders,inventory/prod"])
def test_known_applications_carry_no_unknown_header(server, path):
    answer = raw_get(server, path)
    assert answer.startswith(b"HTTP/1.1 200") and b"X-Config-Unknown" not in answer


def test_a_rendered_document_and_a_long_poll_304_are_marked_too(server, http):
    assert http.get(f"{server.url}/ordres-default.yml").headers["X-Config-Unknown-Application"] == "ordres"
    etag = http.get(f"{server.url}/ordres/default").headers["ETag"]
    polled = http.get(f"{server.url}/ordres/default?wait=0.2", headers={"If-None-Match": etag})
    assert polled.status_code == 304 and polled.headers["X-Config-Closest-Application"] == "ordres=orders"


def test_warn_logs_each_unknown_name_once(server, http, caplog):
    with caplog.at_level(logging.WARNING, logger="config_server.safety.config_service"):
        for _ in range(3):
            assert http.get(f"{server.url}/ordres/default").ok
            assert http.get(f"{server.url}/ordres/default?via=flask").ok
    lines = [r.getMessage() for r in caplog.records if "no configuration file names" in r.getMessage()]
    assert lines == [
        "served application 'ordres', which no configuration file names (closest known: 'orders')"
    ]


def test_serve_logs_nothing(repo, serve, http, caplog):
    repo.commit(FILES)
    server = serve(repo.path, unknown_applications="serve")
    with caplog.at_level(logging.WARNING, logger="config_server.safety.config_service"):
        answer = http.get(f"{server.url}/ordres/default")
    assert answer.headers["X-Config-Unknown-Application"] == "ordres"
    assert not [r for r in caplog.records if "no configuration file names" in r.getMessage()]


def _without_timestamp(answer: bytes) -> bytes:
    return re.sub(rb'"timestamp":\s*"[^"]*"', b"", answer)


def test_deny_answers_404_naming_the_application_on_both_paths(repo, serve, http):
    repo.commit(FILES)
    server = serve(repo.path, unknown_applications="deny")
    fast = raw_get(server, "/orders,ordres/default")
    slow = raw_get(server, "/orders,ordres/default?via=flask")
    assert fast.startswith(b"HTTP/1.1 404")
    assert _without_timestamp(fast) == _without_timestamp(slow).replace(b"?via=flask", b"")
    refused = http.get(f"{server.url}/ordres/default")
    assert refused.status_code == 404
    assert refused.json()["message"] == "no configuration file names application 'ordres'"
    assert http.get(f"{server.url}/ordres-default.yml").status_code == 404
    assert http.get(f"{server.url}/ordres/default/main/orders.yml").status_code == 404  # a plain file too
    assert http.get(f"{server.url}/orders/default/main/orders.yml").text == "a: 1\n"
    etag = http.get(f"{server.url}/orders/default").headers["ETag"]
    assert (
        http.get(f"{server.url}/ordres/default?wait=0.2", headers={"If-None-Match": etag}).status_code == 404
    )
    assert http.get(f"{server.url}/orders,inventory/default").ok
    # nothing of the refused caller reaches the inventory
    state = server.app.extensions["config_server"]
    state.inventory.flush()
    assert not [r for r in state.inventory.instances() if "ordres" in r.application]


def test_an_auth_file_server_names_no_closest_application(repo, serve, http, tmp_path):
    from config_server.http.auth import hash_token

    repo.commit(FILES)
    token = "reader-token-" + "x" * 30
    auth = tmp_path / "clients.yml"
    auth.write_text(
        f"clients:\n  - name: reader\n    tokens: [{hash_token(token)}]\n    applications: ['*']\n"
    )
    server = serve(repo.path, auth_file=str(auth))
    answer = http.get(f"{server.url}/ordres/default", headers={"Authorization": f"Bearer {token}"})
    assert answer.headers["X-Config-Unknown-Application"] == "ordres"
    assert "X-Config-Closest-Application" not in answer.headers


def test_the_setting_takes_only_serve_warn_or_deny():
    assert Settings(unknown_applications="deny").validate().unknown_applications == "deny"
    assert Settings().unknown_applications == "warn"
    with pytest.raises(ValueError, match="unknown-applications must be serve, warn or deny"):
        Settings(unknown_applications="refuse").validate()


def test_the_hubs_direct_answer_to_a_parked_poll_is_marked(repo, server_process):
    """Under gunicorn's gevent worker the hub writes a woken poll's answer itself, built once per
    slot: it carries the header as the request path's answer does."""
    repo.commit(FILES)
    server = server_process("--repo", str(repo.path), "--workers", "1")
    server.wait_ready(
        lambda: requests.get(f"{server.url}/health", timeout=1, headers={"Connection": "close"}).ok
    )
    etag = requests.get(f"{server.url}/ordres/default", timeout=5).headers["ETag"]
    woken: list[bytes] = []
    poll = threading.Thread(
        target=lambda: woken.append(
            raw_get(server, "/ordres/default?wait=30", headers={"If-None-Match": etag})
        )
    )
    poll.start()
    try:
        wait_for(lambda: watchers(server.url) == 1, what="the poll to park")
        repo.commit({"application.yml": "shared: 2\n"})
    finally:
        poll.join(timeout=30)
    assert woken and woken[0].startswith(b"HTTP/1.1 200") and b'"shared": 2' in woken[0]
    assert b"\r\nX-Config-Unknown-Application: ordres\r\n" in woken[0]
    assert b"\r\nX-Config-Closest-Application: ordres=orders\r\n" in woken[0]


def test_the_console_lists_callers_of_unknown_applications_apart(server, http):
    for app, instance in (("ordres", "a"), ("orders", "b"), ("orders,inventory", "c")):
        assert http.get(f"{server.url}/{app}/default", headers={"X-Config-Client-Id": instance}).ok
    server.app.extensions["config_server"].inventory.flush()
    index = http.get(f"{server.url}/console/").text
    main, _, apart = index.partition('id="unknown-applications"')
    assert 'data-application="ordres"' not in main and 'data-application="orders"' in main
    assert 'data-application="orders,inventory"' in main
    row = apart.split('data-unknown-application="ordres"')[1].split("</tr>")[0]
    assert "unknown application" in row and '<td class="instances">1</td>' in row
    assert 'data-unknown-application="orders' not in apart
