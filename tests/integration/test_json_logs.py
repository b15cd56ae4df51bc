"""`--log-format json`: a real server's every output line (its own, gunicorn's error and access
lines) is one JSON object with time, level, logger and message; request lines name the request
id, client and application; no token, password, ciphertext or decrypted secret appears."""

from __future__ import annotations

import base64
import json

import requests

from config_server.http.auth import hash_token
from tests.helpers import SPRING_VECTOR, GitRepo

READER = "reader-token-" + "r" * 24
ADMIN = "admin-token-" + "a" * 24
WRONG = "wrong-token-" + "w" * 24
PLAIN_SECRET = "my-plain-password-42"


def auth_file(tmp_path) -> str:
    path = tmp_path / "auth.yml"
    path.write_text(
        f"""
clients:
  - name: orders-service
    tokens: [{hash_token(READER)}]
    roles: [read]
    applications: [orders]
  - name: ops-admin
    tokens: [{hash_token(ADMIN)}]
    roles: [admin]
"""
    )
    return str(path)


def test_every_line_is_json_with_the_request_fields_and_no_secret(server_process, repo: GitRepo, tmp_path):
    repo.commit({"orders.yml": f"plain: 1\ndb:\n  password: '{{cipher}}{SPRING_VECTOR}'\n"})
    server = server_process(
        "--repo", str(repo.path), "--workers", "1", "--log-format", "json", "--access-log", "true",
        "--auth-file", auth_file(tmp_path),
        env={"ENCRYPT_KEY": "foo"},
        capture_stdout=True,
    )  # fmt: skip
    server.wait_ready(lambda: requests.get(f"{server.url}/health", timeout=1).ok)
    reader = {"Authorization": f"Bearer {READER}"}
    admin = {"Authorization": f"Bearer {ADMIN}"}

    read = requests.get(
        f"{server.url}/orders/default", headers={**reader, "X-Request-Id": "req-42"}, timeout=5
    )
    assert read.status_code == 200 and "SUPER SECRET" in read.text  # decrypted for the reader
    assert (
        requests.get(f"{server.url}/orders/default", headers={"Authorization": f"Bearer {WRONG}"}).status_code
        == 401
    )
    basic = base64.b64encode(f"ops:{ADMIN}".encode()).decode()
    assert requests.get(f"{server.url}/orders-default.yml", headers={"Authorization": f"Basic {basic}"}).ok
    text = {"Content-Type": "text/plain"}
    cipher = requests.post(f"{server.url}/encrypt", data=PLAIN_SECRET, headers={**admin, **text}, timeout=5)
    assert cipher.ok
    decrypted = requests.post(f"{server.url}/decrypt", data=cipher.text, headers={**admin, **text}, timeout=5)
    assert decrypted.text == PLAIN_SECRET
    poll = requests.get(
        f"{server.url}/orders/default?wait=1",
        headers={**reader, "If-None-Match": read.headers["ETag"], "X-Request-Id": "poll-7"},
        timeout=10,
    )
    assert poll.status_code == 304  # parked and answered by the fast path
    assert requests.get(f"{server.url}/nobody-names-me/default", headers=admin, timeout=5).ok  # a warning
    stderr = server.stop()

    assert server.out_path is not None
    lines = [line for line in (stderr + server.out_path.read_text()).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line parses
    assert all(isinstance(r, dict) and {"time", "level", "logger", "message"} <= r.keys() for r in records)
    for secret in (READER, ADMIN, WRONG, basic, "SUPER SECRET", SPRING_VECTOR, PLAIN_SECRET, cipher.text):
        assert not [line for line in lines if secret in line], secret

    access = [r for r in records if r["logger"] == "gunicorn.access"]
    first = next(r for r in access if r.get("request_id") == "req-42")
    assert (first["client"], first["application"], first["status"], first["path"]) == (
        "orders-service",
        "orders",
        200,
        "/orders/default",
    )
    parked = next(r for r in access if r.get("request_id") == "poll-7")
    assert (parked["client"], parked["application"], parked["status"]) == ("orders-service", "orders", 304)
    assert "?" not in parked["path"] and "wait" not in parked["message"]  # never the query string
    assert any(r["status"] == 401 for r in access)
    encrypt = next(r for r in access if r["path"] == "/encrypt")  # answered by Flask, not the fast path
    assert (encrypt["client"], encrypt["status"]) == ("ops-admin", 200)
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in records)
    assert any(r["logger"].startswith("config_server") and "nobody-names-me" in r["message"] for r in records)
