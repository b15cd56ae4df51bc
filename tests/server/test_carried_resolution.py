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
