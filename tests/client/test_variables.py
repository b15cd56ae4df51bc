"""One scheme of environment variables for every caller of a server (issue 20 item 9):
CONFIG_CLIENT_SERVERS and CONFIG_CLIENT_TOKEN; the old CONFIG_SERVER_URL and CONFIG_SERVER_TOKEN
are accepted with a deprecation warning, and never collide with the server's settings."""

from __future__ import annotations

import pytest

from config_client import ConfigClient
from config_client.cli import main as client_main
from config_client.variables import configured_servers, configured_token
from config_server.settings import Settings

OLD_AND_NEW = ("CONFIG_CLIENT_SERVERS", "CONFIG_CLIENT_TOKEN", "CONFIG_SERVER_URL", "CONFIG_SERVER_TOKEN")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in OLD_AND_NEW:
        monkeypatch.delenv(name, raising=False)


def test_new_names_win_and_old_names_work_with_a_warning(recwarn):
    assert configured_servers("http://d:1", environ={}) == "http://d:1"
    assert configured_token(environ={"CONFIG_CLIENT_TOKEN": "  "}) is None  # blank is unset
    both = {"CONFIG_CLIENT_SERVERS": "http://new:1", "CONFIG_SERVER_URL": "http://old:1"}
    assert configured_servers(environ=both) == "http://new:1"
    assert not recwarn.list
    with pytest.warns(FutureWarning, match="CONFIG_SERVER_URL is deprecated: set CONFIG_CLIENT_SERVERS"):
        assert configured_servers(environ={"CONFIG_SERVER_URL": "http://old:1"}) == "http://old:1"
    with pytest.warns(FutureWarning, match="CONFIG_SERVER_TOKEN is deprecated: set CONFIG_CLIENT_TOKEN"):
        assert configured_token(environ={"CONFIG_SERVER_TOKEN": "t"}) == "t"


def test_the_caller_variables_are_no_server_setting():
    caller = {name: "http://127.0.0.1:1" for name in OLD_AND_NEW}
    assert Settings.load(environ=caller) == Settings.load(environ={})


def test_the_library_reads_the_old_server_url_with_a_warning(repo, serve, monkeypatch):
    repo.commit({"svc.yml": "a: 7\n"})
    server = serve(repo.path)
    monkeypatch.setenv("CONFIG_SERVER_URL", server.url)
    with pytest.warns(FutureWarning, match="CONFIG_CLIENT_SERVERS"):
        client = ConfigClient(None, "svc", fail_fast=True, start_attempts=1, watch=False)
    assert client.start().get("a") == 7


def test_the_cli_reads_new_and_old_names_for_every_command(repo, serve, monkeypatch, capsys):
    repo.commit({"svc.yml": "a: 7\n"})
    server = serve(repo.path)
    monkeypatch.setenv("CONFIG_CLIENT_SERVERS", server.url)
    assert client_main(["get", "svc", "default", "a"]) == 0
    assert client_main(["instances", "svc", "--json"]) == 0  # instances no longer needs --server
    out, err = capsys.readouterr()
    assert out.startswith("7\n") and '"environments"' in out and "deprecated" not in err

    monkeypatch.delenv("CONFIG_CLIENT_SERVERS")
    monkeypatch.setenv("CONFIG_SERVER_URL", server.url)
    assert client_main(["get", "svc", "default", "a"]) == 0
    out, err = capsys.readouterr()
    assert out == "7\n"
    assert "config-client: warning: CONFIG_SERVER_URL is deprecated: set CONFIG_CLIENT_SERVERS" in err
