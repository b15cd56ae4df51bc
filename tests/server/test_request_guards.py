"""Refusals before any endpoint runs: foreign Host names (DNS rebinding) and cross-site changes."""

from __future__ import annotations

import base64

import pytest
import requests
from click.testing import CliRunner

from config_server.cli import main
from config_server.http.hosts import HostAllowList, host_name
from config_server.settings import Settings
from tests.server.test_auth import TOKENS, bearer


@pytest.fixture
def orders_repo(repo):
    repo.commit({"orders.yml": "a: 1\n"})
    return repo


def status(server, path: str, **headers: str) -> int:
    return requests.get(server.url + path, headers=headers, timeout=5).status_code


def test_a_server_on_loopback_answers_loopback_names_only(orders_repo, serve):
    server = serve(orders_repo.path)
    port = server.port
    for host in (f"localhost:{port}", "127.0.0.1", f"[::1]:{port}", "LOCALHOST.", f"127.0.0.1:{port}"):
        assert status(server, "/orders/default", Host=host) == 200, host
    for path in ("/orders/default", "/orders/default?via=flask", "/health", "/console/", "/instances"):
        answer = requests.get(server.url + path, headers={"Host": "attacker.example"}, timeout=5)
        assert answer.status_code == 421, path
        body = answer.json()
        assert body["error"] == "Misdirected Request" and "--allowed-hosts" in body["message"]
    assert status(server, "/orders/default", Host=f"localhost.attacker.example:{port}") == 421


def test_allowed_hosts_replace_the_loopback_names(orders_repo, serve):
    server = serve(orders_repo.path, allowed_hosts=["config.example.com", "*.config.internal"])
    assert status(server, "/orders/default", Host="config.example.com") == 200
    assert status(server, "/orders/default", Host="eu.config.internal:8888") == 200
    assert status(server, "/orders/default", Host=f"localhost:{server.port}") == 421


def test_behind_a_proxy_the_forwarded_host_is_checked(orders_repo, serve):
    server = serve(orders_repo.path, proxy_hops=1, allowed_hosts=["config.example.com"])
    assert status(server, "/orders/default", **{"X-Forwarded-Host": "config.example.com"}) == 200
    assert status(server, "/orders/default", **{"X-Forwarded-Host": "attacker.example"}) == 421


def test_the_default_allow_list_follows_the_listening_address():
    assert not HostAllowList.for_server([], "127.0.0.1").allows("attacker.example")
    assert HostAllowList.for_server([], "127.0.0.2").allows("127.0.0.2:8888")
    assert HostAllowList.for_server([], "::1").allows("[::1]:8888")
    assert HostAllowList.for_server([], "0.0.0.0").allows("config.example.com")
    assert HostAllowList.for_server([], "10.0.0.5").any
    assert not HostAllowList.for_server(["*.example.com"], "0.0.0.0").allows("example.org")
    assert HostAllowList.for_server(["*"], "127.0.0.1").any
    names = [host_name(h) for h in ("A.Example:80", "[::1]:1", "x.", "::1")]
    assert names == ["a.example", "::1", "x", "::1"]


def test_allowed_hosts_is_an_option_a_variable_and_a_settings_key(tmp_path):
    environ = {"CONFIG_SERVER_ALLOWED_HOSTS": "a.example, *.b.example"}
    assert Settings.load(environ=environ).allowed_hosts == ["a.example", "*.b.example"]
    assert Settings.load({"allowed_hosts": "c.example"}, environ=environ).allowed_hosts == ["c.example"]
    settings_file = tmp_path / "settings.yml"
    settings_file.write_text("allowed-hosts: [d.example]\n")
    assert Settings.load(settings_file=str(settings_file), environ={}).allowed_hosts == ["d.example"]
    assert "--allowed-hosts" in CliRunner().invoke(main, ["serve", "--help"]).output


@pytest.fixture
def secured(orders_repo, serve, tmp_path):
    from tests.server.test_auth import auth_yaml

    auth_file = tmp_path / "auth.yml"
    auth_file.write_text(auth_yaml())
    return serve(orders_repo.path, auth_file=str(auth_file), encrypt_key="k")


def basic(name: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"user:{TOKENS[name]}".encode()).decode()}


def test_monitor_and_encrypt_refuse_cross_site_forms_and_serve_machine_clients(secured):
    url = secured.url

    def encrypt(**headers: str) -> int:
        return requests.post(f"{url}/encrypt", data="x", headers=headers, timeout=5).status_code

    forged = {
        "Origin": "https://attacker.example",
        "Sec-Fetch-Site": "cross-site",
        "Content-Type": "text/plain",
    }
    assert encrypt(**basic("admin"), **forged) == 403
    assert encrypt(**bearer("crypto"), **forged) == 403
    assert encrypt(**basic("admin"), **{"Content-Type": "text/plain"}) == 403
    refused = requests.post(f"{url}/monitor", data={"path": "orders.yml"}, headers=basic("admin"), timeout=5)
    assert refused.status_code == 403 and "Bearer" in refused.json()["message"]
    # machine clients: a token in Authorization: Bearer or X-Config-Token, no Origin
    text = {"Content-Type": "text/plain"}
    assert requests.post(f"{url}/encrypt", data="x", headers={**bearer("crypto"), **text}, timeout=5).ok
    token = {"X-Config-Token": TOKENS["crypto"], **text}
    assert requests.post(f"{url}/encrypt", data="x", headers=token, timeout=5).ok
    hook = requests.post(f"{url}/monitor", data={"path": "orders.yml"}, headers=bearer("hook"), timeout=5)
    assert hook.status_code == 200
    # reading with Basic (the console, Spring clients) is unchanged
    assert requests.get(f"{url}/orders/default", headers=basic("ops"), timeout=5).status_code == 200
    assert requests.get(f"{url}/console/", headers=basic("admin"), timeout=5).status_code == 200
    # the server's own origin, with a body no form can send, may use Basic
    own = {"Origin": url, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}
    assert encrypt(**basic("admin"), **own) == 200
