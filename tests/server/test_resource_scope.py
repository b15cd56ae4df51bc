"""Plain-text resources obey token scopes for the file actually served, not only for the URL.

A configuration file (`{app}.{ext}`, `{app}-{profile}.{ext}` for yml, yaml, properties, json) is
served as plain text only to a caller that the Environment endpoints would give it to: one allowed
to read at least one (application, profile) the name denotes. Templates keep the URL's rule.
"""

import json

import pytest

from config_server.content.file_names import file_readings
from config_server.http.auth import hash_token

TOKENS = {name: f"token-of-{name}-{'y' * 20}" for name in ("orders", "orders-all", "api", "prod-only")}

AUTH = f"""
clients:
  - name: orders-service
    tokens: [{hash_token(TOKENS["orders"])}]
    applications: [orders]
    profiles: [default]
  - name: orders-everywhere
    tokens: [{hash_token(TOKENS["orders-all"])}]
    applications: [orders]
  - name: orders-api
    tokens: [{hash_token(TOKENS["api"])}]
    applications: [orders-api]
    profiles: [default]
  - name: prod-reader
    tokens: [{hash_token(TOKENS["prod-only"])}]
    applications: ["*"]
    profiles: [prod]
"""

FILES = {
    "application.yml": "shared: 1\n",
    "application-prod.yml": "shared: prod\n",
    "orders.yml": "a: 1\n",
    "orders-prod.yml": "a: prod\n",
    "orders-api.yml": "api: 1\n",
    "payments.yml": "p: 1\n",
    "payments-prod.yml": "secret: payments-prod\n",
    "sub/payments-prod.json": '{"secret": "deep"}\n',
    "nginx.conf": "server ${a};\n",
}


@pytest.fixture
def scoped(repo, serve, tmp_path):
    repo.commit(FILES)
    auth_file = tmp_path / "auth.yml"
    auth_file.write_text(AUTH)
    audit = tmp_path / "audit.log"
    server = serve(repo.path, auth_file=str(auth_file), audit_log=str(audit))
    server.audit = audit
    return server


def get(http, server, path, who):
    return http.get(server.url + path, headers={"Authorization": f"Bearer {TOKENS[who]}"})


@pytest.mark.parametrize(
    ("who", "path", "status"),
    [
        ("orders", "/orders/default/main/payments-prod.yml", 403),
        ("orders", "/orders/default/main/payments.yml", 403),
        ("orders", "/orders/default/main/orders-prod.yml", 403),
        ("orders", "/orders/default/main/application-prod.yml", 403),
        ("orders", "/orders/default/main/sub/payments-prod.json", 403),
        ("orders", "/orders/default/payments-prod.yml?useDefaultLabel", 403),
        ("orders", "/orders/default/main/orders.yml", 200),
        ("orders", "/orders/default/main/application.yml", 200),
        ("orders", "/orders/default/main/nginx.conf", 200),
        ("orders-all", "/orders/prod/main/orders-prod.yml", 200),
        ("orders-all", "/orders/prod/main/application-prod.yml", 200),
        ("orders-all", "/orders/prod/main/payments-prod.yml", 403),
        ("api", "/orders-api/default/main/orders-api.yml", 200),
        ("api", "/orders-api/default/main/orders.yml", 403),
        ("prod-only", "/payments/prod/main/payments-prod.yml", 200),
        ("prod-only", "/payments/prod/main/payments.yml", 200),
    ],
)
def test_plain_text_config_files_obey_the_token_scope_of_the_file_served(scoped, http, who, path, status):
    response = get(http, scoped, path, who)
    assert response.status_code == status, response.text
    if status == 403:
        body = response.json()
        client = {"orders": "orders-service", "orders-all": "orders-everywhere", "api": "orders-api"}[who]
        assert client in body["message"]
        assert "secret" not in response.text


def test_a_denied_plain_text_file_is_in_the_audit_log(scoped, http):
    assert get(http, scoped, "/orders/default/main/payments-prod.yml", "orders").status_code == 403
    scoped.app.extensions["config_server"].audit.flush()
    lines = [json.loads(line) for line in scoped.audit.read_text().splitlines()]
    denied = [line for line in lines if line["event"] == "denied"]
    assert denied and denied[-1]["client"] == "orders-service" and denied[-1]["status"] == 403
    assert denied[-1]["path"] == "/orders/default/main/payments-prod.yml"
    assert "payments" in denied[-1]["reason"]


def test_the_profile_variant_served_is_the_file_checked(scoped, http):
    # `orders.yml` asked with profile prod serves `orders-prod.yml`: allowed for a prod reader only.
    response = get(http, scoped, "/orders/prod/main/orders.yml", "orders-all")
    assert response.status_code == 200 and response.text == "a: prod\n"


@pytest.mark.parametrize(
    ("name", "readings"),
    [
        ("nginx.conf", None),
        ("application.yml", None),
        ("orders.yml", [("orders", ("dev",))]),
        ("orders-prod.json", [("orders-prod", ("dev",)), ("orders", ("prod",))]),
        ("application-prod.properties", [("application-prod", ("dev",)), ("svc", ("prod",))]),
        ("application-prod.yml", [("application-prod", ("dev",)), ("svc", ("prod",))]),
        (
            "a-b-c.yaml",
            [("a-b-c", ("dev",)), ("a", ("b-c",)), ("a-b", ("c",))],
        ),
    ],
)
def test_file_readings_lists_every_application_and_profile_a_name_denotes(name, readings):
    assert file_readings(name, ("svc",), ("dev",)) == readings


def test_a_shared_profile_file_denotes_every_requested_application():
    assert file_readings("application-prod.yml", ("a", "b"), ("dev",)) == [
        ("application-prod", ("dev",)),
        ("a", ("prod",)),
        ("b", ("prod",)),
    ]


def test_folders_named_after_applications_by_a_search_path_obey_the_scope(repo, serve, http, tmp_path):
    repo.commit(
        {
            "payments/application.yml": "secret: payments\n",
            "payments/page.txt": "payments page\n",
            "orders/application.yml": "mine: 1\n",
            "shared/page.txt": "shared page\n",
        }
    )
    auth_file = tmp_path / "auth.yml"
    auth_file.write_text(AUTH)
    server = serve(repo.path, auth_file=str(auth_file), search_paths=["{application}", "shared"])
    assert get(http, server, "/orders/default/main/payments/application.yml", "orders").status_code == 403
    assert get(http, server, "/orders/default/main/payments/page.txt", "orders").status_code == 403
    assert get(http, server, "/orders/default/main/orders/application.yml", "orders").text == "mine: 1\n"
    assert get(http, server, "/orders/default/main/page.txt", "orders").text == "shared page\n"
    assert get(http, server, "/payments/default/main/page.txt", "prod-only").status_code == 403
