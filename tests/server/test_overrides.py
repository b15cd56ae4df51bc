"""Server-side overrides: a property source named `overrides`, first in every environment and document."""

import pytest
import requests

from config_server.settings import Settings, parse_overrides
from tests.helpers import SPRING_VECTOR, http_ready

#: Every file that `orders,shared/prod` reads sets `database.host`; so does the search path.
FILES = {
    "application.yml": "database:\n  host: app\n  port: 5432\nname: from-files\n",
    "application-prod.yml": "database.host: app-prod\n",
    "orders.yml": "database.host: orders\n",
    "orders-prod.yml": "database.host: orders-prod\n",
    "shared-prod.properties": "database.host=shared-prod\n",
    "extra/orders-prod.yml": "database.host: extra-orders-prod\n",
    "nginx.conf": "upstream ${database.host}:${database.port}\n",
}

OVERRIDES = {
    "database.host": "override.internal",
    "greeting": "hello ${name} on ${database.port}",
    "leak": "${SERVER_ONLY_SECRET}",
    "fallback": "${missing:dflt}",
}


@pytest.fixture
def server(repo, serve, monkeypatch):
    monkeypatch.setenv("SERVER_ONLY_SECRET", "must-not-appear")
    repo.commit(FILES)
    repo.git("branch", "release")
    return serve(repo.path, search_paths=["extra"], overrides=OVERRIDES)


def test_overrides_come_first_and_beat_every_file(server, http):
    env = http.get(f"{server.url}/orders,shared/prod").json()
    first = env["propertySources"][0]
    assert first["name"] == "overrides"
    assert first["source"]["database.host"] == "override.internal"
    hosts = [ps["source"].get("database.host") for ps in env["propertySources"][1:]]
    assert hosts == ["extra-orders-prod", "shared-prod", "orders-prod", "app-prod", "orders", "app"]
    for path in ("/orders/prod", "/orders/default/main,release", "/application/default", "/unknown/x"):
        sources = http.get(server.url + path).json()["propertySources"]
        assert sources[0]["name"] == "overrides", path
        assert sources[0]["source"]["database.host"] == "override.internal", path


def test_override_placeholders_resolve_against_the_environment_only(server, http):
    source = http.get(f"{server.url}/orders/prod").json()["propertySources"][0]["source"]
    assert source["greeting"] == "hello from-files on 5432"
    assert source["leak"] == "${SERVER_ONLY_SECRET}"
    assert source["fallback"] == "dflt"
    assert "must-not-appear" not in http.get(f"{server.url}/orders-prod.properties").text


def test_rendered_documents_and_plain_text_carry_the_overrides(server, http):
    assert "  host: override.internal\n" in http.get(f"{server.url}/orders,shared-prod.yml").text
    properties = http.get(f"{server.url}/release/orders-prod.properties").text
    assert "database.host: override.internal\n" in properties
    assert "greeting: hello from-files on 5432\n" in properties
    assert http.get(f"{server.url}/orders-prod.json").json()["database"]["host"] == "override.internal"
    assert http.get(f"{server.url}/orders/prod/main/nginx.conf").text == "upstream override.internal:5432\n"


def test_health_shows_the_overrides_to_admins(server, http):
    details = http.get(f"{server.url}/health").json()["details"]  # an open server: everyone is admin
    assert details["overrides"] == OVERRIDES


def test_no_overrides_means_no_overrides_source(repo, serve, http):
    repo.commit(FILES)
    env = http.get(f"{serve(repo.path).url}/orders/prod").json()
    assert all(ps["name"] != "overrides" for ps in env["propertySources"])


def test_cipher_override_is_decrypted_but_health_shows_it_encrypted(repo, serve, http):
    repo.commit(FILES)
    secret = "{cipher}" + SPRING_VECTOR
    server = serve(repo.path, encrypt_key="foo", overrides={"db": {"password": secret}})
    source = http.get(f"{server.url}/orders/prod").json()["propertySources"][0]["source"]
    assert source == {"db.password": "SUPER SECRET"}
    health = http.get(f"{server.url}/health").text
    assert "SUPER SECRET" not in health and SPRING_VECTOR in health


def test_overrides_merge_per_key_flag_over_variable_over_file(tmp_path):
    settings_file = tmp_path / "server.yml"
    settings_file.write_text("overrides:\n  a: file\n  c: file\n  nested: {x: 1}\n")
    env = {"CONFIG_SERVER_OVERRIDES": "a=variable,d=variable"}
    settings = Settings.load({"overrides": ["a=flag", "e=x=y"]}, str(settings_file), env)
    assert settings.overrides == {"a": "flag", "c": "file", "nested": {"x": 1}, "d": "variable", "e": "x=y"}
    newline = Settings.load({}, None, {"CONFIG_SERVER_OVERRIDES": "a=1,2\nb=3"}).overrides
    assert newline == {"a": "1,2", "b": "3"}
    assert parse_overrides('{a: "1,2", b: 3}') == {"a": "1,2", "b": 3}


@pytest.mark.parametrize("value", [["novalue"], ["=x"], ["a b=c"], "[1, 2]", 5, "{a: [", "{}x: 1"])
def test_malformed_overrides_are_refused_clearly(value):
    with pytest.raises(ValueError, match="override"):
        Settings.load({"overrides": value}, None, {})


def test_override_flags_and_variable_on_the_command_line(repo, server_process):
    repo.commit(FILES)
    server = server_process(
        "--repo",
        str(repo.path),
        "--workers",
        "1",
        "--override",
        "greeting=hi ${name}",
        "--override",
        "database.host=cli",
        env={"CONFIG_SERVER_OVERRIDES": "database.host=variable,region=eu"},
    )
    server.wait_ready(lambda: http_ready(f"{server.url}/health"))
    response = requests.get(f"{server.url}/orders/prod", timeout=5, headers={"Connection": "close"})
    first = response.json()["propertySources"][0]
    assert first == {
        "name": "overrides",
        "source": {"database.host": "cli", "region": "eu", "greeting": "hi from-files"},
    }
