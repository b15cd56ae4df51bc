"""The console shows a change's effect: what a held-back or awaiting-approval commit would change,
and what a history row's commit changed, over a real git repository and a running server.

Both views are the code of `GET /diff` restricted to the page's application: old and new value per
key, `{cipher}` values masked, the file and line of the new value, the hold reasons.
"""

from __future__ import annotations

import requests

from tests.helpers import SPRING_VECTOR
from tests.server.test_approvals import ADMIN, ALICE, POLICY, READER, as_author, bearer, get
from tests.server.test_rollouts import write_auth_file

SECRET_PLAIN = "SUPER SECRET"  # what SPRING_VECTOR decrypts to with the key "foo"
PAYMENTS_TEAM = "payments-" + "p" * 30


def page(server, path: str) -> str:
    answer = requests.get(server.url + path, auth=("admin", ADMIN), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.text


def section(html: str, marker: str) -> str:
    return html.split(marker, 1)[1].split("</section>")[0]


def row_of(html: str, key: str) -> str:
    return html.split(f'data-key="{key}"', 1)[1].split("</tr>")[0]


def held_change(repo, serve, tmp_path):
    """orders/prod protected; Bob commits a prod change (a value, a new cipher, a new key) that
    waits for an approval; the server knows it waits. (server, served version, held commit)."""
    repo.commit({"orders.yml": "limit: 1\n", "orders-prod.yml": "limit: 10\nold-flag: true\n"})
    served = repo.commit({"policy/approvals.yml": POLICY, "payments.yml": "fee: 1\n"}, "protect prod")
    held = as_author(
        repo,
        {"orders-prod.yml": f"limit: 20\npassword: '{{cipher}}{SPRING_VECTOR}'\n"},
        "Bob <bob@example.com>",
        "raise the prod limit",
    )
    auth = write_auth_file(
        tmp_path,
        ("alice", ALICE, "email: alice@example.com, roles: [approver, read]"),
        ("reader", READER, "roles: [read]"),
        ("admin", ADMIN, "roles: [admin]"),
        ("payments-team", PAYMENTS_TEAM, "roles: [read], applications: [payments]"),
    )
    server = serve(repo.path, auth_file=auth, encrypt_key="foo")
    assert get(server, "/orders/prod").headers["X-Config-Held-Back"] == held
    return server, served, held


def test_the_held_back_section_shows_what_the_waiting_commit_would_change_and_why(repo, serve, tmp_path):
    server, served, held = held_change(repo, serve, tmp_path)
    shown = section(page(server, "/console/app/orders"), 'id="held-back"')
    effect = shown.split('class="held-effect"', 1)[1]
    assert f'data-commit="{held}"' in shown and served[:12] in effect
    prod = effect.split('data-profiles="prod"', 1)[1]
    assert 'data-held-back="true"' in effect and 'data-reason="awaiting approval"' in prod
    limit = row_of(prod, "limit")
    assert 'data-kind="changed"' in limit
    assert '<code class="old">10</code>' in limit and '<code class="new">20</code>' in limit
    assert '<code class="where">orders-prod.yml:1</code>' in limit
    old_flag = row_of(prod, "old-flag")
    assert 'data-kind="removed"' in old_flag and '<code class="old">true</code>' in old_flag
    password = row_of(prod, "password")
    assert 'data-kind="added"' in password and "{cipher}****" in password
    assert "orders-prod.yml:2" in password
    assert "payments" not in effect  # only the page's application


def test_a_cipher_is_never_shown_in_clear_nor_as_its_ciphertext(repo, serve, tmp_path):
    server, _, held = held_change(repo, serve, tmp_path)
    for path in (
        "/console/app/orders",
        "/console/app/orders?profiles=prod",
        f"/console/app/orders/change/{held}",
    ):
        html = page(server, path)
        assert "{cipher}****" in html
        assert SECRET_PLAIN not in html and SPRING_VECTOR not in html


def test_a_history_rows_diff_is_that_commit_against_its_first_parent(repo, serve, tmp_path):
    server, served, held = held_change(repo, serve, tmp_path)
    history = section(page(server, "/console/app/orders?profiles=prod"), 'id="history"')
    link = f"/console/app/orders/change/{held}?profiles=prod"
    assert f'href="{link}"' in history and 'class="change-diff"' in history
    shown = section(page(server, link), 'id="change-effect"')
    assert f'data-base="{served}"' in shown and f'data-head="{held}"' in shown
    assert '<code class="new">20</code>' in row_of(shown, "limit")
    assert 'data-reason="awaiting approval"' in shown  # the verdict the server gives it now
    # the policy commit changed nothing of orders' settings (payments' file is another application's)
    assert "No difference in orders" in page(server, f"/console/app/orders/change/{served}")
    first = repo.git("rev-list", "--max-parents=0", "HEAD")
    assert "no parent to compare with" in page(server, f"/console/app/orders/change/{first}")
    answer = requests.get(
        f"{server.url}/console/app/orders/change/{'f' * 40}", auth=("admin", ADMIN), timeout=10
    )
    assert answer.status_code == 404


def test_once_approved_nothing_is_held_and_the_section_is_gone(repo, serve, tmp_path):
    server, _, held = held_change(repo, serve, tmp_path)
    assert requests.post(
        f"{server.url}/approvals/{held}", json={"reason": "ok"}, headers=bearer(ALICE), timeout=10
    ).ok
    assert 'class="held-effect"' not in page(server, "/console/app/orders")


def test_a_reader_scoped_to_another_application_cannot_see_the_change(repo, serve, tmp_path):
    server, served, held = held_change(repo, serve, tmp_path)
    for path in ("/console/app/orders", f"/console/app/orders/change/{held}"):
        answer = requests.get(server.url + path, headers=bearer(PAYMENTS_TEAM), timeout=10)
        assert answer.status_code == 403 and "limit" not in answer.text
    body = get(server, f"/diff?from={served}&to={held}", PAYMENTS_TEAM).json()
    assert body["environments"] == [] and "orders" not in str(body)


def test_a_broken_commit_shows_its_problem_with_file_and_line(repo, serve, tmp_path):
    repo.commit({"orders.yml": "limit: 1\n"})
    good = repo.head()
    broken = repo.commit({"orders.yml": "limit: 2\nbad: [unclosed\n"}, "break it")
    server = serve(repo.path)
    assert get(server, "/orders/default").headers["X-Config-Held-Back"] == broken
    effect = section(page(server, "/console/app/orders"), 'id="held-back"').split('class="held-effect"', 1)[1]
    assert good[:12] in effect and 'data-reason="broken"' in effect and "orders.yml:" in effect


def test_one_applications_effect_of_a_shared_file_change_resolves_and_reads_only_its_environments(
    repo, tmp_path, monkeypatch
):
    """A change to `application.yml` touches every application; limited to `orders` it resolves
    orders' environments only and reads no file of another application."""
    from config_server.backends.git import GitBackend
    from config_server.observability import change_effect as module
    from config_server.safety.config_service import ConfigService

    base = repo.commit(
        {
            "application.yml": "region: eu\n",
            "orders.yml": "limit: 0\n",
            "orders-prod.yml": "limit: 1\n",
            "payments.yml": "fee: 1\n",
        }
    )
    head = repo.commit({"application.yml": "region: us\n"})
    backend = GitBackend(str(repo.path), tmp_path / "cache")
    read_paths: list[str] = []
    real_memo_read = module.memo_read

    def recording_memo_read(backend_, version):
        read = real_memo_read(backend_, version)

        def recorded(path):
            read_paths.append(path)
            return read(path)

        return recorded

    monkeypatch.setattr(module, "memo_read", recording_memo_read)
    try:
        service = ConfigService(backend, cache_size=1)
        everyone = module.change_effect(service, base, head)
        read_paths.clear()
        mine = module.change_effect(service, base, head, application="orders")
    finally:
        backend.close()
    assert {e.application for e in everyone.environments} == {"application", "orders", "payments"}
    assert [(e.application, e.profiles) for e in mine.environments] == [
        ("orders", ("default",)),
        ("orders", ("prod",)),
    ]
    assert mine.named == mine.resolved == 2
    assert read_paths and not [p for p in read_paths if "payments" in p]
