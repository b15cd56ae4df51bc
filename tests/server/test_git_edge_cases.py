"""Git edge cases: symbolic refs follow their target, an oversized blob is refused once per blob id."""

import subprocess

from config_server.backends.base import MAX_FILE_BYTES
from tests.helpers import GIT_ENV, GitRepo


def test_symbolic_ref_follows_its_target_branch_when_it_moves(tmp_path, serve, http):
    upstream = GitRepo(tmp_path / "upstream")
    first = upstream.commit({"svc.yml": "a: 1\n"})
    work = tmp_path / "work"
    subprocess.run(
        ["git", "clone", "--quiet", str(upstream.path), str(work)],
        env=GIT_ENV,
        check=True,
        capture_output=True,
    )
    assert (work / ".git/refs/remotes/origin/HEAD").read_text().startswith("ref: ")
    server = serve(work, refresh_interval=0)
    assert http.get(f"{server.url}/svc/default/HEAD").json()["version"] == first
    second = upstream.commit({"svc.yml": "a: 2\n"})
    subprocess.run(["git", "fetch", "--quiet"], cwd=work, env=GIT_ENV, check=True, capture_output=True)
    answer = http.get(f"{server.url}/svc/default/HEAD").json()
    assert answer["version"] == second  # `origin/HEAD`'s own file did not change; its target did
    assert answer["propertySources"][0]["source"] == {"a": 2}


def _blobs_streamed(server) -> list[bytes]:
    """The ids of the blobs the server's git object database streams from now on (a spy on the
    real database, not a mock: it delegates)."""
    odb = server.app.extensions["config_server"].service.backend._require_repo().odb
    streamed: list[bytes] = []
    original = odb.stream

    def counting_stream(binsha):
        streamed.append(binsha)
        return original(binsha)

    odb.stream = counting_stream
    return streamed


def test_oversized_blob_is_refused_once_per_blob_id(repo, serve, http):
    big = "x: " + "y" * (MAX_FILE_BYTES + 10) + "\n"
    repo.commit({"big.yml": big, "small.yml": "a: 1\n"})
    server = serve(repo.path)
    streamed = _blobs_streamed(server)
    big_id = bytes.fromhex(repo.git("rev-parse", "HEAD:big.yml"))
    for _ in range(3):
        response = http.get(f"{server.url}/big/default")
        assert response.status_code == 422 and "larger than" in response.json()["message"]  # broken
        plain = http.get(f"{server.url}/big/default/main/big.yml")
        assert plain.status_code == 422 and "big.yml" in plain.json()["message"]
    assert streamed.count(big_id) == 1
    assert http.get(f"{server.url}/small/default").status_code == 200
    # the same content under another name is the same blob: refused without streaming it again
    head = repo.commit({"copy.yml": big})
    copy = http.get(f"{server.url}/copy/default")  # broken at head: the commit before is served
    assert copy.status_code == 200 and copy.headers["X-Config-Held-Back"] == head
    assert streamed.count(big_id) == 1


def test_a_blob_is_read_from_git_once_for_every_spelling_and_commit(repo, serve, http):
    """Many spellings of one environment (`/svc/prod,p{i}`, issue 24 item 5) and later commits that
    leave a file alone read the same blob: git's object database is asked for it once per worker,
    not once per resolution (a blob id names its bytes for ever)."""
    repo.commit({"svc.yml": "a: 1\n", "svc-prod.yml": "b: 2\n"})
    server = serve(repo.path)
    streamed = _blobs_streamed(server)
    svc_id = bytes.fromhex(repo.git("rev-parse", "HEAD:svc.yml"))
    for i in range(5):
        answer = http.get(f"{server.url}/svc/prod,p{i}").json()
        assert [s["source"] for s in answer["propertySources"]] == [{"b": 2}, {"a": 1}]
    repo.commit({"other.yml": "c: 3\n"})  # svc.yml is the same blob at the new commit
    answer = http.get(f"{server.url}/svc/prod,p9").json()
    assert answer["version"] == repo.head() and answer["propertySources"][1]["source"] == {"a": 1}
    assert streamed.count(svc_id) == 1
    repo.commit({"svc.yml": "a: 2\n"})  # a new blob is read, and served
    answer = http.get(f"{server.url}/svc/prod").json()
    assert answer["propertySources"][1]["source"] == {"a": 2}
