"""`config-server diff BASE..HEAD` and `GET /diff`: a change's effect per environment before it is merged.

Real git repositories: added, removed and changed keys with the file and line of each new value,
`{cipher}` values masked, profile files merged over plain ones, placeholders as the server renders
them, the held-back verdict of change safety, only the environments a change touches resolved,
the exit statuses, the markdown and JSON shapes, live instances from a server, and the endpoint
with admin and scoped tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from config_server.backends.git import GitBackend
from config_server.cli import main
from config_server.http.auth import hash_token
from config_server.observability.change_effect import change_effect
from config_server.safety.config_service import ConfigService
from config_server.safety.release_gates import BROKEN, broken_gate
from tests.helpers import GIT_ENV, SPRING_VECTOR

WORKFLOW = Path(__file__).resolve().parents[2] / "docs" / "ci" / "config-diff-github.yml"

SCHEMA = """type: object
properties:
  orders:
    type: object
    properties:
      max-items: {type: integer, maximum: 1000}
"""

BASE_FILES = {
    "application.yml": "region: eu\nlogging:\n  level: INFO\n",
    "orders.yml": "orders:\n  max-items: 100\n  currency: EUR\n  old-flag: true\n"
    "  url: https://shop/${orders.currency}\n",
    "orders-prod.yml": "orders:\n  max-items: 500\n",
    "payments.yml": "payments:\n  provider: acme\n",
    "schemas/orders.schema.yml": SCHEMA,
}


def diff(repo, *args: str, env: dict[str, str] | None = None):
    """Run `config-server diff` in the repository; stdout and stderr apart."""
    return CliRunner().invoke(
        main, ["diff", *args, "--repo", str(repo.path)], env={"ENCRYPT_KEY": None, **(env or {})}
    )


def as_json(result) -> dict:
    return json.loads(result.stdout)


def environment(answer: dict, application: str, profiles: str) -> dict:
    found = [
        e for e in answer["environments"] if e["application"] == application and e["profiles"] == [profiles]
    ]
    assert len(found) == 1, answer["environments"]
    return found[0]


def changes(one: dict) -> dict[str, tuple]:
    return {c["key"]: (c["kind"], c["old"], c["new"], c["file"], c["line"]) for c in one["changes"]}


@pytest.fixture
def branched(repo):
    """`main` with BASE_FILES, and a branch `feature` off it (checked out) to commit changes on."""
    repo.commit(BASE_FILES)
    repo.git("checkout", "-q", "-b", "feature")
    return repo


def test_added_removed_and_changed_keys_with_the_file_and_line_of_the_new_value(branched):
    branched.commit(
        {
            "orders.yml": "orders:\n  max-items: 100\n  currency: USD\n  new-flag: 7\n"
            "  url: https://shop/${orders.currency}\n"
        }
    )
    result = diff(branched, "main..feature", "--format", "json")
    assert result.exit_code == 1, result.output
    answer = as_json(result)
    default = changes(environment(answer, "orders", "default"))
    assert default == {
        "orders.currency": ("changed", "EUR", "USD", "orders.yml", 3),
        "orders.new-flag": ("added", None, 7, "orders.yml", 4),
        "orders.old-flag": ("removed", True, None, "orders.yml", 4),  # where it was set before
        # placeholders resolved as the server renders them: the url follows the currency
        "orders.url": ("changed", "https://shop/EUR", "https://shop/USD", "orders.yml", 5),
    }
    assert [e["application"] for e in answer["environments"]] == ["orders", "orders"]  # not payments
    assert answer["base"]["label"] == "main" and answer["head"]["label"] == "feature"
    assert answer["differs"] is True and answer["heldBack"] == 0


def test_a_profile_file_is_merged_over_the_plain_one(branched):
    branched.commit({"orders.yml": BASE_FILES["orders.yml"].replace("max-items: 100", "max-items: 200")})
    answer = as_json(diff(branched, "main..feature", "--format", "json"))
    assert changes(environment(answer, "orders", "default")) == {
        "orders.max-items": ("changed", 100, 200, "orders.yml", 2)
    }
    # prod's own file still sets max-items: nothing changes there, so prod is not listed
    assert [e["profiles"] for e in answer["environments"]] == [["default"]]
    branched.commit({"orders-prod.yml": None})
    answer = as_json(diff(branched, "main..feature", "--format", "json"))
    assert changes(environment(answer, "orders", "prod"))["orders.max-items"] == (
        "changed",
        500,
        200,
        "orders.yml",
        2,
    )


def test_cipher_values_are_shown_changed_or_unchanged_never_in_clear(branched):
    secret = "{cipher}" + SPRING_VECTOR
    branched.commit(
        {"payments.yml": f"payments:\n  provider: acme\n  key: '{secret}'\n  dsn: x-${{payments.key}}\n"}
    )
    result = diff(branched, "main..feature", "--format", "json", env={"ENCRYPT_KEY": "foo"})
    assert SPRING_VECTOR not in result.output and "SUPER SECRET" not in result.output
    rows = changes(environment(as_json(result), "payments", "default"))
    assert rows["payments.key"] == ("added", None, "{cipher}****", "payments.yml", 3)
    assert rows["payments.dsn"][2] == "x-{cipher}****"  # also where a placeholder copied it
    same = branched.commit({"payments.yml": f"payments:\n  provider: other\n  key: '{secret}'\n"})
    rows = changes(
        environment(as_json(diff(branched, f"{same}~1..{same}", "--format", "json")), "payments", "default")
    )
    assert "payments.key" not in rows and rows["payments.provider"][0] == "changed"  # unchanged secret
    branched.commit({"payments.yml": "payments:\n  provider: other\n  key: '{cipher}00ff'\n"})
    result = diff(branched, "HEAD~1..HEAD", "--format", "json", env={"ENCRYPT_KEY": "foo"})
    one = environment(as_json(result), "payments", "default")
    assert changes(one)["payments.key"][:3] == ("changed", "{cipher}****", "{cipher}****")
    assert one["heldBack"] and one["holds"][0]["reason"] == BROKEN  # it does not decrypt
    assert "00ff" not in result.output


def test_the_held_back_verdict_says_why_with_file_and_line(branched):
    branched.commit({"orders-prod.yml": "orders:\n  max-items: 5000\n"})
    result = diff(branched, "main..feature", "--format", "json")
    answer = as_json(result)
    prod = environment(answer, "orders", "prod")
    assert prod["heldBack"] is True and answer["heldBack"] == 1
    assert prod["holds"] == [
        {
            "reason": "broken",
            "problems": [
                {
                    "file": "orders-prod.yml",
                    "line": 2,
                    "message": "orders.max-items: 5000 is greater than the maximum of 1000 "
                    "[maximum at schemas/orders.schema.yml:6]",
                }
            ],
        }
    ]
    assert changes(prod)["orders.max-items"][:3] == ("changed", 500, 5000)
    text = diff(branched, "main..feature")
    assert (
        "orders/prod: held back (broken)\n  ! orders-prod.yml:2: orders.max-items: 5000 is greater"
        in text.stdout
    )
    assert "  ~ orders.max-items: 500 -> 5000  (orders-prod.yml:2)" in text.stdout


def test_a_file_that_does_not_parse_is_held_back_without_rows(branched):
    branched.commit({"payments.yml": "payments: [oops\n"})
    one = environment(as_json(diff(branched, "main..feature", "--format", "json")), "payments", "default")
    assert one["heldBack"] and one["changes"] == [] and one["headError"].startswith("payments.yml:")
    assert one["holds"][0]["problems"][0]["file"] == "payments.yml"


def test_a_new_schema_that_rejects_unchanged_settings_is_listed_as_held_back(branched):
    branched.commit({"schemas/payments.schema.yml": "required: [missing]\n"})
    answer = as_json(diff(branched, "main..feature", "--format", "json"))
    assert [(e["application"], e["heldBack"], e["changes"]) for e in answer["environments"]] == [
        ("payments", True, [])
    ]


def test_a_schema_change_holds_back_the_applications_whose_schemas_ref_it(branched):
    """`payments.schema.yml` may `$ref` another application's schema file: a change to that file
    is a change for payments too (before, only `orders` was resolved, and the diff said nothing
    of payments, which the new schema breaks)."""
    branched.commit(
        {
            "payments.yml": "payments:\n  provider: acme\n  retries: 5\n",
            "schemas/payments.schema.yml": "type: object\nproperties:\n  payments:\n"
            "    properties:\n      retries: {$ref: 'orders.schema.yml#/$defs/small'}\n",
            "schemas/orders.schema.yml": SCHEMA + "$defs:\n  small: {type: integer}\n",
        }
    )
    branched.commit({"schemas/orders.schema.yml": SCHEMA + "$defs:\n  small: {type: integer, maximum: 3}\n"})
    answer = as_json(diff(branched, "HEAD~1..HEAD", "--format", "json"))
    payments = environment(answer, "payments", "default")
    assert payments["heldBack"] is True and payments["changes"] == []


def test_a_malformed_approval_policy_holds_back_every_environment(branched):
    """Every environment's checks read `policy/approvals.yml`: a change to it alone is a change
    for all of them (before, no environment read it by name, so the diff said nothing)."""
    branched.commit({"policy/approvals.yml": "profiles: [prod]\nrequird: 1\n"})
    answer = as_json(diff(branched, "main..feature", "--format", "json"))
    assert answer["environmentsResolved"] == answer["environmentsNamed"] == 4
    assert [e["heldBack"] for e in answer["environments"]] == [True] * 4


def test_a_change_that_leaves_a_protected_environment_as_it_was_needs_no_approval(branched):
    """The server asks an approval only for a new content ETag; the diff said `awaiting approval`
    for every protected environment a shared-file change resolved, changed or not."""
    branched.commit({"policy/approvals.yml": "profiles: [prod]\n"})
    branched.commit({"application.yml": "# who owns this: platform\n" + BASE_FILES["application.yml"]})
    answer = as_json(diff(branched, "HEAD~1..HEAD", "--format", "json"))
    assert answer["environmentsResolved"] == 4
    assert answer["environments"] == [] and answer["heldBack"] == 0
    branched.commit({"orders-prod.yml": "orders:\n  max-items: 600\n"})
    prod = environment(as_json(diff(branched, "HEAD~1..HEAD", "--format", "json")), "orders", "prod")
    assert [hold["reason"] for hold in prod["holds"]] == ["awaiting approval"]


def test_exit_statuses_and_fail_on_held_back(branched):
    assert diff(branched, "main..main").exit_code == 0
    branched.commit({"payments.yml": "payments:\n  provider: other\n"})
    assert diff(branched, "main..feature").exit_code == 1
    assert diff(branched, "main..feature", "--fail-on", "held-back").exit_code == 0  # nothing held back
    branched.commit({"orders-prod.yml": "orders:\n  max-items: 5000\n"})
    assert diff(branched, "main..feature", "--fail-on", "held-back").exit_code == 1
    for bad in ("main..no-such-branch", "main", "main...feature"):
        result = diff(branched, bad)
        assert result.exit_code == 2 and result.stderr.startswith("error: "), (bad, result.output)


def test_git_revision_expressions_and_an_empty_side_mean_the_default_branch(branched):
    branched.commit({"payments.yml": "payments:\n  provider: other\n"})
    answer = as_json(diff(branched, "..HEAD", "--format", "json"))
    assert answer["base"]["label"] == "main" and answer["head"]["label"] == "HEAD"
    assert answer["head"]["version"] == branched.head()
    assert [e["application"] for e in answer["environments"]] == ["payments"]
    assert as_json(diff(branched, "HEAD~1..", "--format", "json"))["base"]["version"] == branched.git(
        "rev-parse", "main"
    )


def test_only_environments_that_read_a_changed_file_are_resolved(branched):
    branched.commit({"payments.yml": "payments:\n  provider: other\n"})
    answer = as_json(diff(branched, "main..feature", "--format", "json"))
    # application/default, orders/default, orders/prod, payments/default are named; payments read it
    assert answer["environmentsNamed"] == 4 and answer["environmentsResolved"] == 1
    branched.commit({"application.yml": "region: us\nlogging:\n  level: INFO\n"})
    answer = as_json(diff(branched, "HEAD~1..HEAD", "--format", "json"))
    assert answer["environmentsResolved"] == 4 and len(answer["environments"]) == 4
    branched.commit({"schemas/application.schema.yml": "type: object\n"})
    assert as_json(diff(branched, "HEAD~1..HEAD", "--format", "json"))["environmentsResolved"] == 4


def test_path_counts_only_the_changes_under_it(branched):
    branched.commit(
        {"payments.yml": "payments:\n  provider: other\n", "orders-prod.yml": "orders:\n  max-items: 9\n"}
    )
    answer = as_json(diff(branched, "main..feature", "payments.yml", "--format", "json"))
    assert [e["application"] for e in answer["environments"]] == ["payments"] and answer[
        "path"
    ] == "payments.yml"
    assert diff(branched, "main..feature", "templates").exit_code == 0


def test_a_search_path_folder_is_read_as_the_server_reads_it(repo):
    repo.commit({"orders.yml": "a: 1\n", "teams/orders/orders.yml": "b: 1\n", "payments.yml": "p: 1\n"})
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit({"teams/orders/orders.yml": "b: 2\n"})
    answer = as_json(diff(repo, "main..feature", "--format", "json", "--search-paths", "teams/{application}"))
    assert changes(environment(answer, "orders", "default")) == {
        "b": ("changed", 1, 2, "teams/orders/orders.yml", 1)
    }
    assert as_json(diff(repo, "main..feature", "--format", "json"))["environments"] == []  # not searched


def test_markdown_fits_a_pull_request_comment(branched):
    branched.commit(
        {
            "application.yml": "region: us\nlogging:\n  level: INFO\n",
            "orders-prod.yml": "orders:\n  max-items: 5000\n",
            "payments.yml": "payments:\n  provider: 'a|b'\n",
        }
    )
    result = diff(branched, "main..feature", "--format", "markdown")
    assert result.exit_code == 1
    text = result.stdout
    assert text.startswith("### 🛑 Configuration diff `main (")
    assert "#### `orders/prod`: 🛑 **held back** (broken)" in text
    assert "> `orders-prod.yml:2`: orders.max-items: 5000 is greater than the maximum of 1000" in text
    assert "| ~ | `orders.max-items` | `500` | `5000` | `orders-prod.yml:2` |" in text
    assert '| ~ | `payments.provider` | `"acme"` | `"a\\|b"` | `payments.yml:2` |' in text  # a pipe escaped
    # environments alike are one group: application and orders/default change only the region
    assert "#### `application/default`, `orders/default`: served" in text
    assert text.count("| ~ | `region` |") == 3  # those two, prod, payments


def test_instances_of_each_environment_come_from_a_running_server(branched, serve, http):
    branched.commit({"payments.yml": "payments:\n  provider: other\n"})
    branched.git("checkout", "-q", "main")
    server = serve(branched.path)
    for n in range(2):
        assert http.get(f"{server.url}/payments/default", headers={"X-Config-Client-Id": f"pay-{n}"}).ok
    server.app.extensions["config_server"].inventory.flush()
    result = diff(branched, "main..feature", "--format", "json", "--server", server.url)
    assert environment(as_json(result), "payments", "default")["instances"] == {"main": 2}
    text = diff(branched, "main..feature", "--server", server.url).stdout
    assert text.startswith("payments/default: served [2 live instances: main: 2]\n")
    server.stop()
    result = diff(branched, "main..feature", "--server", server.url)
    assert result.exit_code == 2 and result.stderr.startswith("error: cannot reach ")


# -- GET /diff -----------------------------------------------------------------------------------

TOKENS = {name: f"token-of-{name}-{'x' * 20}" for name in ("orders", "admin", "monitor")}
AUTH = f"""
clients:
  - name: orders-team
    tokens: [{hash_token(TOKENS["orders"])}]
    roles: [read]
    applications: [orders]
  - name: admin
    tokens: [{hash_token(TOKENS["admin"])}]
    roles: [admin]
  - name: monitor
    tokens: [{hash_token(TOKENS["monitor"])}]
    roles: [monitor]
"""


@pytest.fixture
def secured(branched, serve, tmp_path):
    branched.commit(
        {"payments.yml": "payments:\n  provider: other\n", "orders-prod.yml": "orders:\n  max-items: 5000\n"}
    )
    branched.git("checkout", "-q", "main")
    auth = tmp_path / "auth.yml"
    auth.write_text(AUTH)
    return serve(branched.path, auth_file=str(auth))


def get_diff(http, server, token: str | None, **params):
    headers = {"Authorization": f"Bearer {TOKENS[token]}"} if token else {}
    return http.get(f"{server.url}/diff", params=params, headers=headers)


def test_the_endpoint_answers_what_the_command_prints(secured, http, branched):
    answer = get_diff(http, secured, "admin", **{"from": "main", "to": "feature"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    printed = as_json(diff(branched, "main..feature", "--format", "json"))
    for one in (body, printed):
        for environment_json in one["environments"]:
            environment_json["instances"] = None  # the server counts its inventory: none here
    assert body == printed
    assert [(e["application"], e["profiles"][0], e["heldBack"]) for e in body["environments"]] == [
        ("orders", "prod", True),
        ("payments", "default", False),
    ]


def test_a_scoped_token_sees_only_the_applications_it_may_read(secured, http):
    body = get_diff(http, secured, "orders", **{"from": "main", "to": "feature"}).json()
    assert [e["application"] for e in body["environments"]] == ["orders"]
    assert body["environmentsNamed"] == 2  # orders/default and orders/prod: nothing of payments
    assert "payments" not in json.dumps(body)
    assert get_diff(http, secured, "monitor", **{"from": "main", "to": "feature"}).status_code == 403
    assert get_diff(http, secured, None, **{"from": "main", "to": "feature"}).status_code == 401


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"from": "main", "to": "no-such-branch"}, 404, "label 'no-such-branch' not found"),
        ({"from": "main"}, 400, "to is required"),
        ({"from": "..", "to": "main"}, 400, "label"),
        ({"from": "main", "to": "feature", "path": "../x"}, 400, "path"),
    ],
)
def test_bad_revisions_are_a_clear_4xx(secured, http, params, status, message):
    answer = get_diff(http, secured, "admin", **params)
    assert answer.status_code == status and message in answer.json()["message"], answer.text


def test_the_changed_files_of_two_commits_come_from_their_trees(repo, tmp_path):
    first = repo.commit({"a.yml": "a: 1\n", "deep/x/b.yml": "b: 1\n", "deep/y/c.yml": "c: 1\n", "t.txt": "t"})
    second = repo.commit({"deep/x/b.yml": "b: 2\n", "t.txt": None, "deep/z/new.yml": "n: 1\n"})
    backend = GitBackend(str(repo.path), tmp_path / "cache")
    try:
        assert backend.changed_paths(first, second) == {"deep/x/b.yml", "t.txt", "deep/z/new.yml"}
        assert backend.changed_paths(second, second) == frozenset()
        service = ConfigService(backend, cache_size=1)
        effect = change_effect(service, first, second, gates=[broken_gate(None, decrypt=False)])
        assert effect.environments == [] and effect.resolved == 0  # no configuration file of the root
    finally:
        backend.close()


def test_the_github_workflow_diffs_a_pull_requests_merge_and_fails_when_held_back(branched, tmp_path):
    branched.commit({"orders-prod.yml": "orders:\n  max-items: 5000\n"})
    branched.git("checkout", "-q", "main")
    branched.git("merge", "-q", "--no-ff", "-m", "the pull request's merge", "feature")  # what CI checks out
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["diff"]["steps"]
    script = next(step["run"] for step in steps if step.get("id") == "diff")
    output = tmp_path / "github-output"
    env = {
        **GIT_ENV,
        "GITHUB_OUTPUT": str(output),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env.pop("ENCRYPT_KEY", None)
    subprocess.run(["bash", "-e", "-c", script], cwd=branched.path, env=env, check=True, capture_output=True)
    assert output.read_text() == "status=1\n"
    comment = (branched.path / "diff.md").read_text()
    assert (
        comment.startswith("### 🛑 Configuration diff `HEAD^1 (")
        and "`orders/prod`: 🛑 **held back**" in comment
    )


def test_the_endpoint_does_not_block_the_gevent_worker(repo, server_process, http):
    repo.commit({"application.yml": "region: eu\n", **{f"app-{n:03d}.yml": f"n: {n}\n" for n in range(300)}})
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit({"application.yml": "region: us\n"})
    repo.git("checkout", "-q", "main")
    server = server_process("--repo", str(repo.path), "--workers", "1")
    server.wait_ready(lambda: http.get(f"{server.url}/health", timeout=1).ok)
    answer = http.get(f"{server.url}/diff", params={"from": "main", "to": "feature"}, timeout=30)
    assert answer.status_code == 200 and len(answer.json()["environments"]) == 301
    # the fixture fails the test when gevent's blocking monitor reported the loop held for 0.1 s
