"""Hostile input: YAML bombs, oversized files and bodies, symlinks out of the repository, slow clients."""

import socket
import time

import pytest
import requests

from config_server.content.parsing import MAX_DEPTH, MAX_NODES, parse_file
from tests.helpers import wait_for

CLOSE = {"Connection": "close"}


def alias_bomb(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    previous = "a"
    for name in "bcdefghijk"[: levels - 1]:
        text += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text


def test_alias_bomb_is_refused_before_it_expands():
    started = time.perf_counter()
    with pytest.raises(Exception, match="alias bomb"):
        parse_file("bomb.yml", alias_bomb().encode())
    assert time.perf_counter() - started < 5  # it never expanded 9**9 values


def test_moderate_aliases_still_work():
    docs = parse_file("ok.yml", b"base: &b {pool: 5, timeout: 2}\nprod:\n  <<: *b\n  pool: 50\n")
    assert docs[0].values["prod.pool"] == 50 and docs[0].values["prod.timeout"] == 2


def test_deep_nesting_is_refused():
    deep = "a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    with pytest.raises(Exception, match=f"deeper than {MAX_DEPTH}"):
        parse_file("deep.yml", deep.encode())
    very_deep = "a: " + "[" * 100_000 + "\n"
    with pytest.raises(Exception, match="deeper|nesting"):
        parse_file("deeper.yml", very_deep.encode())


def test_bombs_answer_422_naming_the_file_and_others_keep_being_served(repo, serve, http):
    big = "".join(f"k{i}: [1, 2, 3]\n" for i in range(MAX_NODES // 4 + 10))
    repo.commit(
        {
            "bomb.yml": alias_bomb(),
            "deep.yml": "a: " + "[" * 200 + "]" * 200 + "\n",
            "wide.yml": big,
            "orders.yml": "fine: true\n",
        }
    )
    server = serve(repo.path)
    for app, words in (("bomb", "alias bomb"), ("deep", "deeper"), ("wide", "more than")):
        response = http.get(f"{server.url}/{app}/default")
        assert response.status_code == 422, app
        body = response.json()
        assert f"{app}.yml" in body["message"] and words in body["message"]
        assert "Traceback" not in response.text
    assert http.get(f"{server.url}/orders/default").json()["propertySources"][0]["source"] == {"fine": True}


def test_huge_file_is_refused_with_its_size(repo, serve, http, tmp_path):
    repo.commit({"huge.yml": "x: '" + "a" * (5 * 1024 * 1024) + "'\n", "orders.yml": "a: 1\n"})
    server = serve(repo.path)
    response = http.get(f"{server.url}/huge/default")
    assert response.status_code == 422 and "larger than" in response.json()["message"]
    assert http.get(f"{server.url}/orders/default").status_code == 200
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "huge.yml").write_text("x: '" + "a" * (5 * 1024 * 1024) + "'\n")
    native = serve(folder)
    assert "larger than" in http.get(f"{native.url}/huge/default").json()["message"]


def test_committed_symlinked_folder_does_not_lead_outside(repo, serve, http):
    (repo.path / "conf").symlink_to("/etc")
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path, search_paths=["conf"])
    assert http.get(f"{server.url}/orders/default/main/conf/passwd").status_code == 404
    assert http.get(f"{server.url}/orders/default/main/conf(_)hostname").status_code == 404
    assert http.get(f"{server.url}/orders/default").status_code == 200


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "%2Fetc%2Fpasswd", ".%2e/.%2e/etc/passwd", "x/%2e%2e/%2e%2e/y"]
)
def test_resource_paths_cannot_escape(repo, serve, http, path):
    repo.commit({"orders.yml": "a: 1\n"})
    response = http.get(f"{serve(repo.path).url}/orders/default/main/{path}")
    assert response.status_code in (400, 404), path
    assert response.headers["Content-Type"].startswith("application/json")


def test_oversized_bodies_are_413_even_when_chunked(repo, serve, http):
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path, encrypt_key="k")
    big = b"path=" + b"a" * (2 * 1024 * 1024)
    response = http.post(f"{server.url}/monitor", data=big)
    assert response.status_code == 413 and response.json()["error"] == "Request Entity Too Large"

    def chunks():
        for _ in range(40):
            yield b"a" * 65536

    chunked = http.post(f"{server.url}/encrypt", data=chunks(), headers={"Content-Type": "text/plain"})
    assert chunked.status_code == 413, chunked.text
    value = http.post(f"{server.url}/encrypt", data=b"a" * 100_000, headers={"Content-Type": "text/plain"})
    assert value.status_code == 413 and "larger than" in value.json()["message"]
    assert http.get(f"{server.url}/orders/default").status_code == 200


# -- slow clients against the production server -------------------------------------------------


@pytest.fixture
def strict_server(server_process, repo):
    repo.commit({"orders.yml": "a: 1\n"})
    server = server_process(
        "--repo", str(repo.path), "--workers", "1", "--client-timeout", "1", "--request-timeout", "3"
    )
    return server.wait_ready(lambda: requests.get(f"{server.url}/health", timeout=1, headers=CLOSE).ok)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed the connection (any reply it sent first is drained)."""
    sock.settimeout(0.05)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except TimeoutError:
        return False
    except OSError:
        return True


def trickle_until_closed(sock: socket.socket, chunks, interval: float, deadline: float) -> float:
    """Send one chunk every `interval` seconds until the server closes; return the seconds taken."""
    started = time.monotonic()
    for chunk in chunks:
        if closed_by_server(sock):
            return time.monotonic() - started
        try:
            sock.sendall(chunk)
        except OSError:
            return time.monotonic() - started
        if time.monotonic() - started > deadline:
            break
        time.sleep(interval)  # the trickle itself, not a synchronisation
    raise AssertionError("the server kept the slow connection open")


def test_silent_client_is_dropped(strict_server):
    with socket.create_connection(("127.0.0.1", strict_server.port)) as sock:
        sock.sendall(b"GET /orders/default HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        wait_for(lambda: closed_by_server(sock), timeout=10, what="the server to drop a silent client")


def test_header_trickle_is_cut_off(strict_server):
    with socket.create_connection(("127.0.0.1", strict_server.port)) as sock:
        sock.sendall(b"GET /orders/default HTTP/1.1\r\n")
        headers = (f"X-Slow-{i}: y\r\n".encode() for i in range(1000))
        assert trickle_until_closed(sock, headers, 0.2, deadline=10) < 8


def test_body_trickle_is_cut_off_at_the_request_timeout(strict_server):
    with socket.create_connection(("127.0.0.1", strict_server.port)) as sock:
        sock.sendall(
            b"POST /monitor HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100000\r\n\r\npath="
        )
        assert trickle_until_closed(sock, (b"a" for _ in range(100_000)), 0.3, deadline=12) < 10
    assert requests.get(f"{strict_server.url}/orders/default", timeout=5, headers=CLOSE).status_code == 200


def test_oversized_headers_and_request_lines_are_refused(strict_server):
    long_line = requests.get(f"{strict_server.url}/orders/{'a' * 9000}", timeout=5, headers=CLOSE)
    assert long_line.status_code in (400, 414)
    huge_header = requests.get(
        f"{strict_server.url}/orders/default", timeout=5, headers={**CLOSE, "X-Big": "b" * 9000}
    )
    assert huge_header.status_code in (400, 431)
    assert requests.get(f"{strict_server.url}/orders/default", timeout=5, headers=CLOSE).status_code == 200


# -- generated instance-report headers against a real app ----------------------------------------

from datetime import timedelta  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: Characters the report headers' syntax gives a meaning to, letters, and a few odd ones.
_CHARS = st.sampled_from(list(' \t"\\;=,:@.-_/vxZ09') + ["\x01", "\x7f", "é", "ÿ"])
_TEXT = st.text(_CHARS, max_size=200)
_PADDED = st.builds(
    lambda left, core, right: " " * left + core + " " * right,
    st.integers(0, 3000),
    _TEXT,
    st.integers(0, 3000),
)
#: Two words with kilobytes of blanks between them (where a backtracking pattern goes quadratic).
_GAPPED = st.builds(
    lambda first, gap, second: first + gap + second,
    st.text(_CHARS, min_size=1, max_size=20),
    st.text(st.sampled_from(" \t"), min_size=6000, max_size=7000),
    st.text(_CHARS, min_size=1, max_size=20),
)
_REJECTED = st.builds(
    lambda version, gap, reason, close: f'{version}{gap};{gap}reason="{reason}{close}',
    st.text(_CHARS, min_size=1, max_size=40),
    st.text(st.sampled_from(" \t"), max_size=3000),
    _TEXT,
    st.sampled_from(['"', "", '\\"', '" trailing']),
)
_LABELS = st.lists(st.builds(lambda k, v: f"{k}={v}", _TEXT, _TEXT), max_size=20).map(",".join)
_HOSTILE = st.one_of(_TEXT, _PADDED, _GAPPED)
_WORD = st.from_regex(r"[A-Za-z0-9._-]{1,128}", fullmatch=True)
#: Well-formed values of each header (the same instance sends them on every request).
_VALID = {
    "X-Config-Client-Id": st.from_regex(r"[A-Za-z0-9._:@-]{1,128}", fullmatch=True),
    "X-Config-Client-Labels": st.lists(st.builds(lambda k, v: f"{k}={v}", _WORD, _WORD), max_size=16).map(
        ", ".join
    ),
    "X-Config-Applied": st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True),
    "X-Config-Rejected": st.builds(
        lambda version, reason: f'{version}; reason="{reason}"',
        st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True),
        st.lists(st.sampled_from(list("ab :.;=,") + ['\\"', "\\\\"]), max_size=300).map("".join),
    ),
    "User-Agent": st.text(st.sampled_from(list("Java/17.0 (x; y)")), max_size=300),
    "If-None-Match": st.sampled_from(['"abc"', 'W/"abc", "def"', "*", '"' + "x" * 5000]),
}
#: Hostile values of each header: free text, kilobytes of padding, blanks between words, and
#: shapes of the header's own syntax gone wrong.
_MALFORMED = {
    **{name: _HOSTILE for name in _VALID},
    "X-Config-Client-Labels": st.one_of(_HOSTILE, _LABELS),
    "X-Config-Rejected": st.one_of(_HOSTILE, _REJECTED),
    "If-None-Match": st.one_of(_HOSTILE, st.lists(_TEXT, max_size=50).map(", ".join)),
}


@st.composite
def _headers(draw):
    """A request's headers: each absent, well-formed or hostile (often just one hostile: a malformed
    header before it would be refused first, and the later one never parsed)."""
    hostile = draw(st.sets(st.sampled_from(sorted(_VALID)), min_size=1, max_size=2))
    headers = {}
    for name in sorted(_VALID):
        if name in hostile:
            headers[name] = draw(_MALFORMED[name])
        elif draw(st.booleans()):
            headers[name] = draw(_VALID[name])
    return headers


#: Header names an answer's 400 may name.
_REPORT_HEADERS = ("X-Config-Client-Id", "X-Config-Client-Labels", "X-Config-Applied", "X-Config-Rejected")


@pytest.fixture(scope="module")
def header_server(tmp_path_factory):
    """One real app (fast path, Flask views, inventory on SQLite) for every generated request."""
    from config_server import create_app
    from config_server.settings import Settings
    from tests.helpers import GitRepo, LiveServer

    base = tmp_path_factory.mktemp("headers")
    repo = GitRepo(base / "repo")
    repo.commit({"orders.yml": "a: 1\n", "orders-prod.yml": "a: 2\n"})
    app = create_app(Settings(repo=str(repo.path), data_dir=str(base / "data")))
    server = LiveServer(app)
    server.app = app
    with requests.Session() as session:
        server.session = session
        yield server
    server.stop()
    app.extensions["config_server"].close()


@settings(
    max_examples=60,
    deadline=timedelta(seconds=5),
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(generated=_headers())
def test_generated_instance_headers_never_cause_a_500_or_a_slow_answer(header_server, generated):
    """Every report header, well-formed, malformed, padded to kilobytes: a 200/304 or a 400 naming the
    header, each answered within 0.1 s (one request with a quadratic pattern took 0.45 s), on the fast
    path, a long poll and the Flask view alike."""
    headers = {name: value.lstrip(" \t") for name, value in generated.items()}
    long_poll = {**headers, "If-None-Match": '"not-the-current-etag"'}
    for path, sent in (
        ("/orders/prod", headers),  # fast path, or Flask for a conditional GET
        ("/orders/prod?wait=5", long_poll),  # a long poll whose version is stale: answered at once
        ("/orders/prod?via=flask", headers),  # the Flask view
    ):
        elapsed = []
        for _ in range(2):  # the faster of two: a pause of a busy machine is not the parser's
            started = time.monotonic()
            answer = header_server.session.get(header_server.url + path, headers=sent, timeout=10)
            elapsed.append(time.monotonic() - started)
            assert answer.status_code in (200, 304, 400), (path, answer.status_code, answer.text)
        assert min(elapsed) < 0.1, (path, elapsed)
        if answer.status_code == 400:
            assert any(name in answer.json()["message"] for name in _REPORT_HEADERS), answer.text
    assert header_server.app.extensions["config_server"].inventory.flush() >= 0


@pytest.mark.parametrize(
    "value",
    [
        " " * 8000 + 'x"',
        '"' + "a" * 8000,
        '",' * 4000,
        "," * 8000,
        '"x,"x,' * 1300,
        "a" + "\t" * 8000 + "b",
        ", ".join(['"a"'] * 2000),
        '"a"' + " " * 8000 + "b",
    ],
)
def test_if_none_match_is_read_in_linear_time(value):
    """The fast path (and Flask's `request.if_none_match`) read `If-None-Match` with Werkzeug's
    `parse_etags`: kilobytes of each shape that could make a pattern backtrack take milliseconds."""
    from config_server.http.fast_path import parse_etags

    started = time.perf_counter()
    parse_etags(value)
    assert time.perf_counter() - started < 0.02
