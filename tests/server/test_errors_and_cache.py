"""Broken files answer their own requests with clear errors; repeat requests come from the cache.

A broken environment with no good version to fall back to is a 422 naming the file and line
(tests/server/test_change_safety.py covers the held-back answers).
"""


def test_malformed_yaml_is_422_naming_file_line_and_column(repo, serve, http):
    repo.commit(
        {
            "application.yml": "shared: 1\n",
            "orders.yml": "a: 1\nb: [oops\nc: 2\n",
            "payments.yml": "ok: true\n",
        }
    )
    server = serve(repo.path)
    response = http.get(f"{server.url}/orders/default")
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"timestamp", "status", "error", "message", "path"}
    assert body["message"].startswith("orders.yml:3: ") and "line 3, column" in body["message"]
    assert "Traceback" not in response.text
    assert http.get(f"{server.url}/payments/default").status_code == 200
    assert http.get(f"{server.url}/orders-default.yml").status_code == 422


def test_duplicate_keys_are_422(repo, serve, http):
    repo.commit({"svc.yml": "a: 1\nb: 2\na: 3\n"})
    response = http.get(f"{serve(repo.path).url}/svc/default")
    assert response.status_code == 422
    assert "duplicate key 'a'" in response.json()["message"]


def test_fixing_the_file_serves_again(repo, serve, http):
    repo.commit({"svc.yml": "a: [\n"})
    server = serve(repo.path)
    assert http.get(f"{server.url}/svc/default").status_code == 422
    repo.commit({"svc.yml": "a: 1\n"})
    assert http.get(f"{server.url}/svc/default").status_code == 200


def test_broken_file_at_one_label_does_not_affect_another(repo, serve, http):
    repo.commit({"svc.yml": "a: 1\n"})
    repo.git("tag", "good")
    repo.commit({"svc.yml": "a: : :\n  - x\n"})
    server = serve(repo.path)
    held = http.get(f"{server.url}/svc/default")
    assert held.status_code == 200 and held.headers["X-Config-Held-Back"] == repo.head()
    assert http.get(f"{server.url}/svc/default/good").json()["propertySources"][0]["source"] == {"a": 1}


def test_repeat_request_is_served_from_cache(repo, serve, http):
    repo.commit({"application.yml": "a: 1\n", "svc-prod.yml": "b: 2\n"})
    server = serve(repo.path)
    cache = server.app.extensions["config_server"].service.cache
    first = http.get(f"{server.url}/svc/prod").content
    misses = cache.stats()["misses"]
    for _ in range(5):
        assert http.get(f"{server.url}/svc/prod").content == first
        assert http.get(f"{server.url}/svc-prod.yml").status_code == 200
    assert cache.stats()["misses"] == misses
    assert cache.stats()["hits"] >= 10


def test_repeat_request_reads_no_file_from_git(repo, serve, http):
    repo.commit({"application.yml": "a: 1\n"})
    server = serve(repo.path)
    backend = server.app.extensions["config_server"].service.backend
    http.get(f"{server.url}/svc/prod")
    reads = []
    original = backend.read
    backend.read = lambda version, path: reads.append(path) or original(version, path)
    http.get(f"{server.url}/svc/prod")
    assert reads == []


def test_cache_is_bounded(repo, serve, http):
    repo.commit({"application.yml": "a: 1\n"})
    server = serve(repo.path, cache_size=3)
    for i in range(6):
        assert http.get(f"{server.url}/app{i}/default").status_code == 200
    assert server.app.extensions["config_server"].service.cache.stats()["entries"] == 3
