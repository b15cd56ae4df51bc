"""The console without a browser: access control, the held-back hook, the page's long poll, hostile names."""

from __future__ import annotations

import base64
import re
import threading
import time
from datetime import datetime
from html.parser import HTMLParser

import requests

from tests.helpers import wait_for
from tests.server.test_auth import TOKENS, auth_yaml, bearer


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"anyone:{token}".encode()).decode()}


def test_console_needs_the_admin_role_and_accepts_the_token_as_basic_password(repo, serve, http, tmp_path):
    repo.commit({"orders.yml": "a: 1\n"})
    auth_file = tmp_path / "auth.yml"
    auth_file.write_text(auth_yaml())
    server = serve(repo.path, auth_file=str(auth_file))
    anonymous = http.get(f"{server.url}/console/")
    assert anonymous.status_code == 401
    assert "Basic realm=" in anonymous.headers["WWW-Authenticate"]  # the browser asks for the token
    assert http.get(f"{server.url}/console/", headers=bearer("orders")).status_code == 403
    assert http.get(f"{server.url}/console/app/orders", headers=bearer("ops")).status_code == 403
    assert http.get(f"{server.url}/console/app/orders/wait?etag=x", headers=bearer("ops")).status_code == 403
    page = http.get(f"{server.url}/console/", headers=basic(TOKENS["admin"]))
    assert page.status_code == 200 and 'data-application="orders"' in page.text
    assert http.get(f"{server.url}/console/app/orders", headers=bearer("admin")).status_code == 200


def test_held_back_environments_come_from_the_hook(repo, serve, http):
    repo.commit({"orders.yml": "a: 1\n", "payments.yml": "p: 1\n"})
    server = serve(repo.path)
    held = {
        "application": "orders",
        "profiles": "prod",
        "label": "main",
        "commit": "c0ffee" * 6,
        "error": "orders.yml:1: bad",
    }
    server.app.extensions["config_held_back"] = lambda app=None: [held] if app in ("orders", None) else []
    index = http.get(f"{server.url}/console/").text
    orders_row = index.split('data-application="orders"')[1].split("</tr>")[0]
    payments_row = index.split('data-application="payments"')[1].split("</tr>")[0]
    assert "held back" in orders_row and "held back" not in payments_row
    page = http.get(f"{server.url}/console/app/orders").text
    assert 'id="held-back"' in page and "orders.yml:1: bad" in page


def test_the_page_long_poll_answers_when_the_environment_changes(repo, serve, http):
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    etag = http.get(f"{server.url}/orders/prod").headers["ETag"].strip('"')
    answer = {}

    def wait():
        answer["body"] = requests.get(
            f"{server.url}/console/app/orders/wait", params={"profiles": "prod", "etag": etag}, timeout=30
        ).json()

    thread = threading.Thread(target=wait)
    thread.start()
    wait_for(lambda: server.app.extensions["config_server"].hub.watchers() == 1, what="the page's poll")
    repo.commit({"orders.yml": "a: 2\n"})
    thread.join(timeout=30)
    assert answer["body"]["changed"] is True and answer["body"]["etag"] != etag


def test_hostile_names_and_versions_are_400(repo, serve, http):
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    for path in (
        "/console/app/..x",
        "/console/app/orders?profiles=..",
        "/console/app/orders?label=--upload-pack=x",
        "/console/app/orders?from=HEAD~1",
        "/console/app/orders/wait?label=--all",
    ):
        answer = http.get(server.url + path)
        assert answer.status_code in (400, 404), (path, answer.status_code)
        assert answer.headers["Content-Type"] == "application/json"
    assert http.get(f"{server.url}/console/app/orders?from=abcdef1").status_code == 200  # unknown: shown


def test_the_index_asks_for_held_back_environments_once(repo, serve, http):
    """One held-back lookup per index request, grouped by application, not one per application."""
    repo.commit({f"app{i}.yml": f"a: {i}\n" for i in range(12)})
    server = serve(repo.path)
    calls = []

    def lookup(application=None):
        calls.append(application)
        held = {
            "application": "app3",
            "profiles": "default",
            "label": "main",
            "commit": "c" * 40,
            "error": "bad",
        }
        return [held] if application in (None, "app3") else []

    server.app.extensions["config_held_back"] = lookup
    index = http.get(f"{server.url}/console/").text
    assert calls == [None]
    held_rows = [
        row for row in index.split("<tr data-application=")[1:] if "held back" in row.split("</tr>")[0]
    ]
    assert [row.split('"')[1] for row in held_rows] == ["app3"]


def test_the_instances_fragment_is_the_pages_instances_alone(repo, serve, http, tmp_path):
    """The page's refresh reads a fragment: instances and rejections, no history, no diff; admin only."""
    first = repo.commit({"orders.yml": "a: 1\n"})
    auth_file = tmp_path / "auth.yml"
    auth_file.write_text(auth_yaml())
    server = serve(repo.path, auth_file=str(auth_file))
    headers = {
        **bearer("admin"),
        "X-Config-Client-Id": "orders-1",
        "X-Config-Rejected": 'bad1; reason="port"',
    }
    assert http.get(f"{server.url}/orders/prod", headers=headers).status_code == 200
    server.app.extensions["config_server"].inventory.flush()
    url = f"{server.url}/console/app/orders/instances?profiles=prod"
    assert http.get(url).status_code == 401
    assert http.get(url, headers=bearer("ops")).status_code == 403
    fragment = http.get(url, headers=bearer("admin"))
    assert fragment.status_code == 200 and fragment.headers["Content-Type"].startswith("text/html")
    text = fragment.text
    assert f'data-instance="orders-1" data-version="{first}"' in text
    assert 'id="rejections"' in text and 'data-version="bad1"' in text
    assert 'id="history"' not in text and 'id="diff"' not in text and "<html" not in text
    assert 'data-catching-up="false"' in text
    page = http.get(f"{server.url}/console/app/orders?profiles=prod", headers=bearer("admin")).text
    assert "/console/app/orders/instances?" in page  # the page's refresh reads the fragment
    assert http.get(f"{server.url}/console/app/..x/instances", headers=bearer("admin")).status_code == 400


def _select(page: str, name: str) -> str:
    return page.split(f'<select name="{name}">')[1].split("</select>")[0]


def test_the_diff_form_offers_labels_heads_and_versions_in_view_and_selects_a_branch_to(repo, serve, http):
    """A canary branch's commit can be picked in the diff form, and when it is the "to", the form
    says so (it showed the label's newest commit as selected) (issue 20 item 7)."""
    first = repo.commit({"orders.yml": "a: 1\n"})
    second = repo.commit({"orders.yml": "a: 2\n"})
    repo.git("checkout", "--quiet", "-b", "canary")
    canary = repo.commit({"orders.yml": "a: 3\n"}, message="canary a=3")
    repo.git("checkout", "--quiet", "-b", "spike", "main")
    spike = repo.commit({"orders.yml": "a: 4\n"})
    repo.git("checkout", "--quiet", "main")
    server = serve(repo.path)
    headers = {"X-Config-Client-Id": "orders-canary-1"}
    assert http.get(f"{server.url}/orders/default/canary", headers=headers).json()["version"] == canary
    server.app.extensions["config_server"].inventory.flush()
    page = http.get(f"{server.url}/console/app/orders").text
    to_options = _select(page, "to")
    assert f'value="{canary}"' in to_options and "head of canary" in to_options
    assert f'value="{canary}"' in _select(page, "from")
    assert f'<option value="{second}" selected' in to_options  # the label's newest by default
    page = http.get(f"{server.url}/console/app/orders?from={first}&to={canary}").text
    assert f'<option value="{canary}" selected' in _select(page, "to")
    assert f'<option value="{first}" selected' in _select(page, "from")
    assert f'<option value="{second}" selected' not in _select(page, "to")
    assert 'data-key="a" data-kind="changed"' in page
    # a version only the query names (not a head, not in view) is still the one shown as chosen
    assert spike not in page
    page = http.get(f"{server.url}/console/app/orders?to={spike}").text
    assert f'<option value="{spike}" selected' in _select(page, "to")
    assert _select(page, "to").count(" selected") == 1


def test_the_history_lists_commits_that_changed_the_settings_and_held_back_ones(repo, serve, http):
    """A commit to another file or one that leaves the resolved settings as they were is not in the
    application's history; a broken commit is, marked held back, even after a later fix; the page
    names the commit that last changed the settings (issue 20 item 1)."""
    first = repo.commit({"orders.yml": "a: 1\n", "payments.yml": "p: 1\n"}, message="first")
    repo.commit({"payments.yml": "p: 2\n"}, message="payments only")
    repo.commit({"orders.yml": "# a comment\na: 1\n"}, message="comment only")
    broken = repo.commit({"orders.yml": "a: [1\n"}, message="broken")
    fixed = repo.commit({"orders.yml": "a: 2\n"}, message="fixed")
    repo.commit({"orders.yml": "a: 2  # same\n"}, message="same again")
    server = serve(repo.path)
    page = http.get(f"{server.url}/console/app/orders").text
    history_rows = page.split('id="history"')[1].split("</table>")[0].split('<tr class="commit" ')[1:]
    listed = [
        (row.split('data-version="')[1].split('"')[0], 'data-held-back="true"' in row) for row in history_rows
    ]
    assert listed == [(fixed, False), (broken, True), (first, False)]
    assert "held back" in history_rows[1]
    assert f'id="changed-in" title="{fixed}"' in page


TIME = re.compile(r'<time datetime="([^"]+)" title="\1">(just now|\d+ (?:s|min|h|d) ago)</time>')


def _times(html: str) -> list[str]:
    """The ISO times of the relative `<time>` elements in `html`, each checked to be within a minute."""
    found = [moment for moment, _ in TIME.findall(html)]
    for moment in found:
        assert abs(datetime.fromisoformat(moment).timestamp() - time.time()) < 60, moment
    return found


def test_times_are_relative_with_the_iso_time_on_hover(repo, serve, http):
    """Instances' since and last seen, and the history's commit times, read "12 s ago" with the
    ISO time as the element's datetime and title; the fragment the page refreshes from too
    (issue 20 item 11)."""
    repo.commit({"orders.yml": "a: 1\n"})
    server = serve(repo.path)
    assert http.get(f"{server.url}/orders/prod", headers={"X-Config-Client-Id": "orders-1"}).ok
    server.app.extensions["config_server"].inventory.flush()
    page = http.get(f"{server.url}/console/app/orders?profiles=prod").text
    row = page.split('data-instance="orders-1"')[1].split("</tr>")[0]
    assert len(_times(row)) == 2  # since, last seen
    history_row = page.split('id="history"')[1].split('<tr class="commit" ')[1].split("</tr>")[0]
    assert len(_times(history_row)) == 1
    fragment = http.get(f"{server.url}/console/app/orders/instances?profiles=prod").text
    assert len(_times(fragment.split('data-instance="orders-1"')[1].split("</tr>")[0])) == 2


class _Tables(HTMLParser):
    """Counts the rows of each table, and the elements in each section besides its heading."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[int] = []
        self.sections: list[tuple[str, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.rows.append(0)
        elif tag == "tr":
            self.rows[-1] += 1
        elif tag == "section":
            self.sections.append((dict(attrs).get("id") or "", 0))
        elif self.sections and tag not in ("h2",):
            name, count = self.sections[-1]
            self.sections[-1] = (name, count + 1)


def test_empty_sections_and_tables_are_not_drawn(repo, serve, http):
    """No instance, no rejection, no history: no empty table, no heading over nothing; a rejection
    draws its section (issue 20 item 11)."""
    repo.commit({"orders.yml": "a: 1\n", "payments.yml": "p: 1\n"})
    server = serve(repo.path)
    page = http.get(f"{server.url}/console/app/orders").text
    for html in (page, http.get(f"{server.url}/console/app/orders/instances").text):
        parsed = _Tables()
        parsed.feed(html)
        assert all(rows >= 2 for rows in parsed.rows), parsed.rows  # a header and at least one row
        assert all(count > 0 for _, count in parsed.sections), parsed.sections
    assert 'id="instances"' not in page and 'id="rejections"' not in page and 'id="diff"' not in page
    assert "No difference" not in page
    headers = {"X-Config-Client-Id": "orders-1", "X-Config-Rejected": 'bad1; reason="port"'}
    assert http.get(f"{server.url}/orders/default", headers=headers).ok
    server.app.extensions["config_server"].inventory.flush()
    page = http.get(f"{server.url}/console/app/orders").text
    assert 'id="instances"' in page and 'id="rejections"' in page and 'data-version="bad1"' in page
    index = http.get(f"{server.url}/console/?q=nothing-matches").text
    parsed = _Tables()
    parsed.feed(index)
    assert parsed.rows == [] and "No application matches" in index


def test_the_index_has_a_search_box_and_filters_by_q(repo, serve, http):
    """The index's search box filters the list in the page; without JavaScript its form sends `?q=`,
    which the server applies (case-insensitive, part of the name); the query is shown escaped
    (issue 20 item 11)."""
    repo.commit({"orders.yml": "a: 1\n", "payments.yml": "p: 1\n", "payroll.yml": "p: 2\n"})
    server = serve(repo.path)
    index = http.get(f"{server.url}/console/").text
    assert '<input type="search" name="q"' in index and 'id="search"' in index
    shown = re.findall(r'<tr data-application="([^"]+)"', index)
    assert shown == ["orders", "payments", "payroll"]
    index = http.get(f"{server.url}/console/", params={"q": "PAY"}).text
    assert re.findall(r'<tr data-application="([^"]+)"', index) == ["payments", "payroll"]
    assert 'value="PAY"' in index
    hostile = http.get(f"{server.url}/console/", params={"q": '"><script>alert(1)</script>'}).text
    assert "<script>alert(1)" not in hostile and "&lt;script&gt;alert(1)" in hostile
