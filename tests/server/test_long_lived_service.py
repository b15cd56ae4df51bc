"""A long-lived service answers what a fresh one answers, over random histories.

The service keeps what it learnt across requests and commits: resolutions shared by spellings
(`ConfigService._shared`), carried across commits that left an environment's files alone
(`_carried`), verdicts of broken versions. None of it may change an answer. Random commits edit,
add, delete and break configuration files, schemas and the approval policy, move a branch and a
tag; random requests (several applications, hyphenated names, repeated and unknown profiles,
branch, tag, commit id, abbreviated id, two labels) are each compared with a fresh service's
answer: body, ETag, settings, versions served and held back, headers. Written by an adversarial
review of those optimisations.
"""

from __future__ import annotations

import random

import pytest

from config_server.backends.git import GitBackend
from config_server.safety.config_service import ConfigService
from tests.helpers import served

CONTENT = {
    "application.yml": [
        "shared: 1\n",
        "shared: 2\n---\nspring.config.activate.on-profile: '!p1'\nnotp1: yes\n",
        "shared: 3\n---\nspring.profiles: [eu, 'qa & us']\nregion: x\n",
        "bad: [\n",
        None,
    ],
    "application-eu.yml": ["region: eu\n", None, "region: eu2\n"],
    "application-p2.properties": ["p2=yes\n", None],
    "orders.yml": [
        "level: orders\n",
        "level: orders\n---\nspring.config.activate.on-profile: prod & !canary\nlevel: prod-doc\n",
        "level: o\n---\nspring.config.activate.on-profile: x1\nlevel: x1-doc\n",
        "dup: 1\ndup: 2\n",
        None,
    ],
    "orders-prod.yml": [
        "level: orders-prod\n",
        "level: op\n---\nspring.profiles: blue\ncolour: blue\n",
        None,
    ],
    "orders-x2.properties": ["x2=1\n", None, "spring.profiles=p1\nx2=2\n"],
    "orders-eu-west.yml": ["west: 1\n", None],
    "my-service.yml": ["svc: 1\n", "svc: 2\n---\nspring.config.activate.on-profile: canary\nsvc: c\n", None],
    "my-service-prod.yml": ["svc: prod\n", None],
    "payments.yml": ["fee: 1\n", "fee: 2\n", None],
    "sub/orders.yml": ["sub: 1\n", None, "sub: 2\n"],
    "sub/application-p1.yml": ["subp1: 1\n", None],
    "orders/orders.yml": ["folder: orders\n", None],
    "main/orders.yml": ["labelled: main\n", None],
    "release/orders.yml": ["labelled: release\n", None],
    "schemas/orders.yml": [
        "type: object\n",
        "type: object\nproperties:\n  level:\n    type: integer\n",
        None,
    ],
    "policy/approvals.yml": ["profiles: [prod]\n", "profiles: [prod]\nrequird: 1\n", None],
    "templates/x.conf": ["a\n", "b\n"],
    "README.md": ["a\n", "b\n"],
}


APPS = ["orders", "my-service", "payments", "application", "orders,my-service", "unknown", "orders-eu", "my"]
PROFILES = [
    "prod",
    "p1",
    "p2",
    "x1",
    "x2",
    "eu",
    "eu-west",
    "canary",
    "blue",
    "qa",
    "us",
    "default",
    "zz",
    "orders",
]


def _random_commit(repo, chosen: random.Random, present: dict) -> str:
    files = {}
    for _ in range(chosen.randint(1, 3)):
        name = chosen.choice(list(CONTENT))
        value = chosen.choice(CONTENT[name])
        if value is None and name not in present:
            continue
        files[name] = value
        if value is None:
            present.pop(name, None)
        else:
            present[name] = value
    return repo.commit(files)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "search_paths", [(), ("sub",), ("{application}",), ("{label}",), ("sub", "{application}")]
)
def test_random_histories_are_answered_what_a_fresh_service_answers(repo, tmp_path, seed, search_paths):
    chosen = random.Random(seed * 1000 + len(search_paths))
    present: dict = {}
    first = {name: values[0] for name, values in CONTENT.items()}
    present.update(first)
    commits = [repo.commit(first)]
    repo.git("branch", "release")
    backend = GitBackend(str(repo.path), tmp_path / "cache")
    try:
        shared = ConfigService(backend, search_paths=search_paths)
        for step in range(8):
            commits.append(_random_commit(repo, chosen, present))
            if chosen.random() < 0.3:
                repo.git("branch", "-f", "release", chosen.choice(commits))
            if chosen.random() < 0.3:
                repo.git("tag", "-f", "v1", chosen.choice(commits))
            labels = [
                None,
                "main",
                "release",
                "main,release",
                chosen.choice(commits),
                chosen.choice(commits)[:10],
            ]
            if step > 0:
                labels.append("v1")
            for _ in range(25):
                app = chosen.choice(APPS)
                profiles = ",".join(chosen.choice(PROFILES) for _ in range(chosen.randint(1, 3)))
                label = chosen.choice(labels)
                fresh = ConfigService(backend, search_paths=search_paths)
                expected = served(fresh, app, profiles, label)
                got = served(shared, app, profiles, label)
                assert got == expected, (step, app, profiles, label)
    finally:
        backend.close()
