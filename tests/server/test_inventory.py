"""The instance inventory: report headers, ids, applied and rejected versions, expiry, /instances, CLI."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from config_server.errors import InvalidHeader
from config_server.observability.inventory import (
    GONE_AFTER_SECONDS,
    HISTORY_SECONDS,
    Inventory,
    parse_client_headers,
    status_of,
    summarize,
)
from config_server.state import SQLiteStateStore
from tests.helpers import wait_for
from tests.server.test_auth import auth_yaml, bearer


def _environ(**headers: str) -> dict[str, str]:
    environ = {"REMOTE_ADDR": "10.1.2.3", "HTTP_USER_AGENT": "Java/17"}
    environ.update({"HTTP_" + k.upper(): v for k, v in headers.items()})
    return environ


def test_report_headers_are_parsed():
    parsed = parse_client_headers(
        _environ(
            x_config_client_id="orders-7f9:1234@host",
            x_config_client_labels="zone=eu-1, version=2.3",
            x_config_applied="a" * 40,
            x_config_rejected='bbbb1234; reason="orders.yml:3: \\"port\\" must be a number"',
        )
    )
    assert parsed.instance_id == "orders-7f9:1234@host" and not parsed.anonymous
    assert parsed.client_labels == "zone=eu-1,version=2.3"
    assert parsed.applied == "a" * 40
    assert parsed.rejected_version == "bbbb1234"
    assert parsed.rejected_reason == 'orders.yml:3: "port" must be a number'


def test_a_caller_without_an_id_is_known_by_address_and_user_agent():
    parsed = parse_client_headers(_environ())
    assert parsed.anonymous and parsed.instance_id == "10.1.2.3 Java/17"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x_config_client_id", ""),
        ("x_config_client_id", "has space"),
        ("x_config_client_id", "x" * 129),
        ("x_config_client_id", "semi;colon"),
        ("x_config_client_labels", "zone"),
        ("x_config_client_labels", "zone=eu=1"),
        ("x_config_client_labels", "zone=e u"),
        ("x_config_client_labels", "zone=" + "e" * 129),
        ("x_config_client_labels", ",".join(f"k{i}=v" for i in range(17))),
        ("x_config_applied", "abc def"),
        ("x_config_applied", "x" * 129),
        ("x_config_rejected", 'abc; reason="unterminated'),
        ("x_config_rejected", 'abc; reason="' + "r" * 513 + '"'),
        ("x_config_rejected", 'abc; reason="line\nbreak"'),
        ("x_config_rejected", '; reason="no version"'),
    ],
)
def test_a_malformed_header_is_refused_naming_it(header, value):
    with pytest.raises(InvalidHeader) as caught:
        parse_client_headers(_environ(**{header: value}))
    assert caught.value.status == 400
    assert header.replace("_", "-").lower() in str(caught.value).lower()


def _instances(http, server, **params):
    server.app.extensions["config_server"].inventory.flush()
    answer = http.get(f"{server.url}/instances", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_requests_record_ids_applied_and_rejected_versions(repo, serve, http):
    first = repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    # fast path (plain GET), Flask view (conditional GET) and a third-party client without an id
    assert http.get(f"{server.url}/orders/prod", headers={"X-Config-Client-Id": "orders-1"}).ok
    etag = http.get(f"{server.url}/orders/prod").headers["ETag"]
    answer = http.get(
        f"{server.url}/orders/prod",
        headers={
            "If-None-Match": etag,
            "X-Config-Client-Id": "orders-2",
            "X-Config-Applied": first,
            "X-Config-Rejected": 'abc123; reason="schema: port must be a number"',
            "X-Config-Client-Labels": "zone=eu",
        },
    )
    assert answer.status_code == 304
    body = _instances(http, server, application="orders")
    by_id = {i["id"]: i for i in body["instances"]}
    assert by_id["orders-1"]["served"] == first and by_id["orders-1"]["status"] == "up"
    two = by_id["orders-2"]
    assert two["applied"] == first and two["labels"] == {"zone": "eu"}
    assert two["rejected"] == {"version": "abc123", "reason": "schema: port must be a number"}
    assert two["status"] == "rejected"
    anonymous = [i for i in body["instances"] if not i["identified"]]
    assert len(anonymous) == 1 and anonymous[0]["remote"] == "127.0.0.1"
    assert anonymous[0]["id"].startswith("127.0.0.1 python-requests/")
    [env] = body["environments"]
    assert (env["application"], env["profiles"], env["label"]) == ("orders", "prod", "main")
    assert env["instances"] == 3 and env["versions"] == {first: 3}
    assert env["rejections"] == [
        {"version": "abc123", "reason": "schema: port must be a number", "instances": ["orders-2"]}
    ]
    # the next report without X-Config-Rejected clears the rejection
    http.get(f"{server.url}/orders/prod", headers={"X-Config-Client-Id": "orders-2"})
    by_id = {i["id"]: i for i in _instances(http, server, application="orders")["instances"]}
    assert by_id["orders-2"]["rejected"] is None and by_id["orders-2"]["applied"] == first


def test_a_malformed_header_is_a_400_and_nothing_is_stored(repo, serve, http):
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    answer = http.get(
        f"{server.url}/orders/prod",
        headers={"X-Config-Client-Id": "evil id", "User-Agent": "evil"},
    )
    assert answer.status_code == 400 and "X-Config-Client-Id" in answer.json()["message"]
    answer = http.get(f"{server.url}/orders/prod?wait=1", headers={"X-Config-Applied": "not a version"})
    assert answer.status_code == 400 and "X-Config-Applied" in answer.json()["message"]
    assert _instances(http, server)["instances"] == []


def test_a_long_poll_records_the_version_it_was_answered_with(repo, serve, http):
    first = repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    etag = http.get(f"{server.url}/orders/default").headers["ETag"]
    result = {}

    def poll():
        result["answer"] = http.get(
            f"{server.url}/orders/default?wait=20",
            headers={"If-None-Match": etag, "X-Config-Client-Id": "watcher-1"},
        )

    thread = threading.Thread(target=poll)
    thread.start()
    wait_for(lambda: server.app.extensions["config_server"].hub.watchers() == 1, what="the watcher")
    second = repo.commit({"orders.yml": "a: 2\n"})
    thread.join(timeout=20)
    assert result["answer"].status_code == 200
    instance = {i["id"]: i for i in _instances(http, server)["instances"]}["watcher-1"]
    assert instance["served"] == second and first != second


def test_expiry_gone_after_three_minutes_forgotten_after_a_day(tmp_path):
    now = [1_000_000.0]
    store = SQLiteStateStore(tmp_path / "state.db")
    inventory = Inventory(store, clock=lambda: now[0])
    headers = parse_client_headers(_environ(x_config_client_id="i-1"))
    inventory.observe(headers, "orders", ("prod",), "main", "v1")
    inventory.flush()
    [record] = inventory.instances("orders")
    assert status_of(record, now[0]) == "up"
    now[0] += GONE_AFTER_SECONDS + 1
    [record] = inventory.instances("orders")
    assert status_of(record, now[0]) == "gone"
    assert summarize([record], now[0])[0]["instances"] == 0
    now[0] += HISTORY_SECONDS
    inventory.flush()  # the flusher prunes what is older than a day
    assert inventory.instances("orders") == []
    assert store.instances() == []


def test_version_since_moves_only_when_the_running_version_changes(tmp_path):
    now = [100.0]
    inventory = Inventory(SQLiteStateStore(tmp_path / "state.db"), clock=lambda: now[0])
    headers = parse_client_headers(_environ(x_config_client_id="i-1"))
    for seen, served in ((100.0, "v1"), (150.0, "v1"), (200.0, "v2"), (260.0, "v2")):
        now[0] = seen
        inventory.observe(headers, "orders", "prod", "main", served)
        inventory.flush()
    [record] = inventory.instances()
    assert record.version == "v2" and record.version_since == 200.0
    assert record.first_seen == 100.0 and record.last_seen == 260.0


def test_workers_share_one_store(tmp_path):
    """Two inventories (as two workers have) on one file: each sees what the other wrote."""
    one = Inventory(SQLiteStateStore(tmp_path / "state.db"))
    two = Inventory(SQLiteStateStore(tmp_path / "state.db"))
    one.observe(parse_client_headers(_environ(x_config_client_id="a")), "orders", "prod", "main", "v1")
    two.observe(parse_client_headers(_environ(x_config_client_id="b")), "orders", "prod", "main", "v1")
    one.flush()
    two.flush()
    assert {r.instance_id for r in one.instances()} == {"a", "b"}


def test_the_flusher_writes_in_the_background(repo, serve, http):
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    http.get(f"{server.url}/orders/prod", headers={"X-Config-Client-Id": "bg-1"})
    wait_for(
        lambda: [r.instance_id for r in server.app.extensions["config_server"].store.instances()] == ["bg-1"],
        what="the background flusher",
    )


def test_instances_are_scoped_to_what_the_client_may_read(repo, serve, http, tmp_path):
    repo.commit({"orders.yml": "a: 1\n", "payments.yml": "p: 1\n"})
    auth_file = tmp_path / "auth.yml"
    auth_file.write_text(auth_yaml())
    server = serve(repo.path, auth_file=str(auth_file))
    http.get(f"{server.url}/orders/prod", headers={**bearer("orders"), "X-Config-Client-Id": "o-1"})
    http.get(f"{server.url}/payments/prod", headers={**bearer("ops"), "X-Config-Client-Id": "p-1"})
    server.app.extensions["config_server"].inventory.flush()
    assert http.get(f"{server.url}/instances").status_code == 401
    mine = http.get(f"{server.url}/instances", headers=bearer("orders")).json()
    assert [i["id"] for i in mine["instances"]] == ["o-1"]
    assert (
        http.get(f"{server.url}/instances?application=payments", headers=bearer("orders")).status_code == 403
    )
    assert http.get(f"{server.url}/instances", headers=bearer("hook")).status_code == 403
    everything = http.get(f"{server.url}/instances", headers=bearer("admin")).json()
    assert {i["id"] for i in everything["instances"]} == {"o-1", "p-1"}
    bad = http.get(f"{server.url}/instances?application=..", headers=bearer("admin"))
    assert bad.status_code == 400


def test_config_client_instances_prints_a_table(repo, serve, http):
    version = repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    http.get(f"{server.url}/orders/prod", headers={"X-Config-Client-Id": "orders-host-1"})
    http.get(
        f"{server.url}/orders/prod",
        headers={"X-Config-Client-Id": "orders-host-2", "X-Config-Rejected": 'ffff0000; reason="bad port"'},
    )
    server.app.extensions["config_server"].inventory.flush()
    command = Path(sys.executable).with_name("config-client")
    out = subprocess.run(
        [str(command), "instances", "--server", server.url, "orders"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["ID", "VERSION", "SINCE", "STATUS"]
    one = next(line for line in lines if line.startswith("orders-host-1"))
    assert one.split()[1] == version[:12] and one.split()[3] == "up"
    two = next(line for line in lines if line.startswith("orders-host-2"))
    assert "rejected (ffff0000: bad port)" in two
    assert f"orders/prod/main: {version[:12]}: 2" in out.stderr
    refused = subprocess.run(
        [str(command), "instances", "--server", server.url, ".."], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 2 and "400" in refused.stderr


def test_name_and_label_lists_are_recorded_alike_on_both_paths(repo, serve, http):
    repo.commit({"orders.yml": "a: 1\n", "shared.yml": "s: 1\n"})
    repo.git("branch", "release-1")
    server = serve(repo.path)
    url = f"{server.url}/orders,shared/prod/main,release-1"
    assert http.get(url, headers={"X-Config-Client-Id": "fast"}).ok  # fast path
    etag = http.get(url).headers["ETag"]
    flask = http.get(url, headers={"X-Config-Client-Id": "flask", "If-None-Match": etag})  # Flask view
    assert flask.status_code == 304
    records = {i["id"]: i for i in _instances(http, server)["instances"]}
    for name in ("fast", "flask"):
        assert (records[name]["application"], records[name]["label"]) == ("orders,shared", "main,release-1")


def test_a_repeated_report_is_written_again_only_after_30_seconds(tmp_path):
    now = [100.0]
    inventory = Inventory(SQLiteStateStore(tmp_path / "state.db"), clock=lambda: now[0])
    headers = parse_client_headers(_environ(x_config_client_id="i-1"))
    written = []
    for seen, served in ((100.0, "v1"), (110.0, "v1"), (131.0, "v1"), (132.0, "v2")):
        now[0] = seen
        inventory.observe(headers, "orders", "prod", "main", served)
        written.append(inventory.flush())
    assert written == [1, 0, 1, 1]  # 110 s repeats what 100 s wrote; 131 s refreshes last seen
    [record] = inventory.instances()
    assert (record.last_seen, record.version, record.version_since) == (132.0, "v2", 132.0)


def test_instances_of_a_list_request_need_every_listed_application(repo, serve, http, tmp_path):
    """A glob `orders*` matches `orders,payments` as text: each listed name is checked on its own."""
    from config_server.http.auth import hash_token

    repo.commit({"orders.yml": "a: 1\n", "payments.yml": "p: 1\n"})
    repo.git("branch", "release")
    auth_file = tmp_path / "auth.yml"
    auth_file.write_text(
        f"""
clients:
  - name: orders-glob
    tokens: [{hash_token("orders-glob-token-" + "x" * 20)}]
    roles: [read]
    applications: ["orders*"]
    labels: ["main*"]
  - name: admin
    tokens: [{hash_token("admin-token-" + "x" * 20)}]
    roles: [admin]
"""
    )
    server = serve(repo.path, auth_file=str(auth_file))
    admin = {"Authorization": "Bearer admin-token-" + "x" * 20}
    mine = {"Authorization": "Bearer orders-glob-token-" + "x" * 20}
    for path, client_id in (
        ("/orders/default", "orders-only"),
        ("/orders,payments/default", "orders-and-payments"),
        ("/orders/default/main,release", "orders-two-labels"),
    ):
        answer = http.get(server.url + path, headers={**admin, "X-Config-Client-Id": client_id})
        assert answer.status_code == 200, (path, answer.text)
    server.app.extensions["config_server"].inventory.flush()
    everything = http.get(f"{server.url}/instances", headers=admin).json()
    assert {i["id"] for i in everything["instances"]} == {
        "orders-only",
        "orders-and-payments",
        "orders-two-labels",
    }
    seen = http.get(f"{server.url}/instances", headers=mine).json()
    assert [i["id"] for i in seen["instances"]] == ["orders-only"]
    assert [e["application"] for e in seen["environments"]] == ["orders"]


def test_one_address_can_introduce_a_bounded_number_of_ids_per_hour(tmp_path):
    """Ids are the caller's choice: past the hour's cap an address's new ids are dropped, known ones kept."""
    from config_server.observability.inventory import ID_WINDOW_SECONDS, MAX_IDS_PER_ADDRESS_PER_HOUR

    assert 100 <= MAX_IDS_PER_ADDRESS_PER_HOUR <= 10_000
    now = [1_000_000.0]
    store = SQLiteStateStore(tmp_path / "state.db")
    inventory = Inventory(store, clock=lambda: now[0])
    inventory.max_ids_per_address = 5

    def report(remote: str, client_id: str) -> None:
        environ = {"REMOTE_ADDR": remote, "HTTP_X_CONFIG_CLIENT_ID": client_id}
        inventory.observe(parse_client_headers(environ), "orders", "prod", "main", "v1")

    for i in range(8):
        report("10.0.0.66", f"hostile-{i}")
    report("10.0.0.7", "orders-1")
    inventory.flush()
    ids = {r.instance_id for r in store.instances()}
    assert ids == {f"hostile-{i}" for i in range(5)} | {"orders-1"}
    assert inventory.dropped_reports == 3
    # a known id keeps reporting; a new one is still refused within the hour
    now[0] += 60
    report("10.0.0.66", "hostile-0")
    report("10.0.0.66", "hostile-99")
    inventory.flush()
    by_id = {r.instance_id: r for r in store.instances()}
    assert by_id["hostile-0"].last_seen == now[0] and "hostile-99" not in by_id
    # the next hour the address may introduce new ids again
    now[0] += ID_WINDOW_SECONDS
    report("10.0.0.66", "hostile-99")
    inventory.flush()
    assert "hostile-99" in {r.instance_id for r in store.instances()}


def test_all_addresses_together_introduce_a_bounded_number_of_ids_per_hour(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    inventory = Inventory(store)
    inventory.max_new_ids = 10
    for i in range(30):
        environ = {"REMOTE_ADDR": f"10.1.{i}.1", "HTTP_X_CONFIG_CLIENT_ID": f"id-{i}"}
        inventory.observe(parse_client_headers(environ), "orders", "prod", "main", "v1")
    inventory.flush()
    assert len(store.instances()) == 10 and inventory.dropped_reports == 20


def test_store_reads_are_bounded_and_ordered(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    inventory = Inventory(store)
    for app in ("payments", "orders"):
        for i in range(6):
            environ = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_CONFIG_CLIENT_ID": f"{app}-{i}"}
            inventory.observe(parse_client_headers(environ), app, "prod", "main", "v1")
    inventory.flush()
    assert len(store.instances()) == 12
    first = store.instances(limit=4)
    assert [r.instance_id for r in first] == ["orders-0", "orders-1", "orders-2", "orders-3"]
    assert [r.instance_id for r in inventory.instances("payments", limit=2)] == ["payments-0", "payments-1"]


def test_instances_answer_is_capped_and_says_when_it_is_truncated(repo, serve, http):
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path, instance_ids_per_address=4)  # --instance-ids-per-address
    for i in range(6):
        answer = http.get(f"{server.url}/orders/prod", headers={"X-Config-Client-Id": f"orders-{i}"})
        assert answer.status_code == 200  # the caller is served; only its report is dropped
    whole = _instances(http, server)
    assert [i["id"] for i in whole["instances"]] == [f"orders-{i}" for i in range(4)]
    assert whole["truncated"] is False and whole["limit"] == 1000 and "note" not in whole
    part = _instances(http, server, limit="3")
    assert [i["id"] for i in part["instances"]] == ["orders-0", "orders-1", "orders-2"]
    assert part["truncated"] is True and part["limit"] == 3
    assert "more than 3 instances" in part["note"] and "limit" in part["note"]
    for bad in ("0", "-1", "abc", "10001", "1.5"):
        answer = http.get(f"{server.url}/instances", params={"limit": bad})
        assert answer.status_code == 400, bad
        assert "limit must be a whole number from 1 to 10000" in answer.json()["message"]


def test_a_scoped_reader_gets_its_instances_even_when_others_fill_the_limit(repo, serve, http, tmp_path):
    """`limit` counts the instances the client may see: other applications' rows (which sort
    first) are not fetched, cut at the limit, and then filtered away to nothing."""
    repo.commit({"orders.yml": "a: 1\n", "inventory.yml": "i: 1\n"})
    auth_file = tmp_path / "auth.yml"
    auth_file.write_text(auth_yaml())
    server = serve(repo.path, auth_file=str(auth_file))
    for n in range(5):
        http.get(f"{server.url}/inventory/prod", headers={**bearer("ops"), "X-Config-Client-Id": f"i-{n}"})
    http.get(f"{server.url}/orders/prod", headers={**bearer("orders"), "X-Config-Client-Id": "o-1"})
    http.get(f"{server.url}/orders/dev", headers={**bearer("ops"), "X-Config-Client-Id": "o-dev"})
    server.app.extensions["config_server"].inventory.flush()
    mine = http.get(f"{server.url}/instances?limit=2", headers=bearer("orders")).json()
    assert [i["id"] for i in mine["instances"]] == ["o-1"]
    assert mine["truncated"] is False
    one = http.get(f"{server.url}/instances?application=orders&limit=1", headers=bearer("orders")).json()
    assert [i["id"] for i in one["instances"]] == ["o-1"] and one["truncated"] is False
    everything = http.get(f"{server.url}/instances?limit=2", headers=bearer("admin")).json()
    assert len(everything["instances"]) == 2 and everything["truncated"] is True


# -- what one caller can make the server hold (rows, parse time, cache bytes) ---------------------


@pytest.mark.parametrize(
    "value",
    [
        "v" + " " * 8000 + "x",  # the quadratic backtrack between the version and the reason
        "v" + " " * 4000 + ";" + " " * 4000 + "x",
        'v; reason="' + "a" * 8000,  # an unterminated reason
        'v; reason="' + "\\" * 8000,
        'v; reason="' + '\\"' * 4000 + '"',
        "v" * 8000,
        ";" * 8000,
    ],
)
def test_a_hostile_rejection_header_is_refused_in_linear_time(value):
    """`X-Config-Rejected: "v" + 8000 spaces + "x"` took 0.45 s of CPU: every shape is refused fast."""
    import time

    environ = _environ(x_config_rejected=value)
    environ["REMOTE_ADDR"] = f"10.9.{len(value) % 250}.{id(value) % 250}"  # no remembered answer
    started = time.perf_counter()
    with pytest.raises(InvalidHeader) as caught:
        parse_client_headers(environ)
    assert time.perf_counter() - started < 0.05
    assert "X-Config-Rejected" in str(caught.value)


def test_a_malformed_report_header_is_parsed_once_per_request(repo, serve, http, monkeypatch):
    """The fast path hands a malformed report to Flask, which answers the 400 without parsing it again."""
    from config_server.observability import inventory

    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    parse = inventory._parse
    calls = []

    def counting(*args):
        calls.append(args)
        return parse(*args)

    monkeypatch.setattr(inventory, "_parse", counting)
    for path in ("/orders/default", "/orders/default?wait=1"):
        calls.clear()
        headers = {"X-Config-Rejected": "v  x", "If-None-Match": '"nope"'} if "wait" in path else {}
        answer = http.get(server.url + path, headers={"X-Config-Rejected": "v  x", **headers})
        assert answer.status_code == 400 and "X-Config-Rejected" in answer.json()["message"]
        assert len(calls) == 1, path


def test_one_id_asking_for_many_environments_adds_a_bounded_number_of_rows(tmp_path):
    """Rows are keyed by id, application, profiles and label: the caps count rows, not only ids."""
    store = SQLiteStateStore(tmp_path / "state.db")
    inventory = Inventory(store)
    inventory.max_ids_per_address = 5
    hostile = parse_client_headers({"REMOTE_ADDR": "10.0.0.66", "HTTP_X_CONFIG_CLIENT_ID": "one"})
    for i in range(50):
        inventory.observe(hostile, "orders", f"p{i}", "main", "v1")
    neighbour = parse_client_headers({"REMOTE_ADDR": "10.0.0.7", "HTTP_X_CONFIG_CLIENT_ID": "orders-1"})
    inventory.observe(neighbour, "orders", "prod", "main", "v1")
    inventory.flush()
    rows = store.instances()
    assert len([r for r in rows if r.instance_id == "one"]) == 10  # twice the ids an address may add
    assert [r.profiles for r in rows if r.instance_id == "orders-1"] == ["prod"]
    assert inventory.dropped_reports == 40
    inventory.observe(hostile, "orders", "p0", "main", "v2")  # a stored row keeps reporting
    inventory.flush()
    assert {r.profiles: r.served for r in store.instances()}["p0"] == "v2"


def test_all_addresses_together_add_a_bounded_number_of_rows_per_hour(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    inventory = Inventory(store)
    inventory.max_new_rows = 10
    for i in range(5):
        headers = parse_client_headers({"REMOTE_ADDR": f"10.2.{i}.1", "HTTP_X_CONFIG_CLIENT_ID": f"id-{i}"})
        for profile in ("a", "b", "c", "d", "e", "f"):
            inventory.observe(headers, "orders", profile, "main", "v1")
    inventory.flush()
    assert len(store.instances()) == 10 and inventory.dropped_reports == 20


def test_one_id_and_many_profiles_over_http_store_a_bounded_number_of_rows(repo, serve, http):
    """One id and 5,000 `GET /orders/p{i}` made 5,001 rows; now the address's cap of rows holds."""
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path, instance_ids_per_address=4)  # --instance-ids-per-address
    for i in range(30):
        answer = http.get(f"{server.url}/orders/p{i}", headers={"X-Config-Client-Id": "one"})
        assert answer.status_code == 200  # served all the same; only the report is dropped
    rows = _instances(http, server)["instances"]
    assert len(rows) == 8 and {r["id"] for r in rows} == {"one"}


def test_the_report_header_cache_is_bounded_by_bytes():
    """7 KB padded headers held ~225 MB per worker in a 16,384-entry cache; now it has a byte budget."""
    import gc
    import tracemalloc

    from config_server.observability import inventory

    padding = " " * 7000
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2500):
            parse_client_headers(
                {"REMOTE_ADDR": "10.3.0.1", "HTTP_X_CONFIG_CLIENT_ID": f"{padding}padded-{i}{padding}"}
            )
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 6 * 1024 * 1024, f"{held / 1e6:.1f} MB held"
    # a remembered answer is still the same answer
    again = {"REMOTE_ADDR": "10.3.0.1", "HTTP_X_CONFIG_CLIENT_ID": "orders-1"}
    assert parse_client_headers(dict(again)) is parse_client_headers(dict(again))
    assert inventory.MAX_PARSE_CACHE_BYTES <= 8 * 1024 * 1024


def test_a_failed_flush_keeps_its_reports_and_writes_them_with_newer_ones(tmp_path):
    """Another connection holds the SQLite file's write lock beyond the busy timeout: before, the
    batch the flush had taken from the queue was dropped; now it is written with the next flush,
    merged with newer reports of the same instances (a newer report wins, keeping an earlier
    applied version it does not carry)."""
    import sqlite3

    now = [100.0]
    store = SQLiteStateStore(tmp_path / "state.db", busy_timeout=0.1)
    inventory = Inventory(store, clock=lambda: now[0])

    def observe(instance: str, served: str, **headers: str) -> None:
        reported = parse_client_headers(_environ(x_config_client_id=instance, **headers))
        inventory.observe(reported, "orders", "prod", "main", served)

    observe("a", "v1", x_config_applied="v1")
    observe("b", "v1")
    blocker = sqlite3.connect(store.path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            inventory.flush()
        now[0] = 110.0
        observe("a", "v2")  # newer, without an applied version
        observe("c", "v2")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            inventory.flush()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert inventory.flush() == 3
    records = {r.instance_id: r for r in store.instances()}
    assert sorted(records) == ["a", "b", "c"]
    assert (records["a"].served, records["a"].applied, records["a"].last_seen) == ("v2", "v1", 110.0)
    assert (records["b"].served, records["b"].last_seen) == ("v1", 100.0)
    assert inventory.flush() == 0  # written once: nothing is kept after it


def test_a_failing_store_is_logged_once_until_it_recovers_not_every_second(tmp_path, caplog):
    """The flusher used to log a traceback every second for as long as writes failed. A full disk
    cannot be made in a test (root ignores permissions, and filling the disk would hurt others),
    so the store's write raises OSError here: a fault injected, the rest real."""
    import logging

    store = SQLiteStateStore(tmp_path / "state.db")
    inventory = Inventory(store)
    real_write = store.record_instances

    def full_disk(rows):
        raise OSError(28, "No space left on device")

    store.record_instances = full_disk
    headers = parse_client_headers(_environ(x_config_client_id="i-1"))
    with caplog.at_level(logging.WARNING, logger="config_server.observability.inventory"):
        for attempt in range(5):
            inventory.observe(headers, "orders", "prod", "main", f"v{attempt}")
            inventory.flush_in_background()
        assert inventory.failed_flushes == 5
        failures = [r for r in caplog.records if "could not write instance reports" in r.getMessage()]
        assert len(failures) == 1 and failures[0].exc_info is not None  # once, with its traceback
        store.record_instances = real_write
        inventory.observe(headers, "orders", "prod", "main", "v5")
        inventory.flush_in_background()
    assert inventory.failed_flushes == 0
    assert [r.getMessage() for r in caplog.records][-1] == (
        "instance reports are written again, after 5 failed attempts"
    )
    [record] = inventory.instances("orders")
    assert record.version == "v5"
