"""Spellings of one environment share one resolution (issue 24 item 5).

`/orders/prod,p1` and `/orders/prod,p2` resolve to the same property sources when no file is named
after `p1` or `p2` and no activation expression of a file read mentions them. The service resolves
once and answers the other spellings from it, each Environment naming the profiles it asked for.
The danger is answering one spelling another's settings; the first test compares, for hundreds of
spellings over a repository built to trip it (negated and compound activations, profile files
with their own activations, repeats, several names, a hyphenated name, a commit that makes a
profile matter), what a long-lived service answers with what a fresh one answers, byte for byte.
"""

from __future__ import annotations

import itertools
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from config_server.backends.git import GitBackend
from config_server.names import EnvironmentRequest
from config_server.safety.config_service import ConfigService
from tests.helpers import served, wait_for

TRICKY = {
    "application.yml": (
        "shared: app\nlevel: application\n"
        "---\nspring.config.activate.on-profile: '!p1'\nnot_p1: yes\n"
        "---\nspring.config.activate.on-profile: eu | us\nregion: set\n"
        "---\nspring.profiles: [dev, 'qa & eu']\nlevel: dev-or-qa-eu\n"
    ),
    "application-eu.yml": "region: eu\n",
    "application-green.yml": "colour: green\n",  # named by no activation: only by its file
    "orders.yml": (
        "level: orders\n---\nspring.config.activate.on-profile: prod & !canary\nlevel: orders-prod-doc\n"
        "---\nspring.config.activate.on-profile: us\nlevel: orders-us\n"
    ),
    "orders-prod.yml": "level: orders-prod\n---\nspring.config.activate.on-profile: blue\ncolour: blue\n",
    "orders-dev.properties": "level=orders-dev\n",
    "orders-gold.yml": "level: orders-gold\n",
    "my-service.yml": "svc: 1\n---\nspring.config.activate.on-profile: canary\nsvc: canary\n",
    "my-service-prod.yml": "svc: prod\n",
}
PROFILES = ["prod", "dev", "eu", "us", "p1", "canary", "blue", "qa", "green", "gold", "x1", "x2", "default"]
APPLICATIONS = ["orders", "orders,my-service", "my-service", "application", "unknown"]


def _spellings(count: int, seed: int) -> list[tuple[str, str]]:
    chosen = random.Random(seed)
    out = [(app, profile) for app in APPLICATIONS for profile in PROFILES]
    for _ in range(count):
        profiles = ",".join(chosen.choice(PROFILES) for _ in range(chosen.randint(1, 4)))
        out.append((chosen.choice(APPLICATIONS), profiles))
    return out


def _answer(service: ConfigService, application: str, profiles: str, label: str | None) -> tuple:
    _, resolved = service.environment(EnvironmentRequest.parse(application, profiles, label))
    return resolved.body(label), resolved.etag, resolved.merged_resolved


@pytest.mark.parametrize("search_paths", [(), ("{application}",), ("{profile}",), ("{label}",)])
def test_every_spelling_is_answered_what_a_fresh_service_answers(repo, tmp_path, search_paths):
    repo.commit({**TRICKY, "orders/orders.yml": "folder: app\n", "p1/orders.yml": "folder: p1\n"})
    backend = GitBackend(str(repo.path), tmp_path / "cache")
    try:
        shared = ConfigService(backend, search_paths=search_paths)
        for round_number in range(2):
            spellings = _spellings(150, seed=round_number)
            for application, profiles in spellings:
                fresh = ConfigService(backend, search_paths=search_paths)
                for label in (None, "main"):
                    expected = _answer(fresh, application, profiles, label)
                    assert _answer(shared, application, profiles, label) == expected, (application, profiles)
            # A commit that makes two profiles matter: x1 names a file now, x2 an activation.
            repo.commit(
                {
                    "orders-x1.yml": "level: orders-x1\n",
                    "application.yml": TRICKY["application.yml"] + "---\nspring.profiles: x2\nx2: yes\n",
                }
            )
    finally:
        backend.close()


def test_spellings_read_no_file_after_the_first_and_each_names_its_profiles(repo, serve, http):
    repo.commit(TRICKY)
    server = serve(repo.path)
    backend = server.app.extensions["config_server"].service.backend
    first = http.get(f"{server.url}/orders/prod,q0").json()
    reads: list[str] = []
    original = backend.read
    backend.read = lambda version, path: reads.append(path) or original(version, path)
    for i in range(1, 40):
        answer = http.get(f"{server.url}/orders/prod,q{i}").json()
        assert answer["profiles"] == ["prod", f"q{i}"]
        assert answer["propertySources"] == first["propertySources"]
    assert reads == []  # one resolution served them all
    canary = http.get(f"{server.url}/orders/prod,canary").json()  # `!canary` makes it matter
    assert canary["propertySources"] != first["propertySources"] and reads


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=48) as executor:
        yield executor


def test_a_commit_to_a_shared_file_resolves_once_for_every_watched_spelling(repo, serve, pool):
    """The hub answers each parked spelling its own Environment after a commit that changes them
    all, from one resolution: a commit to `application.yml` used to cost one YAML parse and one
    check per watched spelling before the next slot's turn."""
    repo.commit(TRICKY)
    server = serve(repo.path)
    state = server.app.extensions["config_server"]
    spellings = [f"/orders/prod,q{i}" for i in range(40)]
    etag = requests.get(f"{server.url}{spellings[0]}", timeout=5).headers["ETag"]
    futures = {
        spelling: pool.submit(
            requests.get,
            f"{server.url}{spelling}?wait=20",
            headers={"If-None-Match": etag},
            timeout=30,
        )
        for spelling in spellings
    }
    wait_for(lambda: state.hub.watchers() >= len(spellings), what="every spelling to park")
    reads: list[str] = []
    original = state.service.backend.read
    state.service.backend.read = lambda version, path: reads.append(path) or original(version, path)
    sha = repo.commit({"application.yml": "shared: changed\n"})
    for spelling, future in futures.items():
        response = future.result(timeout=20)
        assert response.status_code == 200
        body = response.json()
        assert body["version"] == sha and body["profiles"] == spelling.rsplit("/", 1)[1].split(",")
        assert body["propertySources"][-1]["source"] == {"shared": "changed"}
    one_resolution = 2 * 3 * 3  # (orders, application) x extensions x (q0, prod, plain): 18 reads
    others = 10  # the approval policy, rollout files: read once per commit, not per spelling
    assert 0 < len(reads) <= one_resolution + others, reads  # before: 18 per spelling, 720


def test_the_relevant_profiles_keep_order_and_repeats():
    from config_server.content.profiles import relevant

    with_files, named = frozenset({"prod", "eu"}), frozenset({"canary"})
    assert relevant(("p1", "prod", "canary", "x", "prod"), with_files, named) == ("prod", "canary", "prod")
    assert relevant(("p1", "p2"), with_files, named) == ()
    spellings = {relevant(tuple(p), with_files, named) for p in itertools.permutations(("prod", "p1", "eu"))}
    assert spellings == {("prod", "eu"), ("eu", "prod")}


EDGE_FILES = {
    "application.yml": "a: 1\n---\nspring.config.activate.on-profile: '!orders'\nnot_orders: 1\n",
    "orders.properties": "spring.config.activate.on-profile=p9\nprops=1\n",
    "orders.yml": "y: 1\n",
    "orders-orders.yml": "self: 1\n",
    "orders-eu.yml": "eu: 1\n",
    "orders-eu-west.yml": "euw: 1\n---\nspring.profiles: [p8]\np8: 1\n",
    "sub/orders-p5.yml": "sub5: 1\n",
    "orders/orders-p6.yml": "p6: 1\n",
    "release/1/orders-p7.yml": "p7: 1\n",
    "main/application-p4.yaml": "p4: 1\n",
    "my-app.yml": "m: 1\n---\nspring.config.activate.on-profile: p3 & (p2 | !p1)\nm: 2\n",
}
EDGE_PROFILES = [
    "p1",
    "p2",
    "p3",
    "p4",
    "p5",
    "p6",
    "p7",
    "p8",
    "p9",
    "eu",
    "eu-west",
    "west",
    "orders",
    "default",
    "q",
]


@pytest.mark.parametrize(
    "search_paths", [(), ("sub",), ("{application}",), ("{label}",), ("s*", "{application}", "{label}")]
)
def test_edge_case_spellings_are_answered_as_by_a_fresh_service(repo, tmp_path, search_paths):
    """From the adversarial review: a profile equal to an application name, `.properties`
    activation, hyphenated profiles, profile files only in search-path, `{application}` and
    `{label}` folders (a label with a `/`), an annotated tag, a glob search path."""
    repo.commit(EDGE_FILES)
    repo.git("branch", "release/1")
    repo.git("tag", "-a", "v1", "-m", "v1")
    backend = GitBackend(str(repo.path), tmp_path / "cache")
    try:
        shared = ConfigService(backend, search_paths=search_paths)
        spellings = [
            (app, ",".join(combo))
            for app in ("orders", "my-app", "orders,my-app", "application", "orders-eu")
            for size in (1, 2, 3)
            for combo in itertools.islice(itertools.permutations(EDGE_PROFILES, size), 0, None, 7 * size)
        ]
        for app, profiles in spellings:
            for label in (None, "release(_)1", "v1"):
                expected = served(ConfigService(backend, search_paths=search_paths), app, profiles, label)
                assert served(shared, app, profiles, label) == expected, (app, profiles, label)
    finally:
        backend.close()


def test_what_the_service_learns_stays_within_its_bounds_whatever_callers_ask(repo, tmp_path):
    """Application names, profiles and labels are the caller's: made-up ones must not grow the
    memories of the sharing and the carry (the cache, the newest resolution per environment, the
    relevant profiles per version, the changed-files answers) past their bounds."""
    commits = [repo.commit({**TRICKY, "n.yml": f"n: {i}\n"}) for i in range(3)]
    backend = GitBackend(str(repo.path), tmp_path / "cache")
    try:
        service = ConfigService(backend, cache_size=8)
        chosen = random.Random(7)
        for i in range(300):
            application = chosen.choice(["orders", "my-service", f"made-up-{i}", f"orders,x{i}"])
            profiles = ",".join(f"p{chosen.randint(0, 10_000)}" for _ in range(chosen.randint(1, 3)))
            label = chosen.choice([None, "main", *commits, chosen.choice(commits)[: chosen.randint(7, 40)]])
            served(service, application, profiles, label)
        assert len(service.cache._entries) <= 8 and len(service.cache._newest) <= 8
        assert len(service.relevance._entries) <= 8
        assert all(len(known.named) <= 64 for known in service.relevance._entries.values())
        assert len(service._touched._pairs) <= service._touched.max_pairs
    finally:
        backend.close()
