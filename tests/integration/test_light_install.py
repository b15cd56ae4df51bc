"""A light client install (issue 14): the client needs requests and PyYAML only, and
`config-server` without the server's packages says which extra to install."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_MODULES = {"flask", "werkzeug", "click", "git", "gevent", "gunicorn", "watchdog", "cryptography"}


def test_client_modules_import_no_server_package():
    modules = [
        "config_client",
        "config_client.cli",
        "config_client.flask",
        "config_client.asgi",
        "config_client.binding",
        "config_client.log_levels",
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    loaded = set(eval(out))  # noqa: S307 - our own subprocess printed a list literal
    assert not loaded & (SERVER_MODULES | {"config_server", "pydantic", "fastapi", "starlette", "django"})


def test_config_server_without_server_packages_exits_2_naming_the_extra(tmp_path):
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--ignore-installed"]
        + ["--prefix", str(target), str(ROOT)],
        check=True,
        capture_output=True,
    )
    python = target / "bin" / "python"
    result = subprocess.run(
        [str(python), str(target / "bin" / "config-server"), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Flask" in lines[0]
    assert "pip install --require-hashes -r requirements-server.txt" in lines[0]
