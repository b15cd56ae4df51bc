"""The sample repository: a git copy of `sample-config-repo/` made in the data directory on first run.

A folder inside this project cannot itself be a git repository, yet a newcomer should see labels
and versions, edit a file, commit it and watch the new value served. So the first `make run`
copies the folder into `<data-dir>/config-repo`, makes it a git repository on branch `main` and
serves that. It uses the git command, not GitPython, because it runs in gunicorn's master.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

SAMPLE_FOLDER = "sample-config-repo"
_IDENTITY = {
    "GIT_AUTHOR_NAME": "config-server",
    "GIT_AUTHOR_EMAIL": "config-server@localhost",
    "GIT_COMMITTER_NAME": "config-server",
    "GIT_COMMITTER_EMAIL": "config-server@localhost",
}


def find_sample_folder() -> Path | None:
    """`sample-config-repo/` in the current folder, else next to the installed package's project."""
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        candidate = base / SAMPLE_FOLDER
        if candidate.is_dir():
            return candidate
    return None


def ensure_sample_repository(data_dir: str | Path) -> Path:
    """The path of the git copy of the sample, creating it (once, under a lock) if it is missing."""
    root = Path(data_dir).resolve()
    target = root / "config-repo"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".sample.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".git").is_dir():
            return target
        source = find_sample_folder()
        if source is None:
            raise FileNotFoundError(f"no --repo given and no {SAMPLE_FOLDER}/ found: pass --repo PATH_OR_URL")
        staging = root / ".config-repo.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        for args in (
            ["init", "--quiet", "--initial-branch=main"],
            ["add", "--all"],
            ["commit", "--quiet", "-m", "Sample configuration"],
        ):
            subprocess.run(
                ["git", *args], cwd=staging, env={**os.environ, **_IDENTITY}, check=True, capture_output=True
            )
        staging.rename(target)
        log.info("created a git repository from %s in %s", source, target)
        return target
