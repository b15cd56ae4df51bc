"""Long-poll watch: a commit wakes the watchers of the environments it changes, and only those."""

import hashlib
import hmac
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.helpers import wait_for

FILES = {"application.yml": "shared: 1\n", "orders.yml": "limit: 1\n", "payments.yml": "fee: 1\n"}


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=32) as executor:
        yield executor


def etag_of(url):
    return requests.get(url, timeout=5).headers["ETag"]


def watch(url, etag, wait=30):
    return requests.get(f"{url}?wait={wait}", headers={"If-None-Match": etag}, timeout=wait + 10)


def waiting(server, count=1):
    hub = server.app.extensions["config_server"].hub
    wait_for(lambda: hub.watchers() >= count, what=f"{count} watcher(s) to wait")


def test_commit_wakes_the_watcher_with_the_new_environment(repo, serve, pool):
    repo.commit(FILES)
    server = serve(repo.path)
    url = f"{server.url}/orders/default"
    etag = etag_of(url)
    future = pool.submit(watch, url, etag)
    waiting(server)
    sha = repo.commit({"orders.yml": "limit: 2\n"})
    response = future.result(timeout=20)
    assert response.status_code == 200
    assert response.headers["ETag"] != etag
    body = response.json()
    assert body["version"] == sha
    assert body["propertySources"][0]["source"] == {"limit": 2}


def test_wait_ends_with_304(repo, serve):
    repo.commit(FILES)
    server = serve(repo.path)
    url = f"{server.url}/orders/default"
    etag = etag_of(url)
    response = watch(url, etag, wait=0.3)
    assert response.status_code == 304
    assert response.headers["ETag"] == etag


def test_stale_etag_answers_at_once(repo, serve):
    repo.commit(FILES)
    server = serve(repo.path)
    response = watch(f"{server.url}/orders/default", '"stale"', wait=30)
    assert response.status_code == 200


def test_commit_to_another_application_does_not_wake(repo, serve, pool):
    repo.commit(FILES)
    server = serve(repo.path)
    hub = server.app.extensions["config_server"].hub
    url = f"{server.url}/orders/default"
    etag = etag_of(url)
    future = pool.submit(watch, url, etag, 3)
    waiting(server)
    checks = hub.checks
    repo.commit({"payments.yml": "fee: 2\n"})
    wait_for(lambda: hub.checks > checks, what="the hub to check the commit")
    assert future.result(timeout=20).status_code == 304


def test_one_resolution_fans_out_to_every_waiter(repo, serve, pool):
    repo.commit(FILES)
    server = serve(repo.path)
    cache = server.app.extensions["config_server"].service.cache
    url = f"{server.url}/orders/default"
    etag = etag_of(url)
    futures = [pool.submit(watch, url, etag) for _ in range(20)]
    waiting(server, 20)
    misses = cache.stats()["misses"]
    repo.commit({"orders.yml": "limit: 3\n"})
    responses = [f.result(timeout=20) for f in futures]
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["propertySources"][0]["source"]["limit"] for r in responses} == {3}
    assert cache.stats()["misses"] == misses + 1


def test_watcher_waits_through_a_broken_commit(repo, serve, pool):
    repo.commit(FILES)
    server = serve(repo.path)
    hub = server.app.extensions["config_server"].hub
    url = f"{server.url}/orders/default"
    etag = etag_of(url)
    future = pool.submit(watch, url, etag)
    waiting(server)
    checks = hub.checks
    repo.commit({"orders.yml": "limit: [\n"})
    wait_for(lambda: hub.checks > checks, what="the hub to check the broken commit")
    held = requests.get(url, timeout=5)
    assert held.status_code == 200 and held.headers["X-Config-Held-Back"] == repo.head()
    assert held.headers["ETag"] == etag
    assert not future.done()
    repo.commit({"orders.yml": "limit: 4\n"})
    response = future.result(timeout=20)
    assert response.status_code == 200
    assert response.json()["propertySources"][0]["source"] == {"limit": 4}


def test_plain_folder_changes_wake_watchers(tmp_path, serve, pool):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "orders.yml").write_text("limit: 1\n")
    server = serve(folder)
    url = f"{server.url}/orders/default"
    future = pool.submit(watch, url, etag_of(url))
    waiting(server)
    (folder / "orders.yml").write_text("limit: 5\n")
    response = future.result(timeout=20)
    assert response.json()["propertySources"][0]["source"] == {"limit": 5}


@pytest.mark.parametrize("wait", ["abc", "-1", "nan"])
def test_bad_wait_is_400(repo, serve, wait):
    repo.commit(FILES)
    server = serve(repo.path)
    response = requests.get(f"{server.url}/orders/default?wait={wait}", headers={"If-None-Match": '"x"'})
    assert response.status_code == 400


# -- webhooks --------------------------------------------------------------------------------

SECRET = "hook-secret"


def github_delivery(payload: dict, secret: str = SECRET):
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": signature, "Content-Type": "application/json"}
    return body, headers


def push_payload(*files):
    return {"ref": "refs/heads/main", "commits": [{"added": [], "modified": list(files), "removed": []}]}


def test_signed_webhook_propagates_a_remote_push_to_watchers(repo, git_daemon, serve, pool):
    repo.commit(FILES)
    url = git_daemon(repo)
    server = serve(url, refresh_interval=0, webhook_secret=SECRET, watch=False)
    env_url = f"{server.url}/orders/default"
    future = pool.submit(watch, env_url, etag_of(env_url))
    waiting(server)
    sha = repo.commit({"orders.yml": "limit: 9\n"})
    repo.git("push", "--quiet", "origin", "main")
    body, headers = github_delivery(push_payload("orders.yml"))
    response = requests.post(f"{server.url}/monitor", data=body, headers=headers, timeout=10)
    assert response.status_code == 200
    assert "orders" in response.json()
    result = future.result(timeout=20)
    assert result.status_code == 200
    assert result.json()["version"] == sha


@pytest.mark.parametrize("secret", ["wrong", ""])
def test_badly_signed_github_webhook_is_401(repo, serve, secret):
    repo.commit(FILES)
    server = serve(repo.path, webhook_secret=SECRET)
    body, headers = github_delivery(push_payload("orders.yml"), secret or "x")
    if not secret:
        del headers["X-Hub-Signature-256"]
    response = requests.post(f"{server.url}/monitor", data=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["status"] == 401
    assert "WWW-Authenticate" in response.headers


def test_gitlab_gitea_bitbucket_and_form_deliveries(repo, serve):
    repo.commit(FILES)
    server = serve(repo.path, webhook_secret=SECRET)
    monitor = f"{server.url}/monitor"
    body = json.dumps(push_payload("payments-prod.yml")).encode()
    gitlab = requests.post(
        monitor, data=body, headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET}
    )
    assert gitlab.status_code == 200 and "payments" in gitlab.json()
    assert (
        requests.post(
            monitor, data=body, headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"}
        ).status_code
        == 401
    )
    gitea_sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    gitea = requests.post(
        monitor, data=body, headers={"X-Gitea-Event": "push", "X-Gitea-Signature": gitea_sig}
    )
    assert gitea.status_code == 200 and "payments" in gitea.json()
    bitbucket = requests.post(
        monitor,
        data=b"{}",
        headers={
            "X-Event-Key": "repo:push",
            "X-Hub-Signature": "sha256=" + hmac.new(SECRET.encode(), b"{}", hashlib.sha256).hexdigest(),
        },
    )
    assert bitbucket.json() == ["*"]
    form = b"path=application-prod.yml"
    form_sig = "sha256=" + hmac.new(SECRET.encode(), form, hashlib.sha256).hexdigest()
    response = requests.post(
        monitor,
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Hub-Signature-256": form_sig},
    )
    assert response.json() == ["*"]


def test_open_monitor_accepts_a_plain_form(repo, serve):
    repo.commit(FILES)
    server = serve(repo.path)
    response = requests.post(f"{server.url}/monitor", data={"path": "orders-dev.yml"})
    assert response.status_code == 200
    assert "orders" in response.json()


def test_oversized_webhook_is_413(repo, serve):
    repo.commit(FILES)
    server = serve(repo.path)
    response = requests.post(f"{server.url}/monitor", data=b"x" * (2 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json()["status"] == 413


def test_changed_files_name_the_applications():
    from config_server.delivery.webhooks import applications_for

    assert applications_for(["orders-prod.yml", "payments.properties"]) == [
        "orders",
        "orders-prod",
        "payments",
    ]
    assert applications_for(["application-dev.yml"]) == ["*"]
    assert applications_for(["templates/nginx.conf"]) == ["*"]
    assert applications_for(None) == ["*"]


def test_undecryptable_value_is_not_delivered_to_watchers(repo, serve, pool):
    from tests.helpers import SPRING_VECTOR

    repo.commit({**FILES, "orders.yml": f"password: '{{cipher}}{SPRING_VECTOR}'\n"})
    server = serve(repo.path, encrypt_key="foo")
    hub = server.app.extensions["config_server"].hub
    url = f"{server.url}/orders/default"
    etag = etag_of(url)
    future = pool.submit(watch, url, etag)
    waiting(server)
    checks = hub.checks
    repo.commit({"orders.yml": "password: '{cipher}00ff00ff00ff00ff00ff00ff00ff00ff00ff'\n"})
    wait_for(lambda: hub.checks > checks, what="the hub to check the bad ciphertext")
    plain = requests.get(url, timeout=5)  # change safety: the last version that decrypts, held back
    assert plain.headers["X-Config-Held-Back"] == repo.head() and plain.headers["ETag"] == etag
    assert plain.json()["propertySources"][0]["source"] == {"password": "SUPER SECRET"}
    assert not future.done()
    # A watcher joining now, holding the good version, is not answered with the broken one either.
    assert watch(url, etag, wait=0.5).status_code == 304
    repo.commit({"orders.yml": f"password: '{{cipher}}{SPRING_VECTOR}'\nlimit: 2\n"})
    response = future.result(timeout=20)
    assert response.status_code == 200
    assert response.json()["propertySources"][0]["source"] == {"password": "SUPER SECRET", "limit": 2}


def test_long_poll_never_answers_older_than_the_newest_resolved(repo, serve, pool):
    repo.commit(FILES)
    # No watchdog and no safety poll within the test: only requests resolve the environment.
    server = serve(repo.path, watch=False, poll_interval=600)
    url = f"{server.url}/orders/default"
    old = etag_of(url)
    held = pool.submit(watch, url, old, 10)
    waiting(server)
    repo.commit({"orders.yml": "limit: 2\n"})
    new = etag_of(url)  # the server has now resolved the new version
    assert new != old
    response = watch(url, new, wait=1)
    assert response.status_code == 304 and response.headers["ETag"] == new
    # The joining request saw the new version first: the older waiter gets it too, at once.
    answer = held.result(timeout=5)
    assert answer.status_code == 200 and answer.headers["ETag"] == new


def test_an_idle_check_resolves_nothing(repo, serve, pool):
    """Issue 24 item 5: a check with no commit costs no resolution per slot; a commit still wakes."""
    repo.commit(FILES)
    server = serve(repo.path)
    state = server.app.extensions["config_server"]
    urls = [f"{server.url}/orders/default,p{i}" for i in range(5)]
    etag = etag_of(urls[0])
    futures = [pool.submit(watch, url, etag, 10) for url in urls]
    waiting(server, len(urls))
    cache = state.service.cache
    before = cache.hits + cache.misses
    for _ in range(3):
        state.hub.check()
    assert cache.hits + cache.misses == before  # nothing resolved: the label did not move
    sha = repo.commit({"orders.yml": "limit: 2\n"})
    for future in futures:
        response = future.result(timeout=20)
        assert response.status_code == 200
        assert response.json()["version"] == sha


def test_a_commit_resolves_no_watched_environment_whose_files_it_left_alone(repo, serve, pool):
    """Issue 24: a commit to `orders.yml` moves the label of every slot; each watched spelling of
    `payments` used to be resolved again (a YAML parse and a validation each, 64 per attacking
    caller and worker, before the legitimate watcher's slot had its turn). Now a slot whose
    applications' files the commits did not change is not resolved; a commit to its files still
    wakes it."""
    repo.commit(FILES)
    server = serve(repo.path)
    state = server.app.extensions["config_server"]
    resolved: list[str] = []
    environment = state.service.environment

    def recording(asked, *args, **kwargs):
        resolved.append(asked.application)
        return environment(asked, *args, **kwargs)

    state.service.environment = recording
    spellings = [f"{server.url}/payments/default,p{i}" for i in range(5)]
    payments_etag = etag_of(spellings[0])
    payments = [pool.submit(watch, url, payments_etag, 20) for url in spellings]
    orders = pool.submit(watch, f"{server.url}/orders/default", etag_of(f"{server.url}/orders/default"), 20)
    waiting(server, len(spellings) + 1)
    resolved.clear()
    repo.commit({"orders.yml": "limit: 2\n"})
    assert orders.result(timeout=20).json()["propertySources"][0]["source"] == {"limit": 2}
    assert "payments" not in resolved
    assert not any(future.done() for future in payments)
    sha = repo.commit({"payments.yml": "fee: 2\n"})
    for future in payments:
        response = future.result(timeout=20)
        assert response.status_code == 200 and response.json()["version"] == sha
