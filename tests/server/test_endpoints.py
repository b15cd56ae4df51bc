"""Rendered formats, plain-text resources, media types, ETags and health."""

import pytest
import yaml

FILES = {
    "application.yml": (
        "db:\n  host: localhost\n  port: 5432\n  url: jdbc://${db.host}:${db.port}/x\n"
        "tags: [a, b, c]\nflag: true\n"
    ),
    "orders-prod.yml": "db:\n  host: prod-db\ntags: [z]\n",
    "nginx.conf": "server ${db.host}:${db.port}; # ${missing:fallback}\n",
    "nginx-prod.conf": "prod server ${db.host};\n",
    "conf/app.json": '{"host": "${db.host}"}\n',
}


@pytest.fixture
def server(repo, serve):
    repo.commit(FILES)
    repo.git("branch", "release")
    return serve(repo.path)


def test_rendered_yaml_merges_and_replaces_lists_whole(server, http):
    response = http.get(f"{server.url}/orders-prod.yml")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    data = yaml.safe_load(response.text)
    assert data == {
        "db": {"host": "prod-db", "port": 5432, "url": "jdbc://prod-db:5432/x"},
        "tags": ["z"],
        "flag": True,
    }
    assert yaml.safe_load(http.get(f"{server.url}/orders-prod.yaml").text) == data


def test_rendered_json_and_properties(server, http):
    response = http.get(f"{server.url}/orders-prod.json")
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["db"]["url"] == "jdbc://prod-db:5432/x"
    text = http.get(f"{server.url}/orders-prod.properties").text
    assert text.splitlines() == [
        "db.host: prod-db",
        "db.port: 5432",
        "db.url: jdbc://prod-db:5432/x",
        "flag: true",
        "tags[0]: z",
    ]


def test_rendered_with_label_and_hyphenated_application(server, repo, serve, http):
    assert "prod-db" in http.get(f"{server.url}/release/orders-prod.yml").text
    repo.commit({"my-service-prod.yml": "k: 1\n"})
    assert yaml.safe_load(http.get(f"{server.url}/main/my-service-prod.yml").text)["k"] == 1


def test_resolve_placeholders_false(server, http):
    data = http.get(f"{server.url}/orders-prod.json?resolvePlaceholders=false").json()
    assert data["db"]["url"] == "jdbc://${db.host}:${db.port}/x"


def test_environment_json_never_resolves_placeholders(server, http):
    env = http.get(f"{server.url}/orders/prod").json()
    assert env["propertySources"][-1]["source"]["db.url"] == "jdbc://${db.host}:${db.port}/x"


def test_v2_media_type_and_wildcard_accept(server, http):
    for accept in ("application/vnd.spring-cloud.config-server.v2+json", "*/*", None):
        headers = {"Accept": accept} if accept else {}
        response = http.get(f"{server.url}/orders/prod", headers=headers)
        assert response.status_code == 200
        assert response.json()["name"] == "orders"


def test_basic_auth_header_from_real_clients_is_ignored_when_open(server, http):
    response = http.get(f"{server.url}/orders/prod", headers={"Authorization": "Basic Og=="})
    assert response.status_code == 200


def test_plain_text_resource_profile_variant_and_placeholders(server, http):
    assert http.get(f"{server.url}/orders/prod/main/nginx.conf").text == "prod server prod-db;\n"
    text = http.get(f"{server.url}/orders/dev/main/nginx.conf").text
    assert text == "server localhost:5432; # fallback\n"
    response = http.get(f"{server.url}/orders/dev/release/conf/app.json")
    assert response.json() == {"host": "localhost"}


def test_plain_text_with_default_label(server, http):
    response = http.get(f"{server.url}/orders/dev/nginx.conf?useDefaultLabel")
    assert response.text == "server localhost:5432; # fallback\n"
    response = http.get(f"{server.url}/orders/dev/conf/app.json?useDefaultLabel")
    assert response.json() == {"host": "localhost"}


def test_missing_plain_text_is_404(server, http):
    response = http.get(f"{server.url}/orders/dev/main/nothing.txt")
    assert response.status_code == 404
    assert "nothing.txt" in response.json()["message"]


@pytest.mark.parametrize("path", ["../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "a/../../x"])
def test_resource_paths_never_leave_the_repository(server, http, path):
    response = http.get(f"{server.url}/orders/dev/main/{path}")
    assert response.status_code in (400, 404)
    assert "root:" not in response.text


def test_committed_symlink_is_not_served(repo, serve, http):
    (repo.path / "passwd").symlink_to("/etc/passwd")
    repo.commit({"application.yml": "a: 1\n"})
    response = http.get(f"{serve(repo.path).url}/app/default/main/passwd")
    assert response.status_code == 404
    assert "root:" not in response.text


def test_etag_and_if_none_match(server, http):
    first = http.get(f"{server.url}/orders/prod")
    etag = first.headers["ETag"]
    again = http.get(f"{server.url}/orders/prod", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert http.get(f"{server.url}/orders/dev", headers={"If-None-Match": etag}).status_code == 200


def test_etag_follows_content_not_commit(server, repo, http):
    etag = http.get(f"{server.url}/orders/prod").headers["ETag"]
    repo.commit({"payments.yml": "x: 1\n"})
    assert http.get(f"{server.url}/orders/prod").headers["ETag"] == etag
    repo.commit({"orders-prod.yml": "db:\n  host: other\n"})
    assert http.get(f"{server.url}/orders/prod").headers["ETag"] != etag


def test_health(server, http):
    response = http.get(f"{server.url}/health")
    assert response.status_code == 200
    assert response.json()["status"] == "UP"


def test_unknown_route_and_method_get_json_errors(server, http):
    response = http.post(f"{server.url}/orders/prod")
    assert response.status_code == 405
    assert response.json()["status"] == 405
    response = http.get(f"{server.url}/orders.yml")
    assert response.status_code == 404
    assert response.json()["error"] == "Not Found"
