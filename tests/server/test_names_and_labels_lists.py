"""Spring's lists: several application names (`orders,shared`) and several labels (`main,release-1`)."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from config_server.names import MAX_LIST_ITEMS
from tests.helpers import wait_for, wsgi_layers


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def paths(env):
    return [ps["name"].split("/repo/", 1)[1] for ps in env["propertySources"]]


def merged(env):
    out = {}
    for ps in reversed(env["propertySources"]):
        out.update(ps["source"])
    return out


def watch(url, etag, wait=30):
    return requests.get(f"{url}?wait={wait}", headers={"If-None-Match": etag}, timeout=wait + 10)


def waiting(server, count=1):
    hub = server.app.extensions["config_server"].hub
    wait_for(lambda: hub.watchers() >= count, what=f"{count} watcher(s) to wait")


# -- several application names --------------------------------------------------------------------

#: Every file `/orders,shared/dev,prod` may read, at the root and in the search path `extra`.
PRECEDENCE = [
    "extra/shared-prod.yml",
    "extra/orders-prod.yml",
    "shared-prod.yml",
    "orders-prod.yml",
    "extra/application-prod.yml",
    "application-prod.yml",
    "extra/shared-dev.yml",
    "extra/orders-dev.yml",
    "shared-dev.yml",
    "orders-dev.yml",
    "extra/application-dev.yml",
    "application-dev.yml",
    "extra/shared.yml",
    "extra/orders.yml",
    "shared.yml",
    "orders.yml",
    "extra/application.yml",
    "application.yml",
]


def test_several_names_with_two_profiles_and_a_search_path_in_precedence_order(repo, serve, http):
    repo.commit({path: f"who: {path}\n{path.replace('/', '_')}: 1\n" for path in PRECEDENCE})
    server = serve(repo.path, search_paths=["extra"])
    response = http.get(f"{server.url}/orders,shared/dev,prod")
    assert response.status_code == 200, response.text
    env = response.json()
    assert paths(env) == PRECEDENCE
    assert env["name"] == "orders,shared"
    assert env["profiles"] == ["dev", "prod"]
    assert merged(env)["who"] == "extra/shared-prod.yml"
    # The later name wins: swapping the names swaps them within every tier.
    swapped = paths(http.get(f"{server.url}/shared,orders/dev,prod").json())
    assert swapped[:4] == [
        "extra/orders-prod.yml",
        "extra/shared-prod.yml",
        "orders-prod.yml",
        "shared-prod.yml",
    ]


def test_a_later_name_beats_an_earlier_one_but_profile_files_beat_both(repo, serve, http):
    repo.commit(
        {
            "application.yml": "a: app\nb: app\nc: app\n",
            "orders.yml": "a: orders\nb: orders\n",
            "shared.yml": "a: shared\n",
            "orders-prod.yml": "c: orders-prod\n",
        }
    )
    server = serve(repo.path)
    env = http.get(f"{server.url}/orders,shared/prod").json()
    assert merged(env) == {"a": "shared", "b": "orders", "c": "orders-prod"}
    assert merged(http.get(f"{server.url}/shared,orders/prod").json())["a"] == "orders"
    # `application` in the list is the shared files, read once, below every other name.
    assert paths(http.get(f"{server.url}/shared,application/default").json()) == [
        "shared.yml",
        "application.yml",
    ]


def test_application_placeholder_in_search_paths_expands_to_each_name(repo, serve, http):
    repo.commit({"svc/orders/orders.yml": "x: orders\n", "svc/shared/shared.yml": "x: shared\n"})
    server = serve(repo.path, search_paths=["svc/{application}"])
    env = http.get(f"{server.url}/orders,shared/default").json()
    assert paths(env) == ["svc/shared/shared.yml", "svc/orders/orders.yml"]


def test_rendered_documents_and_plain_text_for_several_names(repo, serve, http):
    repo.commit(
        {
            "application.yml": "host: db\nport: 1\n",
            "orders.yml": "port: 2\nname: orders\n",
            "shared-prod.yml": "port: 3\n",
            "nginx.conf": "upstream ${host}:${port} ${name}\n",
        }
    )
    server = serve(repo.path)
    assert http.get(f"{server.url}/orders,shared-prod.yml").text == "host: db\nname: orders\nport: 3\n"
    assert http.get(f"{server.url}/main/orders,shared-prod.properties").text == (
        "host: db\nname: orders\nport: 3\n"
    )
    assert http.get(f"{server.url}/orders,shared-prod.json").json() == {
        "host": "db",
        "name": "orders",
        "port": 3,
    }
    assert http.get(f"{server.url}/orders,shared/prod/main/nginx.conf").text == "upstream db:3 orders\n"


def test_the_etag_covers_every_name(repo, serve, http):
    repo.commit({"orders.yml": "a: 1\n", "shared.yml": "b: 1\n"})
    server = serve(repo.path)
    url = f"{server.url}/orders,shared/default"
    first = http.get(url).headers["ETag"]
    assert http.get(url, headers={"If-None-Match": first}).status_code == 304
    repo.commit({"shared.yml": "b: 2\n"})
    assert http.get(url).headers["ETag"] != first
    assert http.get(url, headers={"If-None-Match": first}).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/orders,/default",
        "/,orders/default",
        "/orders,,shared/default",
        "/orders,..x/default",
        "/orders,a%20b/default",
    ],
)
def test_a_malformed_name_in_the_list_is_400(repo, serve, http, path):
    repo.commit({"orders.yml": "a: 1\n"})
    response = http.get(serve(repo.path).url + path)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "Bad Request"


def test_too_many_names_or_labels_are_400(repo, serve, http):
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    many = ",".join(f"n{i}" for i in range(MAX_LIST_ITEMS + 1))
    assert http.get(f"{server.url}/{many}/default").status_code == 400
    assert http.get(f"{server.url}/orders/default/{many}").status_code == 400
    assert http.get(f"{server.url}/{','.join(['orders'] * MAX_LIST_ITEMS)}/default").status_code == 200


def test_a_long_poll_on_several_names_wakes_on_either(repo, serve, pool):
    repo.commit({"orders.yml": "a: 1\n", "shared.yml": "b: 1\n"})
    server = serve(repo.path)
    url = f"{server.url}/orders,shared/default"
    future = pool.submit(watch, url, requests.get(url, timeout=5).headers["ETag"])
    waiting(server)
    sha = repo.commit({"shared.yml": "b: 2\n"})
    response = future.result(timeout=20)
    assert response.status_code == 200
    assert response.json()["version"] == sha
    assert merged(response.json()) == {"a": 1, "b": 2}


def test_a_webhook_naming_one_of_the_names_wakes_the_list_watcher(repo, serve, pool):
    """The hub checks only the named applications; `orders,shared` is one of `shared`'s."""
    repo.commit({"orders.yml": "a: 1\n", "shared.yml": "b: 1\n"})
    server = serve(repo.path, watch=False, poll_interval=300)
    url = f"{server.url}/orders,shared/default"
    future = pool.submit(watch, url, requests.get(url, timeout=5).headers["ETag"])
    waiting(server)
    repo.commit({"shared.yml": "b: 3\n"})
    assert requests.post(f"{server.url}/monitor", data={"path": "shared.yml"}, timeout=10).json() == [
        "shared"
    ]
    response = future.result(timeout=20)
    assert response.status_code == 200
    assert merged(response.json())["b"] == 3


# -- several labels --------------------------------------------------------------------------------


@pytest.fixture
def labelled(repo):
    """main, an annotated tag `v1` on its first commit, and a branch `release/1` with its own files."""
    first = repo.commit({"application.yml": "v: one\nonly: main\n", "nginx.conf": "main ${v}\n"})
    repo.git("tag", "-a", "v1", "-m", "release")
    repo.git("checkout", "--quiet", "-b", "release/1")
    release = repo.commit(
        {"application.yml": "v: release\n", "orders.yml": "o: release\n", "nginx.conf": "rel ${v}\n"}
    )
    repo.git("checkout", "--quiet", "main")
    main = repo.commit({"application.yml": "v: two\nonly: main\n"})
    return {"first": first, "release": release, "main": main}


def test_each_label_resolves_on_its_own_and_a_later_label_wins(labelled, repo, serve, http):
    server = serve(repo.path)
    response = http.get(f"{server.url}/orders/default/main,release(_)1")
    assert response.status_code == 200, response.text
    env = response.json()
    assert env["label"] == "main,release(_)1"
    assert env["version"] == f"{labelled['main']},{labelled['release']}"
    assert paths(env) == ["orders.yml", "application.yml", "application.yml"]
    assert [ps["source"] for ps in env["propertySources"]] == [
        {"o": "release"},
        {"v": "release"},
        {"v": "two", "only": "main"},
    ]
    reverse = http.get(f"{server.url}/orders/default/release(_)1,main").json()
    assert reverse["version"] == f"{labelled['release']},{labelled['main']}"
    assert merged(reverse) == {"o": "release", "v": "two", "only": "main"}


def test_a_tag_in_a_label_list_reports_its_commit(labelled, repo, serve, http):
    server = serve(repo.path)
    env = http.get(f"{server.url}/orders/default/v1,main").json()
    assert env["version"] == f"{labelled['first']},{labelled['main']}"
    assert merged(env)["v"] == "two"
    assert merged(http.get(f"{server.url}/orders/default/main,v1").json())["v"] == "one"
    full = http.get(f"{server.url}/orders/default/{labelled['first']},release%2F1").json()
    assert full["version"] == f"{labelled['first']},{labelled['release']}"


def test_a_missing_label_in_the_list_is_404_naming_it(labelled, repo, serve, http):
    server = serve(repo.path)
    for path in (
        "/orders/default/main,nope",
        "/main,nope/orders-default.yml",
        "/orders/default/main,nope/nginx.conf",
    ):
        response = http.get(server.url + path)
        assert response.status_code == 404, path
        assert "'nope'" in response.json()["message"], path
    for path in ("/orders/default/main,(_)x", "/orders/default/main,", "/orders/default/main,,v1"):
        assert http.get(server.url + path).status_code == 400, path


def test_rendered_documents_and_files_at_a_label_list(labelled, repo, serve, http):
    server = serve(repo.path)
    assert (
        http.get(f"{server.url}/main,release(_)1/orders-default.yml").text
        == "o: release\nonly: main\nv: release\n"
    )
    assert http.get(f"{server.url}/release(_)1,main/orders-default.properties").text == (
        "o: release\nonly: main\nv: two\n"
    )
    # A plain-text file comes from the later label first, placeholders from the whole result.
    assert http.get(f"{server.url}/orders/default/main,release(_)1/nginx.conf").text == "rel release\n"
    assert http.get(f"{server.url}/orders/default/release(_)1,main/nginx.conf").text == "main two\n"
    assert http.get(f"{server.url}/orders/default/v1,main/orders.yml").status_code == 404


def test_a_long_poll_on_a_label_list_wakes_when_any_label_moves(labelled, repo, serve, pool):
    server = serve(repo.path)
    url = f"{server.url}/orders/default/main,release(_)1"
    etag = requests.get(url, timeout=5).headers["ETag"]
    future = pool.submit(watch, url, etag)
    waiting(server)
    repo.git("checkout", "--quiet", "release/1")
    release = repo.commit({"orders.yml": "o: release-2\n"})
    repo.git("checkout", "--quiet", "main")
    response = future.result(timeout=20)
    assert response.status_code == 200
    assert response.json()["version"] == f"{labelled['main']},{release}"
    assert response.json()["label"] == "main,release(_)1"
    etag = response.headers["ETag"]
    future = pool.submit(watch, url, etag)
    waiting(server)
    main = repo.commit({"application.yml": "v: three\nonly: main\n"})
    response = future.result(timeout=20)
    assert response.status_code == 200
    assert response.json()["version"] == f"{main},{release}"


@pytest.mark.parametrize(
    "path",
    ["/orders,shared/prod", "/orders/default/main,release(_)1", "/orders,shared/dev,prod/release(_)1,v1"],
)
def test_fast_answers_for_lists_match_the_flask_view(labelled, repo, serve, http, path):
    server = serve(repo.path)
    assert "FastEnvironmentPath" in wsgi_layers(server.app)
    fast = http.get(server.url + path)
    slow = http.get(server.url + path + "?via=flask")  # a query string goes through Flask
    assert fast.status_code == slow.status_code == 200
    assert fast.content == slow.content
    for header in ("Content-Type", "ETag", "Cache-Control", "Content-Length"):
        assert fast.headers[header] == slow.headers[header], header
    missing = http.get(server.url + "/orders/default/main,nope")
    assert missing.status_code == 404 and missing.json()["path"] == "/orders/default/main,nope"


def test_gevent_worker_answers_a_list_long_poll_directly_with_the_flask_body(repo, server_process):
    repo.commit({"orders.yml": "a: 1\n", "shared.yml": "b: 1\n"})
    repo.git("branch", "release-1")
    server = server_process("--repo", str(repo.path), "--workers", "1")
    close = {"Connection": "close"}
    server.wait_ready(lambda: requests.get(f"{server.url}/health", timeout=1, headers=close).ok)
    url = f"{server.url}/orders,shared/default/release-1,main"
    etag = requests.get(url, timeout=5, headers=close).headers["ETag"]
    with ThreadPoolExecutor(max_workers=1) as executor:
        future = executor.submit(watch, url, etag)
        wait_for(
            lambda: (
                requests.get(f"{server.url}/health", timeout=5, headers=close).json()["details"]["watchers"]
                == 1
            ),
            what="the long poll to park",
        )
        main = repo.commit({"shared.yml": "b: 2\n"})
        answer = future.result(timeout=20)
    assert answer.status_code == 200 and "Server" not in answer.headers  # written by the hub
    assert answer.json()["version"] == f"{repo.git('rev-parse', 'release-1')},{main}"
    plain = requests.get(url + "?via=flask", timeout=5, headers=close)
    assert answer.content == plain.content
    assert answer.headers["ETag"] == plain.headers["ETag"]
