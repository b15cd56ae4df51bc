"""`config-server diff` over the 5,000-application repository of `repo_scale.py`.

Generates the same repository (`repo_scale.generate`), then commits two changes and times the
diff of each against its parent: one to `application.yml` (every environment reads it: all are
resolved at both commits, checked and listed) and one to a single application's file (only that
application's environment is resolved). Each is timed as CI runs it (`config-server diff
HEAD~1..HEAD --format json` in a fresh process, wall clock, Python start-up included) and in
process over a fresh backend (`change_effect`, what `GET /diff` costs a server).

    .venv/bin/python -m bench.diff_scale                   # 5,000 apps, 10,000 commits
    .venv/bin/python -m bench.diff_scale --apps 200 --commits 20
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import CONFIG_SERVER, RESULTS, git, print_table, write_json
from bench.repo_scale import app_yaml, generate

TARGETS = {"shared_file_s": 10.0, "one_application_s": 1.0}


def run_diff(repo: Path, rev: str) -> tuple[float, int, dict]:
    """Wall-clock seconds, exit status and the JSON of one `config-server diff` run."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(CONFIG_SERVER), "diff", f"{rev}~1..{rev}", "--repo", str(repo), "--format", "json"],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 1:
        raise RuntimeError(f"diff exited {done.returncode}: {done.stderr}")
    return elapsed, done.returncode, json.loads(done.stdout)


def in_process_s(repo: Path, rev: str) -> float:
    """Seconds of `change_effect` over a fresh backend (nothing cached), as `GET /diff` runs it."""
    from config_server.backends.git import GitBackend
    from config_server.observability.change_effect import change_effect
    from config_server.safety.config_service import ConfigService
    from config_server.safety.release_gates import broken_gate

    with tempfile.TemporaryDirectory() as scratch:
        backend = GitBackend(str(repo), scratch)
        try:
            service = ConfigService(backend, cache_size=1)
            started = time.perf_counter()
            change_effect(
                service, f"{git(repo, 'rev-parse', rev + '~1').strip()}", rev, None, [broken_gate(None)]
            )
            return time.perf_counter() - started
        finally:
            backend.close()


def measure(apps: int, commits: int) -> dict:
    """Generate the repository, commit the two changes and time their diffs."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        generate(repo, apps, commits)
        (repo / "application.yml").write_bytes(
            b"logging:\n  level: DEBUG\nmanagement:\n  port: 9090\nregion: eu-west-1\n"
        )
        git(repo, "commit", "-qam", "shared: debug logging everywhere")
        git(repo, "tag", "shared-change")
        one = apps // 2
        (repo / f"app-{one:04d}.yml").write_bytes(app_yaml(one, commits + 1))
        git(repo, "commit", "-qam", f"app-{one:04d}: a new revision")
        git(repo, "tag", "one-change")
        rows = {}
        for name, rev in (("shared_file", "shared-change"), ("one_application", "one-change")):
            wall_s, _, answer = run_diff(repo, rev)
            rows[name] = {
                "command_s": round(wall_s, 2),
                "in_process_s": round(in_process_s(repo, rev), 3),
                "resolved": answer["environmentsResolved"],
                "changed": len(answer["environments"]),
                "named": answer["environmentsNamed"],
            }
    return {"applications": apps, "commits": commits, **rows, "targets": TARGETS}


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, measure, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=5000)
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--json", default=str(RESULTS / "diff_scale.json"))
    args = parser.parse_args(argv)
    r = measure(args.apps, args.commits)
    shared, one = r["shared_file"], r["one_application"]
    print_table(
        f"config-server diff: {r['applications']} applications, {r['commits']} commits",
        [
            "change",
            "environments resolved / changed",
            "command (s, wall clock)",
            "in process (s)",
            "target (s)",
        ],
        [
            [
                "application.yml",
                f"{shared['resolved']} / {shared['changed']}",
                shared["command_s"],
                shared["in_process_s"],
                TARGETS["shared_file_s"],
            ],
            [
                "one application's file",
                f"{one['resolved']} / {one['changed']}",
                one["command_s"],
                one["in_process_s"],
                TARGETS["one_application_s"],
            ],
        ],
    )
    write_json(args.json, r)
    return r


if __name__ == "__main__":
    main()
