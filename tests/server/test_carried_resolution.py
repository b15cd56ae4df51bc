"""A commit that leaves an environment's files alone does not make it resolve again.

The service carries the environment's last good resolution to the new version when the paths
changed between the two touch none of its applications' files, no shared `application*` file and
no schema (`changed_files.touched_applications`). The answer is what a fresh service answers at
the new version, byte for byte; only the cost goes.
"""

from __future__ import annotations

import pytest

from config_server.backends.git import GitBackend
from config_server.names import EnvironmentRequest
from config_server.safety.config_service import ConfigService
from tests.helpers import served

FILES = {
    "application.yml": "region: eu\n",
    "orders.yml": "limit: 1\n",
    "payments.yml": "fee: 1\n---\nspring.config.activate.on-profile: prod\nfee: 2\n",
    "payments-eu.yml": "fee: 3\n",
    "templates/nginx.conf": "listen 80;\n",
}


def _answer(service: ConfigService, application: str, profiles: str) -> tuple[bytes, str, str]:
    _, resolved = service.environment(EnvironmentRequest.parse(application, profiles, None))
    return resolved.body(None), resolved.etag, resolved.environment.version


@pytest.fixture
def backend(repo, tmp_path):
    backend = GitBackend(str(repo.path), tmp_path / "cache")
    yield backend
    backend.close()


@pytest.mark.parametrize(
    ("change", "carried"),
    [
        ({"orders.yml": "limit: 2\n"}, True),
        ({"templates/nginx.conf": "listen 81;\n"}, True),
        ({"orders-prod.yml": "limit: 3\n"}, True),
        ({"payments.yml": "fee: 9\n"}, False),
        ({"payments-prod.yml": "fee: 8\n"}, False),  # a new profile file of payments
        ({"application.yml": "region: us\n"}, False),  # every application reads it
        ({"application-prod.yml": "region: us\n"}, False),
        ({"schemas/payments.schema.yml": "type: object\n"}, False),
        ({"schemas/common.schema.yml": "type: object\n"}, False),  # any schema may $ref it
        ({"schemas/orders.schema.yml": "type: object\n"}, False),  # payments' schema may $ref it
        ({"policy/approvals.yml": "profiles: [prod]\n"}, False),  # every environment's checks read it
    ],
)
def test_an_untouched_environment_is_carried_to_the_new_version_as_a_fresh_service_answers(
    repo, backend, change, carried
):
    repo.commit(FILES)
    service = ConfigService(backend)
    spellings = [("payments", "default"), ("payments", "prod"), ("payments", "prod,eu")]
    for application, profiles in spellings:
        _answer(service, application, profiles)
    head = repo.commit(change)
    reads: list[str] = []
    original = backend.read
    backend.read = lambda version, path: reads.append(path) or original(version, path)
    try:
        answers = [_answer(service, application, profiles) for application, profiles in spellings]
    finally:
        backend.read = original
    assert bool(reads) is not carried, reads
    fresh = ConfigService(backend)
    for (application, profiles), answer in zip(spellings, answers, strict=True):
        assert answer == _answer(fresh, application, profiles)
        assert answer[2] == head


def test_a_commit_the_repository_no_longer_holds_is_resolved_again(repo, backend):
    """After a force push a mirror may prune the commit an environment was last resolved at:
    the change cannot be told, so the environment is resolved, not carried nor an error."""
    repo.commit(FILES)
    service = ConfigService(backend)
    assert backend.changed_paths("0" * 40, repo.head()) is None
    _answer(service, "payments", "default")
    version, resolved = service.cache.newest(("payments", ("default",), None))
    service.cache.note_newest(("payments", ("default",), None), "0" * 40, resolved)
    head = repo.commit({"orders.yml": "limit: 2\n"})
    reads: list[str] = []
    original = backend.read
    backend.read = lambda version, path: reads.append(path) or original(version, path)
    try:
        assert _answer(service, "payments", "default")[2] == head
    finally:
        backend.read = original
    assert reads  # resolved again


# The three below were found by an adversarial review: `policy/approvals.yml` is read by every
# environment's checks, so a commit that changes only it must not be carried over.


def test_a_commit_that_only_breaks_the_approval_policy_is_not_carried_over(repo, backend):
    """A commit that breaks `policy/approvals.yml` breaks every environment (validation.policy_problems):
    a fresh service holds the head back; a service that resolved `orders` before must too."""
    good = repo.commit({"application.yml": "a: 1\n", "orders.yml": "b: 1\n"})
    shared = ConfigService(backend)
    first = served(shared, "orders", "default")
    assert first[3] == good
    head = repo.commit({"policy/approvals.yml": "profiles: [prod]\nnot-a-key: 1\n"})
    fresh = ConfigService(backend)
    expected = served(fresh, "orders", "default")
    assert expected[5] == head and expected[3] == good  # held back to the good version
    assert served(shared, "orders", "default") == expected


def test_the_walk_behind_a_broken_head_does_not_stop_at_a_version_with_a_broken_policy(repo, backend):
    """The walk behind a broken head asks `is_good` of older versions; a carried resolution says
    a version whose approval policy is broken is good, so it is served."""
    good = repo.commit({"application.yml": "a: 1\n", "orders.yml": "b: 1\n"})
    shared = ConfigService(backend)
    served(shared, "orders", "default")  # remembered at `good`
    repo.commit({"policy/approvals.yml": "profiles: [prod]\nnot-a-key: 1\n"})  # breaks every environment
    head = repo.commit({"orders.yml": "b: [\n"})  # and now orders' own file
    expected = served(ConfigService(backend), "orders", "default")
    assert expected[5] == head and expected[3] == good
    assert served(shared, "orders", "default") == expected


def test_over_http_a_commit_that_only_breaks_the_policy_is_held_back(repo, serve, tmp_path):
    """Over HTTP even a server started after the commit, asked once, serves it: the approvals step
    (create_app always sets `service.approvals`) resolves the version before the head first
    (`_approved`'s etag_at), so the head's resolution is carried from it. Like
    test_approvals.py::test_a_malformed_policy_holds_every_environment_back_as_broken, but the
    bad commit changes nothing else (that test also changes orders-dev.yml, which defeats the carry)."""
    import requests

    good = repo.commit({"application.yml": "a: 1\n", "orders.yml": "b: 1\n"})
    head = repo.commit({"policy/approvals.yml": "profiles: [prod]\nrequird: 1\n"})
    server = serve(repo.path, data_dir=str(tmp_path / "data"))
    got = requests.get(f"{server.url}/orders/default", timeout=5)
    answered = (got.json()["version"], got.headers.get("X-Config-Held-Back"))
    assert answered == (good, head), f"served {answered}; want good={good} held back={head}"
