"""History: applications of a version, commits that changed an application, diffs of resolved settings."""

from __future__ import annotations

from config_server.content.file_names import applications_from_files
from config_server.observability import history
from config_server.observability.history import MASKED, DiffRow, diff_settings
from tests.helpers import SPRING_VECTOR


def test_applications_and_profiles_from_file_names():
    files = [
        "application.yml",
        "application-prod.yml",
        "orders.yml",
        "orders-prod.yml",
        "orders-eu.properties",
        "payment-gateway.yaml",
        "README.md",
        "inventory-prod.properties",
    ]
    assert applications_from_files(files) == {
        "inventory-prod": [],
        "orders": ["eu", "prod"],
        "payment-gateway": [],
    }


def test_diff_reports_added_removed_changed_and_masks_ciphers():
    old = {"port": 8080, "gone": "x", "same": 1, "secret": "{cipher}aaaa", "flag": 1}
    new = {"port": 9090, "added": "y", "same": 1, "secret": "{cipher}bbbb", "flag": True}
    assert diff_settings(old, new) == [
        DiffRow("added", "added", None, "y"),
        DiffRow("flag", "changed", 1, True),
        DiffRow("gone", "removed", "x", None),
        DiffRow("port", "changed", 8080, 9090),
        DiffRow("secret", "changed", MASKED, MASKED),
    ]


def test_commits_are_those_that_touched_the_applications_files(repo, serve):
    first = repo.commit({"orders.yml": "a: 1\n", "payments.yml": "p: 1\n"}, message="first")
    repo.commit({"payments.yml": "p: 2\n"}, message="payments only")
    shared = repo.commit({"config/application-prod.yml": "s: 1\n"}, message="shared, in a folder")
    own = repo.commit({"orders-prod.yml": "a: 2\n"}, message="orders prod")
    service = serve(repo.path, search_paths=["config"]).app.extensions["config_server"].service
    commits = history.commits(service, "orders")
    assert [(c.version, c.message) for c in commits] == [
        (own, "orders prod"),
        (shared, "shared, in a folder"),
        (first, "first"),
    ]
    assert commits[0].author == "Test" and commits[0].time > 0


def test_settings_at_a_version_keep_ciphers_encrypted(repo, serve):
    first = repo.commit({"orders.yml": f"port: 8080\nsecret: '{{cipher}}{SPRING_VECTOR}'\n"})
    second = repo.commit({"orders.yml": f"port: 9090\nsecret: '{{cipher}}{SPRING_VECTOR}'\nnew: 1\n"})
    service = serve(repo.path, encrypt_key="foo").app.extensions["config_server"].service
    old = history.settings_at(service, "orders", "default", first)
    assert old["secret"] == "{cipher}" + SPRING_VECTOR  # never the plain text
    rows = diff_settings(old, history.settings_at(service, "orders", "default", second))
    assert [(r.key, r.kind) for r in rows] == [("new", "added"), ("port", "changed")]
