"""The web console in a real browser: Debian's headless Chromium driven by Playwright.

Two real ConfigClients watch orders/prod; a commit lands; the page (which refreshes itself through
the long poll; its instance list re-reads a small fragment) must show the commit in the history,
the changed key in the diff (the secret masked) and both instances on the new version, which they
report having applied (X-Config-Applied).
A screenshot is left in the test's temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from playwright.sync_api import sync_playwright

from config_client import ConfigClient
from config_server.content.crypto import load_keyring
from tests.helpers import SPRING_VECTOR, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser_page(tmp_path: Path):
    """A page of a fresh headless Chromium profile; closed afterwards."""
    assert Path(CHROMIUM).exists(), "make test installs Debian's chromium package"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            context.close()


def test_console_shows_history_diff_and_instances_on_the_new_version(repo, serve, browser_page, tmp_path):
    first = repo.commit(
        {
            "application.yml": "shared: 1\n",
            "orders.yml": f"server.port: 8080\nsecret: '{{cipher}}{SPRING_VECTOR}'\n",
            "orders-prod.yml": "pool: 4\n",
        },
        message="orders: first settings",
    )
    server = serve(repo.path, encrypt_key="foo")
    clients = [
        ConfigClient(server.url, "orders", "prod", client_id=f"orders-{i}", wait=20, fail_fast=True)
        for i in (1, 2)
    ]
    try:
        for client in clients:
            client.start()
        page = browser_page
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{server.url}/console/")
        page.wait_for_selector('#applications tr[data-application="orders"]')
        # the search box filters the list in the page (issue 20 item 11)
        page.fill("#search", "nothing-like-it")
        page.wait_for_selector('#applications tr[data-application="orders"]', state="hidden")
        assert page.is_visible("#no-match")
        page.fill("#search", "ORD")
        page.wait_for_selector('#applications tr[data-application="orders"]', state="visible")
        assert not page.is_visible("#no-match")
        page.goto(f"{server.url}/console/app/orders?profiles=prod")
        for i in (1, 2):  # the inventory is written by a background flusher: the page catches up
            page.wait_for_selector(f'tr.instance[data-instance="orders-{i}"][data-version="{first}"]')
        since = page.wait_for_selector('tr.instance[data-instance="orders-1"] time')
        assert since.get_attribute("title") == since.get_attribute("datetime")  # the ISO time on hover
        assert since.inner_text() == "just now" or since.inner_text().endswith(" ago")
        # the instances are refreshed from the small fragment, never by re-reading the whole page
        wait_for(lambda: any("/console/app/orders/instances?" in url for url in requested), what="a refresh")
        assert sum(url.endswith("/console/app/orders?profiles=prod") for url in requested) == 1

        secret = load_keyring("foo", None).encrypt("NEW SECRET", spring=True)
        new = repo.commit(
            {"orders.yml": f"server.port: 9090\nsecret: '{{cipher}}{secret}'\n"},
            message="orders: move to port 9090",
        )
        wait_for(
            lambda: all(c.version == new for c in clients), timeout=20, what="clients on the new version"
        )

        # no reload by the test: the page's own long poll notices the commit and refreshes
        row = page.wait_for_selector(f'#history tr.commit[data-version="{new}"]')
        assert "orders: move to port 9090" in row.inner_text()
        changed = page.wait_for_selector('#diff tr[data-key="server.port"][data-kind="changed"]')
        assert "8080" in changed.inner_text() and "9090" in changed.inner_text()
        masked = page.wait_for_selector('#diff tr[data-key="secret"]').inner_text()
        assert "{cipher}****" in masked and secret not in masked and "NEW SECRET" not in masked
        for i in (1, 2):
            page.wait_for_selector(f'tr.instance[data-instance="orders-{i}"][data-version="{new}"]')

        # the clients say what they applied (X-Config-Applied), not only what they were served
        def applied() -> dict[str, str | None]:
            server.app.extensions["config_server"].inventory.flush()
            body = requests.get(f"{server.url}/instances?application=orders", timeout=10).json()
            return {i["id"]: i["applied"] for i in body["instances"]}

        wait_for(lambda: applied() == {"orders-1": new, "orders-2": new}, what="both report the new version")
        share = page.wait_for_selector(f'.environment[data-profiles="prod"] .share[data-version="{new}"]')
        assert share.get_attribute("title") == f"{new}: 2 of 2"
        page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
        assert (tmp_path / "console.png").stat().st_size > 10_000
    finally:
        for client in clients:
            client.stop()


def test_a_commit_is_pinned_and_unpinned_from_the_console(repo, serve, browser_page, tmp_path):
    """The pin button of a history row asks why, POSTs the pin as JSON from the page's own origin
    (what the cross-site checks let through), and the Pinned table's button unpins."""
    good = repo.commit({"orders.yml": "a: 1\n"}, message="good")
    repo.commit({"orders.yml": "a: 2\n"}, message="bad")
    server = serve(repo.path)
    page = browser_page
    page.on("dialog", lambda dialog: dialog.accept("INC-7 from the console"))
    page.goto(f"{server.url}/console/app/orders")
    page.click(f'tr.commit[data-version="{good}"] button.pin-action')
    page.wait_for_selector("#pins tr.pin")
    assert "INC-7 from the console" in page.inner_text("#pins")
    answer = requests.get(f"{server.url}/orders/default", timeout=5)
    assert answer.json()["version"] == good and answer.headers["X-Config-Pinned"] == f"{good}; by=127.0.0.1"
    page.screenshot(path=str(tmp_path / "console-pinned.png"), full_page=True)
    page.click("#pins button.pin-action")
    page.wait_for_selector("#pins", state="detached")
    assert requests.get(f"{server.url}/orders/default", timeout=5).json()["version"] != good


def test_a_commit_is_reverted_from_the_console_or_its_command_shown(repo, serve, browser_page, tmp_path):
    """The revert button of a history row asks why and POSTs the revert as JSON from the page's own
    origin; the page reloads with the revert commit on top. Where the server may not write, the
    button shows the git command instead and sends nothing."""
    repo.commit({"orders.yml": "a: 1\n"}, message="good")
    bad = repo.commit({"orders.yml": "a: 2\n"}, message="bad")
    server = serve(repo.path)
    page = browser_page
    dialogs: list[tuple[str, str]] = []

    def answer(dialog) -> None:
        dialogs.append((dialog.message, dialog.default_value))
        dialog.accept("INC-8 from the console")

    page.on("dialog", answer)
    page.goto(f"{server.url}/console/app/orders")
    page.click(f'tr.commit[data-version="{bad}"] button.revert')
    wait_for(lambda: repo.git("rev-parse", "main^") == bad, what="the revert commit on main")
    reverted = repo.git("rev-parse", "main")
    page.wait_for_selector(f'tr.commit[data-version="{reverted}"]')
    assert "Reason: INC-8 from the console" in repo.git("log", "-1", "--format=%B")
    assert requests.get(f"{server.url}/orders/default", timeout=5).json()["version"] == reverted
    page.screenshot(path=str(tmp_path / "console-reverted.png"), full_page=True)
    read_only = serve(repo.path, allow_revert=False, data_dir=str(tmp_path / "read-only"))
    page.goto(f"{read_only.url}/console/app/orders")
    dialogs.clear()
    page.click(f'tr.commit[data-version="{reverted}"] button.revert')
    wait_for(lambda: dialogs, what="the command shown")
    assert "--allow-revert false" in dialogs[0][0]
    assert dialogs[0][1] == f"git switch main && git revert --no-edit {reverted}"
    assert repo.git("rev-parse", "main") == reverted


def test_approve_halt_and_resume_from_the_console_signed_in_as_an_admin(repo, serve, tmp_path):
    """With an auth file the browser signs in with HTTP Basic (the admin's token as the password);
    the header names the client. The held-back section shows what the waiting commit would change
    (a screenshot of it is left); the approve button releases it, and its history row's diff link
    shows the same change; the rollout
    section's halt and resume buttons move the cohort; each effect is checked over HTTP."""
    from tests.server.test_approvals import ADMIN, POLICY, as_author, auth_file, bearer
    from tests.server.test_rollouts import INSTANCES, rollout_file

    repo.commit(
        {"orders.yml": "message: base\n", "orders-prod.yml": "limit: 10\n"}, "released before the policy"
    )
    repo.commit({"policy/approvals.yml": POLICY}, "protect prod")
    repo.git("checkout", "-q", "-b", "canary")
    canary = repo.commit({"orders.yml": "message: canary\n"}, "canary")
    repo.git("checkout", "-q", "main")
    repo.commit({"rollouts/orders.yml": rollout_file(steps="[100]")}, "roll out the canary")
    waiting = as_author(
        repo, {"orders-prod.yml": "limit: 20\n"}, "Carol <carol@example.com>", "raise the limit"
    )
    server = serve(repo.path, auth_file=auth_file(tmp_path))
    admin = bearer(ADMIN)

    def prod() -> requests.Response:
        return requests.get(f"{server.url}/orders/prod", headers=admin, timeout=10)

    def cohort_version() -> str:
        headers = {**admin, "X-Config-Client-Id": INSTANCES[0]}
        return requests.get(f"{server.url}/orders/default", headers=headers, timeout=10).json()["version"]

    def rollout_state() -> str:
        return requests.get(f"{server.url}/rollouts", headers=admin, timeout=10).json()["rollouts"][0][
            "state"
        ]

    assert prod().headers["X-Config-Held-Back-Reason"] == "awaiting approval"
    wait_for(lambda: rollout_state() == "running", what="the rollout to start")
    assert cohort_version() == canary
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            http_credentials={"username": "admin", "password": ADMIN},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.on("dialog", lambda dialog: dialog.accept("checked in the browser"))
            page.goto(f"{server.url}/console/app/orders?profiles=prod")
            assert page.inner_text("#signed-in") == "signed in as admin"
            # what the waiting commit would change, key by key, before anyone approves it
            limit = page.locator('#held-back .held-effect tr[data-key="limit"]')
            assert (
                limit.locator("code.old").inner_text() == "10"
                and limit.locator("code.new").inner_text() == "20"
            )
            assert limit.locator("code.where").inner_text() == "orders-prod.yml:1"
            assert "awaiting approval" in page.inner_text("#held-back .held-effect .hold")
            page.locator("#held-back .held-effect").screenshot(path=str(tmp_path / "console-held-effect.png"))
            assert (tmp_path / "console-held-effect.png").stat().st_size > 2_000
            page.click(f'#held-back button.approve[data-commit="{waiting}"]')
            wait_for(lambda: prod().json()["version"] == waiting, what="the approved commit served")
            assert "X-Config-Held-Back" not in prod().headers
            page.wait_for_selector("#held-back", state="detached")  # the page reloaded without it
            page.click(f'tr.commit[data-version="{waiting}"] a.change-diff')  # the history row's diff
            page.wait_for_selector('#change-effect tr[data-key="limit"]')
            assert page.inner_text('#change-effect tr[data-key="limit"] code.new') == "20"
            page.go_back()

            page.click('#rollout button.rollout-action[data-action="halt"]')
            page.wait_for_selector('#rollout button.rollout-action[data-action="resume"]')
            assert rollout_state() == "halted" and cohort_version() == waiting  # main's head
            assert "checked in the browser (by admin)" in page.inner_text("#rollout .halt-reason")
            page.click('#rollout button.rollout-action[data-action="resume"]')
            page.wait_for_selector('#rollout button.rollout-action[data-action="halt"]')
            assert rollout_state() == "running" and cohort_version() == canary
            assert "resumed by admin: checked in the browser" in page.inner_text("#rollout .last-move")
            page.screenshot(path=str(tmp_path / "console-rollout.png"), full_page=True)
            assert (tmp_path / "console-rollout.png").stat().st_size > 10_000
        finally:
            context.close()
