"""Access control: hashed tokens, three ways to send them, roles, globs, reloads and the audit log."""

import json
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests

from config_client import ConfigClient
from config_server.errors import AuthFileError
from config_server.http.auth import AuthFile, hash_token
from config_server.runtime.serving import open_server_warning
from config_server.settings import Settings
from tests.helpers import SPRING_VECTOR, wait_for

TOKENS = {name: f"token-of-{name}-{'x' * 20}" for name in ("orders", "ops", "crypto", "hook", "admin")}


def auth_yaml(tokens=TOKENS) -> str:
    return f"""
clients:
  - name: orders-service
    tokens: [{hash_token(tokens["orders"])}]
    roles: [read]
    applications: [orders]
    profiles: [default, "prod*"]
    labels: [main, "release-*"]
  - name: ops
    tokens: [{hash_token(tokens["ops"])}]
    roles: [read]
  - name: crypto
    tokens: [{hash_token(tokens["crypto"])}]
    roles: [encrypt, decrypt]
  - name: hook
    tokens: [{hash_token(tokens["hook"])}]
    roles: [monitor]
  - name: admin
    tokens: [{hash_token(tokens["admin"])}]
    roles: [admin]
"""


@pytest.fixture
def secured(repo, serve, tmp_path):
    repo.commit({"application.yml": "shared: 1\n", "orders.yml": "a: 1\n", "payments.yml": "p: 1\n"})
    repo.git("branch", "release-1")
    repo.git("branch", "experiment")
    auth_file = tmp_path / "auth.yml"
    auth_file.write_text(auth_yaml())
    audit = tmp_path / "audit.log"
    server = serve(repo.path, auth_file=str(auth_file), audit_log=str(audit), encrypt_key="foo")
    server.auth_file, server.audit = auth_file, audit
    return server


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def audit_lines(server) -> list[dict]:
    server.app.extensions["config_server"].audit.flush()
    return [json.loads(line) for line in server.audit.read_text().splitlines()]


def test_no_credentials_is_401_with_challenges(secured, http):
    response = http.get(f"{secured.url}/orders/default")
    assert response.status_code == 401
    challenges = (
        response.headers.get_all("WWW-Authenticate") if hasattr(response.headers, "get_all") else None
    )
    header = response.headers["WWW-Authenticate"]
    assert "Bearer" in header and "Basic" in header, challenges
    assert response.json()["error"] == "Unauthorized"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {TOKENS['orders']}"},
        {"X-Config-Token": TOKENS["orders"]},
        {
            "Authorization": "Basic "
            + __import__("base64").b64encode(f"any:{TOKENS['orders']}".encode()).decode()
        },
    ],
    ids=["bearer", "x-config-token", "basic-password"],
)
def test_token_accepted_in_three_forms(secured, http, headers):
    response = http.get(f"{secured.url}/orders/default", headers=headers)
    assert response.status_code == 200
    assert response.json()["propertySources"][0]["source"] == {"a": 1}


def test_unknown_token_is_401(secured, http):
    for headers in ({"Authorization": "Bearer nope"}, {"X-Config-Token": TOKENS["orders"] + "x"}):
        assert http.get(f"{secured.url}/orders/default", headers=headers).status_code == 401
    assert (
        http.get(f"{secured.url}/orders/default", headers={"Authorization": "Basic %%%"}).status_code == 401
    )


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/orders/default", 200),
        ("/orders/prod", 200),
        ("/orders/prod-eu", 200),
        ("/orders/default/release-1", 200),
        ("/orders-prod.yml", 200),
        ("/main/orders-prod.properties", 200),
        ("/orders/dev", 403),
        ("/orders/prod,dev", 403),
        ("/orders/default/experiment", 403),
        ("/experiment/orders-default.yml", 403),
        ("/payments/default", 403),
        ("/payments-default.json", 403),
        ("/application/default", 403),
    ],
)
def test_applications_profiles_and_labels_are_globbed(secured, http, path, status):
    response = http.get(secured.url + path, headers=bearer("orders"))
    assert response.status_code == status, response.text
    if status == 403:
        assert "orders-service" in response.json()["message"]


def test_roles_gate_the_other_endpoints(secured, http):
    text = {"Content-Type": "text/plain"}
    assert http.post(f"{secured.url}/encrypt", data="x", headers={**text, **bearer("ops")}).status_code == 403
    encrypted = http.post(f"{secured.url}/encrypt", data="x", headers={**text, **bearer("crypto")})
    assert encrypted.status_code == 200
    assert (
        http.post(
            f"{secured.url}/decrypt", data=encrypted.text, headers={**text, **bearer("ops")}
        ).status_code
        == 403
    )
    decrypted = http.post(f"{secured.url}/decrypt", data=SPRING_VECTOR, headers={**text, **bearer("crypto")})
    assert decrypted.status_code == 200 and decrypted.text == "SUPER SECRET"
    bad = http.post(f"{secured.url}/decrypt", data="00" * 32, headers={**text, **bearer("crypto")})
    assert bad.status_code == 400 and "cannot decrypt" in bad.json()["message"]
    assert http.get(f"{secured.url}/orders/default", headers=bearer("crypto")).status_code == 403
    assert http.post(f"{secured.url}/monitor", data={"path": "orders.yml"}).status_code == 401
    assert (
        http.post(f"{secured.url}/monitor", data={"path": "orders.yml"}, headers=bearer("ops")).status_code
        == 403
    )
    hook = http.post(f"{secured.url}/monitor", data={"path": "orders.yml"}, headers=bearer("hook"))
    assert hook.status_code == 200 and hook.json() == ["orders"]
    assert http.get(f"{secured.url}/payments/default", headers=bearer("admin")).status_code == 200


def test_health_is_public_but_details_are_for_admins(secured, http):
    public = http.get(f"{secured.url}/health")
    assert public.status_code == 200 and public.json() == {"status": "UP"}
    assert "details" in http.get(f"{secured.url}/health", headers=bearer("admin")).json()
    assert http.get(f"{secured.url}/openapi.json").status_code == 200


def test_signed_webhook_still_works_without_a_token(repo, serve, http, tmp_path):
    repo.commit({"orders.yml": "a: 1\n"})
    auth_file = tmp_path / "auth.yml"
    auth_file.write_text(auth_yaml())
    server = serve(repo.path, auth_file=str(auth_file), webhook_secret="s3")
    gitlab = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "s3"}
    response = http.post(
        f"{server.url}/monitor", json={"commits": [{"modified": ["orders.yml"]}]}, headers=gitlab
    )
    assert response.status_code == 200
    wrong = {**gitlab, "X-Gitlab-Token": "nope"}
    assert http.post(f"{server.url}/monitor", json={}, headers=wrong).status_code == 401


def test_auth_file_is_reloaded_for_rotation_and_revocation(secured, http, caplog):
    rotated = {**TOKENS, "orders": "rotated-orders-token-" + "y" * 20}
    both = auth_yaml().replace(
        f"tokens: [{hash_token(TOKENS['orders'])}]",
        f"tokens: [{hash_token(TOKENS['orders'])}, {hash_token(rotated['orders'])}]",
    )
    secured.auth_file.write_text(both)
    headers_new = {"Authorization": f"Bearer {rotated['orders']}"}
    wait_for(
        lambda: http.get(f"{secured.url}/orders/default", headers=headers_new).status_code == 200,
        what="reload",
    )
    assert http.get(f"{secured.url}/orders/default", headers=bearer("orders")).status_code == 200
    secured.auth_file.write_text(auth_yaml(rotated))  # the old token is revoked
    wait_for(lambda: http.get(f"{secured.url}/orders/default", headers=bearer("orders")).status_code == 401)
    with caplog.at_level(logging.ERROR):
        secured.auth_file.write_text("clients: [oops")  # a broken edit keeps the last good clients
        wait_for(
            lambda: (
                http.get(f"{secured.url}/orders/default", headers=headers_new)
                and "not reloaded" in caplog.text
            ),
            what="the reload error",
        )
    assert http.get(f"{secured.url}/orders/default", headers=headers_new).status_code == 200


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("clients:\n  - name: a\n    token: plain\n", "plain 'token'"),
        ("clients:\n  - name: a\n    tokens: [abc]\n", "sha256:"),
        (
            "clients:\n  - name: a\n    tokens: [sha256:" + "0" * 64 + "]\n    roles: [root]\n",
            "unknown roles",
        ),
        ("clients:\n  - name: a\n", "no tokens"),
        ("users: []\n", "'clients' list"),
    ],
)
def test_bad_auth_files_are_refused_with_a_reason(tmp_path, content, message):
    path = tmp_path / "auth.yml"
    path.write_text(content)
    with pytest.raises(AuthFileError, match=message):
        AuthFile(path)


def test_authentication_compares_every_hash(tmp_path):
    path = tmp_path / "auth.yml"
    path.write_text(auth_yaml())
    auth = AuthFile(path)
    assert auth.authenticate(TOKENS["admin"]).name == "admin"
    assert auth.authenticate(TOKENS["orders"]).name == "orders-service"
    assert auth.authenticate("") is None
    assert TOKENS["orders"] not in path.read_text()


def test_audit_log_records_reads_crypto_monitor_and_denials_without_secrets(secured, http):
    http.get(f"{secured.url}/orders/prod/release-1", headers=bearer("orders"))
    http.get(f"{secured.url}/payments/default", headers=bearer("orders"))
    http.get(f"{secured.url}/orders/default")
    http.post(
        f"{secured.url}/encrypt",
        data="plain-secret-value",
        headers={"Content-Type": "text/plain", **bearer("crypto")},
    )
    http.post(
        f"{secured.url}/decrypt",
        data=SPRING_VECTOR,
        headers={"Content-Type": "text/plain", **bearer("crypto")},
    )
    http.post(f"{secured.url}/monitor", data={"path": "orders.yml"}, headers=bearer("hook"))
    lines = wait_for(
        lambda: (lines := audit_lines(secured)) and len(lines) >= 6 and lines, what="audit lines"
    )
    read, denied, anonymous, encrypt, decrypt, monitor = lines[:6]
    assert read["event"] == "read" and read["client"] == "orders-service"
    assert (read["application"], read["profiles"], read["label"], read["status"]) == (
        "orders",
        "prod",
        "release-1",
        200,
    )
    assert len(read["version"]) == 40
    assert denied["event"] == "denied" and denied["status"] == 403 and denied["application"] == "payments"
    assert anonymous["event"] == "denied" and anonymous["status"] == 401 and "client" not in anonymous
    assert encrypt["event"] == "encrypt" and encrypt["client"] == "crypto"
    assert (
        decrypt["event"] == "decrypt"
        and monitor["event"] == "monitor"
        and monitor["applications"] == ["orders"]
    )
    text = secured.audit.read_text()
    for secret in ("plain-secret-value", "SUPER SECRET", SPRING_VECTOR, *TOKENS.values()):
        assert secret not in text


def test_client_library_sends_its_token(secured):
    with ConfigClient(secured.url, "orders", "prod", token=TOKENS["orders"], watch=False) as client:
        assert client.get("a") == 1
    with ConfigClient(
        secured.url, "orders", "prod", username="x", password=TOKENS["orders"], watch=False
    ) as client:
        assert client.get("a") == 1


def test_open_server_warns_only_beyond_loopback():
    assert open_server_warning(Settings(host="127.0.0.1")) is None
    assert open_server_warning(Settings(host="::1")) is None
    assert "OPEN SERVER" in open_server_warning(Settings(host="0.0.0.0"))
    assert open_server_warning(Settings(host="0.0.0.0", auth_file="auth.yml")) is None


def test_open_server_warning_is_printed_at_start(server_process, repo):
    repo.commit({"orders.yml": "a: 1\n"})
    server = server_process("--repo", str(repo.path), "--host", "0.0.0.0", "--workers", "1")
    server.wait_ready(
        lambda: requests.get(f"{server.url}/health", timeout=1, headers={"Connection": "close"}).ok
    )
    log = server.stop()
    assert "OPEN SERVER" in log and "Traceback" not in log


def test_proxy_hops_trusts_forwarded_for(repo, serve, http, tmp_path):
    repo.commit({"orders.yml": "a: 1\n"})
    audit = tmp_path / "audit.log"
    server = serve(repo.path, proxy_hops=1, audit_log=str(audit))
    http.get(f"{server.url}/orders/default", headers={"X-Forwarded-For": "203.0.113.9"})
    server.app.extensions["config_server"].audit.flush()
    assert json.loads(audit.read_text().splitlines()[0])["remote"] == "203.0.113.9"


def test_audit_log_is_reopened_after_logrotate_moves_it(tmp_path):
    from config_server.observability.audit import AuditLog

    path = tmp_path / "audit.log"
    log = AuditLog(str(path))
    try:
        log.record("read", client="a")
        path.rename(tmp_path / "audit.log.1")

        def written_to_new_file():
            log.record("read", client="b")
            return path.exists() and path.read_text()

        wait_for(written_to_new_file, what="the audit log to be reopened at its path")
        moved = [json.loads(line) for line in (tmp_path / "audit.log.1").read_text().splitlines()]
        assert moved[0]["client"] == "a" and all(line["client"] in "ab" for line in moved)
        assert json.loads(path.read_text().splitlines()[0])["client"] == "b"
    finally:
        log.close()


def _parked(server, count=1):
    hub = server.app.extensions["config_server"].hub
    wait_for(lambda: hub.watchers() >= count, what=f"{count} parked poll(s)")


@contextmanager
def _parked_poll(secured, query: str) -> Iterator[Future]:
    """A long poll of orders/default with the orders token, parked in the hub while the block runs."""
    url = f"{secured.url}/orders/default"
    etag = requests.get(url, headers=bearer("orders"), timeout=5).headers["ETag"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        parked = pool.submit(
            requests.get, f"{url}?{query}", headers={**bearer("orders"), "If-None-Match": etag}, timeout=30
        )
        _parked(secured)
        yield parked


@pytest.mark.parametrize("query", ["wait=15", "wait=15&flask=1"], ids=["fast-path", "flask"])
def test_a_revoked_token_gets_no_push(secured, repo, query):
    """Issue 24 item 6: a reload that removes a client answers its parked poll 401, never the next
    version (a secret committed after the revocation)."""
    url = f"{secured.url}/orders/default"
    with _parked_poll(secured, query) as parked:
        secured.auth_file.write_text(
            auth_yaml()
            .replace("orders-service", "gone-service", 1)
            .replace(hash_token(TOKENS["orders"]), hash_token("another-token-" + "y" * 20))
        )
        wait_for(
            lambda: requests.get(url, headers=bearer("orders"), timeout=5).status_code == 401,
            what="the reloaded auth file to refuse the token",
        )
        repo.commit({"orders.yml": "a: 1\nsecret: after-revocation\n"})
        response = parked.result(timeout=30)
    assert response.status_code == 401
    assert "after-revocation" not in response.text


@pytest.mark.parametrize("query", ["wait=15", "wait=15&flask=1"], ids=["fast-path", "flask"])
def test_the_watch_line_names_the_version_sent(secured, repo, query):
    """Issue 24 item 6: the audit `watch` line of a woken poll records the version it was sent."""
    with _parked_poll(secured, query) as parked:
        sha = repo.commit({"orders.yml": "a: 2\n"})
        response = parked.result(timeout=30)
    assert response.status_code == 200 and response.json()["version"] == sha
    watches = [line for line in audit_lines(secured) if line["event"] == "watch"]
    assert [line["version"] for line in watches] == [sha]
