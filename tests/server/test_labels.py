"""Labels: branches, tags, commits, defaults, slashes, and hostile names."""

import pytest

from tests.helpers import GitRepo


def value(http, url):
    response = http.get(url)
    assert response.status_code == 200, response.text
    env = response.json()
    return env["version"], env["propertySources"][0]["source"]["v"]


@pytest.fixture
def history(repo):
    first = repo.commit({"application.yml": "v: one\n"})
    repo.git("tag", "light")
    repo.git("tag", "-a", "annotated", "-m", "release")
    repo.git("checkout", "--quiet", "-b", "feature/x")
    feature = repo.commit({"application.yml": "v: feature\n"})
    repo.git("checkout", "--quiet", "main")
    second = repo.commit({"application.yml": "v: two\n"})
    return {"first": first, "second": second, "feature": feature}


def test_default_label_is_main(history, repo, serve, http):
    server = serve(repo.path)
    assert value(http, f"{server.url}/app/default") == (history["second"], "two")


def test_default_falls_back_to_master(tmp_path, serve, http):
    repo = GitRepo(tmp_path / "old", branch="master")
    sha = repo.commit({"application.yml": "v: master\n"})
    assert value(http, f"{serve(repo.path).url}/app/default") == (sha, "master")


def test_branch_tag_and_commits(history, repo, serve, http):
    url = serve(repo.path).url
    assert value(http, f"{url}/app/default/main") == (history["second"], "two")
    assert value(http, f"{url}/app/default/light") == (history["first"], "one")
    assert value(http, f"{url}/app/default/{history['first']}") == (history["first"], "one")
    assert value(http, f"{url}/app/default/{history['first'][:8]}") == (history["first"], "one")


def test_annotated_tag_reports_its_commit(history, repo, serve, http):
    url = serve(repo.path).url
    assert value(http, f"{url}/app/default/annotated") == (history["first"], "one")


def test_label_is_echoed_as_asked(history, repo, serve, http):
    url = serve(repo.path).url
    assert http.get(f"{url}/app/default/light").json()["label"] == "light"
    assert http.get(f"{url}/app/default/feature(_)x").json()["label"] == "feature(_)x"


def test_slash_in_label_written_as_underscore_alias(history, repo, serve, http):
    url = serve(repo.path).url
    assert value(http, f"{url}/app/default/feature(_)x") == (history["feature"], "feature")
    assert http.get(f"{url}/feature(_)x/app-default.yml").text == "v: feature\n"


def test_percent_encoded_slash_is_part_of_the_label(history, repo, serve, http):
    url = serve(repo.path).url
    assert value(http, f"{url}/app/default/feature%2Fx") == (history["feature"], "feature")
    assert http.get(f"{url}/feature%2fx/app-default.yml").text == "v: feature\n"


def test_new_commit_is_served_at_once(history, repo, serve, http):
    url = serve(repo.path).url
    assert value(http, f"{url}/app/default")[1] == "two"
    third = repo.commit({"application.yml": "v: three\n"})
    assert value(http, f"{url}/app/default") == (third, "three")


def test_unknown_label_is_404(history, repo, serve, http):
    response = http.get(f"{serve(repo.path).url}/app/default/nope")
    assert response.status_code == 404
    body = response.json()
    assert body["status"] == 404 and "nope" in body["message"]
    assert body["path"] == "/app/default/nope"


@pytest.mark.parametrize(
    "label",
    [
        "--upload-pack=touch",
        "-x",
        "HEAD~1",
        "main^",
        "main@{0}",
        "%2e%2e",
        "a..b",
        ":(_)x",
        "(_)main",
        "main.lock",
        "a%23b",
        "ma in",
    ],
)
def test_hostile_labels_are_400(history, repo, serve, http, label):
    response = http.get(f"{serve(repo.path).url}/app/default/{label}")
    assert response.status_code == 400, (label, response.status_code)
    assert response.json()["error"] == "Bad Request"


@pytest.mark.parametrize("app", ["..", "a#b", "(_)x", "-rf", "a" * 200, ".hidden"])
def test_malformed_application_names_are_400(history, repo, serve, http, app):
    response = http.get(f"{serve(repo.path).url}/{app}/default")
    assert response.status_code in (400, 404), app
    assert response.headers["Content-Type"] == "application/json"
