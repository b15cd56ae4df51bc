"""Resolution rules over a real git repository and a real HTTP server."""

import pytest

BASE = {
    "application.yml": "shared: app\nlevel: application\nlist: [a, b, c]\n",
    "application-prod.yml": "level: application-prod\nprodshared: yes\n",
    "application-dev.yml": "level: application-dev\n",
    "orders.yml": "level: orders\norders.size: 1\n",
    "orders-prod.yml": "level: orders-prod\nlist: [z]\n",
    "orders-dev.yml": "level: orders-dev\n",
}


def names(env):
    return [ps["name"].rsplit("/", 1)[1] for ps in env["propertySources"]]


def merged(env):
    out = {}
    for ps in reversed(env["propertySources"]):
        out.update(ps["source"])
    return out


@pytest.fixture
def server(repo, serve):
    repo.commit(BASE)
    return serve(repo.path)


def test_profile_files_beat_application_files(server, http):
    env = http.get(f"{server.url}/orders/prod").json()
    assert names(env) == [
        "orders-prod.yml",
        "application-prod.yml",
        "orders.yml",
        "application.yml",
    ]
    assert env["propertySources"][0]["source"]["level"] == "orders-prod"


def test_later_profile_wins(server, http):
    env = http.get(f"{server.url}/orders/dev,prod").json()
    assert names(env)[:4] == [
        "orders-prod.yml",
        "application-prod.yml",
        "orders-dev.yml",
        "application-dev.yml",
    ]
    assert env["profiles"] == ["dev", "prod"]
    env = http.get(f"{server.url}/orders/prod,dev").json()
    assert names(env)[0] == "orders-dev.yml"


def test_environment_json_shape(server, http, repo):
    response = http.get(f"{server.url}/orders/prod")
    assert response.headers["Content-Type"].startswith("application/json")
    env = response.json()
    assert env["name"] == "orders"
    assert env["label"] is None
    assert env["version"] == repo.head()
    assert env["state"] is None
    assert env["propertySources"][0]["name"] == f"{repo.path.resolve().as_uri()}/orders-prod.yml"
    assert env["propertySources"][2]["source"] == {"level": "orders", "orders.size": 1}


def test_no_profile_given_means_default(repo, serve, http):
    repo.commit({**BASE, "orders-default.yml": "level: orders-default\n"})
    server = serve(repo.path)
    env = http.get(f"{server.url}/orders/default").json()
    assert names(env) == ["orders-default.yml", "orders.yml", "application.yml"]


def test_unknown_application_gets_the_shared_files(server, http):
    response = http.get(f"{server.url}/nobody/prod")
    assert response.status_code == 200
    assert names(response.json()) == ["application-prod.yml", "application.yml"]


def test_application_reads_only_shared_files(server, http):
    env = http.get(f"{server.url}/application/prod").json()
    assert names(env) == ["application-prod.yml", "application.yml"]


def test_properties_beats_yml_beats_yaml(repo, serve, http):
    repo.commit(
        {
            "svc.properties": "k=properties\n",
            "svc.yml": "k: yml\n",
            "svc.yaml": "k: yaml\n",
        }
    )
    env = http.get(f"{serve(repo.path).url}/svc/default").json()
    assert names(env) == ["svc.properties", "svc.yml", "svc.yaml"]
    assert env["propertySources"][0]["source"] == {"k": "properties"}


def test_multi_document_profile_activation_and_order(repo, serve, http):
    repo.commit(
        {
            "application.yml": "x: app\n",
            "svc.yml": (
                "x: plain\n---\nspring.config.activate.on-profile: prod\nx: prod\n"
                "---\nspring:\n  profiles: dev | test\nx: devtest\n"
                "---\nspring.config.activate.on-profile: '!prod'\nx: notprod\n"
            ),
        }
    )
    server = serve(repo.path)
    env = http.get(f"{server.url}/svc/prod").json()
    assert names(env) == ["svc.yml (document #1)", "svc.yml (document #0)", "application.yml"]
    env = http.get(f"{server.url}/svc/prod,test").json()
    assert names(env)[:3] == [
        "svc.yml (document #2)",
        "svc.yml (document #1)",
        "svc.yml (document #0)",
    ]
    env = http.get(f"{server.url}/svc/dev").json()
    assert [ps["source"]["x"] for ps in env["propertySources"]] == [
        "devtest",
        "notprod",
        "plain",
        "app",
    ]


def test_profile_file_may_hold_activated_documents(repo, serve, http):
    repo.commit({"svc-prod.yml": "a: 1\n---\nspring.config.activate.on-profile: eu\na: 2\n"})
    server = serve(repo.path)
    assert merged(http.get(f"{server.url}/svc/prod").json())["a"] == 1
    assert merged(http.get(f"{server.url}/svc/prod,eu").json())["a"] == 2


def test_search_paths_with_placeholders_and_globs(repo, serve, http):
    repo.commit(
        {
            "application.yml": "where: root\n",
            "shared/application.yml": "where: shared\n",
            "services/orders/orders.yml": "where: orders-folder\n",
            "services/orders/orders-prod.yml": "where: orders-folder-prod\n",
            "envs/prod/application.yml": "where: envs-prod\n",
            "teams/a/orders.yml": "team: a\n",
        }
    )
    server = serve(repo.path, search_paths=["shared", "services/{application}", "envs/{profile}", "teams/*"])
    env = http.get(f"{server.url}/orders/prod").json()
    assert names(env) == [
        "orders-prod.yml",
        "orders.yml",
        "orders.yml",
        "application.yml",
        "application.yml",
        "application.yml",
    ]
    paths = [ps["name"].split("/repo/", 1)[1] for ps in env["propertySources"]]
    assert paths == [
        "services/orders/orders-prod.yml",
        "teams/a/orders.yml",
        "services/orders/orders.yml",
        "envs/prod/application.yml",
        "shared/application.yml",
        "application.yml",
    ]


def test_label_placeholder_in_search_path(repo, serve, http):
    repo.commit({"application.yml": "x: root\n", "main/application.yml": "x: main-folder\n"})
    repo.git("branch", "other")
    server = serve(repo.path, search_paths=["{label}"])
    assert merged(http.get(f"{server.url}/a/default").json())["x"] == "main-folder"
    assert merged(http.get(f"{server.url}/a/default/main").json())["x"] == "main-folder"
    other = http.get(f"{server.url}/a/default/other").json()
    assert merged(other)["x"] == "root"
    assert names(other) == ["application.yml"]
