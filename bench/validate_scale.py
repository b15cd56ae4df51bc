"""`config-server validate` over the 5,000-application repository of `repo_scale.py`.

Generates the same repository (`repo_scale.generate`), then times the command as CI or a
pre-receive hook runs it (`config-server validate REPO --rev main`, a fresh process, wall
clock): once as generated, once after a commit adding a shared JSON Schema that every
application's merged settings are checked against. Also times the schema check alone per
environment (in process), which is what a new commit costs the server per environment served.

    .venv/bin/python -m bench.validate_scale                   # 5,000 apps, 10,000 commits
    .venv/bin/python -m bench.validate_scale --apps 200 --commits 20
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import CONFIG_SERVER, RESULTS, git, print_table, write_json
from bench.repo_scale import generate

TARGETS = {"validate_s": 10.0}

SCHEMA = b"""$schema: https://json-schema.org/draft/2020-12/schema
type: object
required: [logging, management]
properties:
  service:
    type: object
    required: [name, replicas]
    properties:
      name: {type: string, pattern: "^app-[0-9]+$"}
      revision: {type: integer, minimum: 0}
      replicas: {type: integer, minimum: 1, maximum: 10}
  db:
    type: object
    properties:
      url: {type: string, pattern: "^jdbc:"}
      pool: {type: object, properties: {max: {type: integer, maximum: 100}}}
  features: {type: array, items: {type: string}}
  logging: {type: object, properties: {level: {enum: [DEBUG, INFO, WARN, ERROR]}}}
  management: {type: object, properties: {port: {type: integer}}}
"""


def run_validate(repo: Path) -> tuple[float, int, str]:
    """Wall-clock seconds, exit status and the summary line of one `validate` run."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(CONFIG_SERVER), "validate", str(repo), "--rev", "main"], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    summary = (done.stderr.strip().splitlines() or [""])[-1]
    if done.returncode not in (0, 1):
        raise RuntimeError(f"validate failed: {done.stderr}")
    return elapsed, done.returncode, summary


def schema_cost_us(repo: Path, environments: int) -> tuple[float, float]:
    """Microseconds per environment to check one environment, without and with the schema."""
    from config_server.backends.git import GitBackend
    from config_server.safety.repo_check import check_repository

    results = []
    with tempfile.TemporaryDirectory() as scratch:
        backend = GitBackend(str(repo), scratch)
        try:
            for label in ("without-schema", "main"):
                check_repository(backend, label)  # warm git objects
                started = time.perf_counter()
                report = check_repository(backend, label)
                results.append((time.perf_counter() - started) / max(report.environments, 1) * 1e6)
        finally:
            backend.close()
    return results[0], results[1]


def measure(apps: int, commits: int) -> dict:
    """Generate the repository and time `validate` without and with a schema."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        generate(repo, apps, commits)
        plain_s, plain_rc, plain_summary = run_validate(repo)
        git(repo, "branch", "without-schema")
        (repo / "schemas").mkdir()
        (repo / "schemas" / "application.schema.yml").write_bytes(SCHEMA)
        git(repo, "add", "schemas")
        git(repo, "commit", "-qm", "a schema for every application")
        schema_s, schema_rc, schema_summary = run_validate(repo)
        without_us, with_us = schema_cost_us(repo, apps + 1)
    return {
        "applications": apps,
        "commits": commits,
        "validate_s": round(plain_s, 2),
        "validate_exit": plain_rc,
        "validate_summary": plain_summary,
        "validate_schema_s": round(schema_s, 2),
        "validate_schema_exit": schema_rc,
        "validate_schema_summary": schema_summary,
        "environment_us": round(without_us, 1),
        "environment_schema_us": round(with_us, 1),
        "schema_us_per_environment": round(with_us - without_us, 1),
        "targets": TARGETS,
    }


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, measure, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=5000)
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--json", default=str(RESULTS / "validate_scale.json"))
    args = parser.parse_args(argv)
    r = measure(args.apps, args.commits)
    print_table(
        f"config-server validate: {r['applications']} applications, {r['commits']} commits",
        ["measure", "value", "target"],
        [
            ["validate --rev main, no schema (s, wall clock)", r["validate_s"], TARGETS["validate_s"]],
            ["  its summary", r["validate_summary"], ""],
            [
                "validate --rev main, shared schema (s, wall clock)",
                r["validate_schema_s"],
                TARGETS["validate_s"],
            ],
            ["  its summary", r["validate_schema_summary"], ""],
            ["one environment checked, no schema (us)", r["environment_us"], ""],
            ["one environment checked, with schema (us)", r["environment_schema_us"], ""],
            ["schema check per environment (us)", r["schema_us_per_environment"], ""],
        ],
    )
    write_json(args.json, r)
    return r


if __name__ == "__main__":
    main()
