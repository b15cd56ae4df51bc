"""`config-server validate`: the server's checks over a whole repository, before a push.

Exact lines (`file:line: application/profile: message`) and exit codes (1 problems, 0 clean,
2 usage), on a working tree, on a git revision and on a bare repository, as the pre-commit hook,
the CI step and the pre-receive hook run it.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from config_server.cli import main
from tests.helpers import GIT_ENV, SPRING_VECTOR, GitRepo

SAMPLE = Path(__file__).resolve().parents[2] / "sample-config-repo"


def validate(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["validate", *args], env={"ENCRYPT_KEY": None, **(env or {})})


def test_the_sample_repository_is_clean():
    result = validate(str(SAMPLE))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "0 problems in 13 environments" in result.stderr


def test_problems_are_reported_one_line_each_with_file_and_line(tmp_path):
    tree = tmp_path / "config"
    shutil.copytree(SAMPLE, tree)
    orders = (tree / "orders.yml").read_text()
    (tree / "orders.yml").write_text(orders.replace("max-items: 500", "max-items: 5000"))
    (tree / "payments-prod.yml").write_text("payments:\n  timeout-seconds: 3\n  retry: [\n")
    (tree / "payments.yml").write_text(
        (tree / "payments.yml").read_text().replace("  provider: stripe\n", "")
    )
    result = validate(str(tree))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "orders.yml:15: orders/prod: orders.max-items: 5000 is greater than the maximum of 1000 "
        "[maximum at schemas/orders.schema.yml:10]",
        "schemas/payments.schema.yml:8: payments/default: payments.provider: missing "
        "[required at schemas/payments.schema.yml:8]",
        "payments-prod.yml:4: payments/prod: did not find expected node content at line 4, column 1",
    ]
    assert "3 problems in 13 environments" in result.stderr


def test_exact_lines_and_exit_codes_on_a_git_revision(tmp_path):
    repo = GitRepo(tmp_path / "repo")
    good = repo.commit(
        {
            "application.yml": "database:\n  host: db\n",
            "orders.yml": "orders:\n  limit: 10\n  name: shop\n",
            "orders-prod.yml": "orders:\n  limit: 5000\n",
            "billing.properties": "billing.rate=abc\n",
            "schemas/orders.schema.json": json.dumps(
                {"type": "object", "properties": {"orders": {"properties": {"limit": {"maximum": 100}}}}},
                indent=2,
            ),
            "schemas/billing.schema.yml": "properties:\n  billing:\n    required: [rate, currency]\n",
        }
    )
    repo.git("tag", "v1")
    broken = repo.commit({"orders.yml": "orders:\n  limit: 10\n  limit: 11\n"})
    result = validate(str(repo.path), "--rev", "v1")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "schemas/billing.schema.yml:3: billing/default: billing.currency: missing "
        "[required at schemas/billing.schema.yml:3]",
        "orders-prod.yml:2: orders/prod: orders.limit: 5000 is greater than the maximum of 100 "
        "[maximum at schemas/orders.schema.json:7]",
    ]
    head = validate(str(repo.path), "--rev", "main")
    assert head.exit_code == 1
    assert head.stdout.splitlines()[1:] == [
        "orders.yml:3: orders/default: duplicate key 'limit' at line 3, column 3",
        "orders.yml:3: orders/prod: duplicate key 'limit' at line 3, column 3",
    ]
    assert f"at {broken[:12]}" in head.stderr and good != broken
    as_json = json.loads(validate(str(repo.path), "--rev", good, "--format", "json").stdout)
    assert as_json["version"] == good and as_json["environments"] == 4
    assert as_json["problems"][0] == {
        "application": "billing",
        "profiles": ["default"],
        "file": "schemas/billing.schema.yml",
        "line": 3,
        "message": "billing.currency: missing [required at schemas/billing.schema.yml:3]",
    }


def test_clean_revision_exits_0_and_usage_errors_exit_2(tmp_path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit({"orders.yml": "a: 1\n"})
    assert validate(str(repo.path), "--rev", "main").exit_code == 0
    assert validate(str(repo.path), "--rev", "no-such-branch").exit_code == 2
    assert validate(str(repo.path), "--format", "xml").exit_code == 2
    assert validate(str(tmp_path / "missing")).exit_code == 2
    assert validate(str(tmp_path), "--rev", "main").exit_code == 2  # not a git repository


def test_cipher_values_are_checked_with_a_key_and_noted_without(tmp_path):
    tree = tmp_path / "config"
    tree.mkdir()
    (tree / "orders.yml").write_text(f"db:\n  ok: '{{cipher}}{SPRING_VECTOR}'\n  bad: '{{cipher}}00ff'\n")
    without = validate(str(tree))
    assert without.exit_code == 0 and "{cipher} values were not checked" in without.stderr
    with_key = validate(str(tree), env={"ENCRYPT_KEY": "foo"})
    assert with_key.exit_code == 1
    assert with_key.stdout.startswith("orders.yml:3: orders/default: db.bad: cannot decrypt")


def test_a_bare_repository_is_read_at_its_head_as_a_pre_receive_hook_does(tmp_path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit({"orders.yml": "a: [\n"})
    bare = tmp_path / "bare.git"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(repo.path), str(bare)],
        env=GIT_ENV,
        check=True,
        capture_output=True,
    )
    result = validate(str(bare))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "orders.yml:2: orders/default: did not find expected node content at line 2, column 1"
    ]


def test_pre_commit_hook_definition_runs_this_command():
    hooks = (SAMPLE.parent / ".pre-commit-hooks.yaml").read_text()
    (hook,) = yaml.safe_load(hooks)
    assert hook["id"] == "config-server-validate" and hook["entry"] == "config-server validate"
    assert hook["pass_filenames"] is False and hook["language"] == "python"
    # pre-commit installs the hook's repository without extras: it must name the server's packages
    config = configparser.ConfigParser()
    config.read(SAMPLE.parent / "setup.cfg")
    server = config["options.extras_require"]["server"].split()
    assert hook["additional_dependencies"] == server


def test_the_documented_pre_receive_hook_refuses_a_broken_push(tmp_path):
    docs = (SAMPLE.parent / "docs" / "change-safety.md").read_text()
    section = docs.split("### A pre-receive hook", 1)[1]
    script = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    bare = tmp_path / "server.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], env=GIT_ENV, check=True)
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(script)
    hook.chmod(0o755)
    env = {**GIT_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{GIT_ENV.get('PATH', '')}"}
    env.pop("ENCRYPT_KEY", None)
    repo = GitRepo(tmp_path / "work")
    repo.commit({"orders.yml": "orders:\n  limit: 1\n", "schemas/orders.schema.yml": SCHEMA_MAX_10})

    def push() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "push", "-q", str(bare), "main"], cwd=repo.path, env=env, capture_output=True, text=True
        )

    assert push().returncode == 0
    repo.commit({"orders.yml": "orders:\n  limit: 11\n"})
    refused = push()
    assert refused.returncode != 0
    assert (
        "orders.yml:2: orders/default: orders.limit: 11 is greater than the maximum of 10" in refused.stderr
    )
    repo.commit({"orders.yml": "orders:\n  limit: 9\n"})
    assert push().returncode == 0
    assert (
        subprocess.run(
            ["git", "rev-parse", "main"], cwd=bare, env=env, capture_output=True, text=True
        ).stdout.strip()
        == repo.head()
    )


SCHEMA_MAX_10 = "properties:\n  orders:\n    properties:\n      limit: {maximum: 10}\n"


def test_hostile_schemas_and_values_are_reported_with_file_and_line_never_a_traceback(tmp_path):
    """Before: a date that does not exist raised ValueError and a `$ref` to nowhere raised
    Unresolvable out of `validate` (a traceback); a `$ref` over http was fetched."""
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        {
            "orders.yml": "orders:\n  limit: 10\n",
            "orders-dev.yml": "orders:\n  launch-date: 2026-02-30\n",
            "billing.yml": "billing:\n  rate: 3\n",
            "schemas/billing.schema.yml": "properties:\n  billing:\n    $ref: 'http://127.0.0.1:9/billing.json'\n",
            "schemas/stock.schema.json": "[" * 100_000,
        }
    )
    result = validate(str(repo.path), "--rev", "main")
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout.splitlines() == [
        "schemas/billing.schema.yml:3: billing/default: $ref 'http://127.0.0.1:9/billing.json' cannot be "
        "resolved: a $ref names a file in schemas/ of the same version (such as common.yml#/$defs/port)",
        "orders-dev.yml:2: orders/dev: '2026-02-30' is not a valid timestamp: day is out of range for "
        "month at line 2, column 16",
        "schemas/stock.schema.json:1: stock/default: schema does not parse: nested deeper than 64 levels",
    ]


def test_the_summary_names_what_was_checked_the_working_tree_or_the_commit(tmp_path):
    """Before: `validate .` ended with `at f0f15caef9c9`, a hash of the files on disk that is
    neither HEAD nor its tree; it names the working tree, and a revision names its commit."""
    repo = GitRepo(tmp_path / "repo")
    first = repo.commit({"orders.yml": "orders:\n  limit: 1\n"})
    (repo.path / "orders.yml").write_text("orders:\n  limit: 2\n")  # not committed
    on_disk = validate(str(repo.path))
    assert on_disk.exit_code == 0
    assert on_disk.stderr.splitlines()[-1] == "0 problems in 2 environments at the working tree"
    assert json.loads(validate(str(repo.path), "--format", "json").stdout)["checked"] == "working tree"
    at_rev = validate(str(repo.path), "--rev", "main")
    assert at_rev.stderr.splitlines()[-1] == f"0 problems in 2 environments at {first[:12]} (commit of main)"
    as_json = json.loads(validate(str(repo.path), "--rev", "main", "--format", "json").stdout)
    assert as_json["checked"] == "commit" and as_json["version"] == first
