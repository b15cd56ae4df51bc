"""deploy/systemd/config-server.service is a unit systemd accepts (issue 23): `systemd-analyze verify`
on a root folder that holds the unit, the system's own units (for the targets it names) and an
executable where its ExecStart expects the venv, so a wrong path or key fails here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "config-server.service"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not SYSTEM_UNITS.is_dir(),
    reason="systemd-analyze (Debian's systemd package) is not installed",
)


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def _root_with_unit(tmp_path: Path, unit_text: str) -> Path:
    root = tmp_path / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/config-server.service").write_text(unit_text)
    executable = root / "opt/config-server/bin/config-server"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    return root


def _verify(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", "config-server.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(tmp_path):
    result = _verify(_root_with_unit(tmp_path, UNIT.read_text()))
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr


def test_the_verification_would_catch_a_wrong_path_or_an_unknown_key(tmp_path):
    broken = UNIT.read_text().replace("ExecStart=/opt/config-server/", "ExecStart=/opt/elsewhere/")
    result = _verify(_root_with_unit(tmp_path / "path", broken))
    assert result.returncode != 0 and "/opt/elsewhere/bin/config-server" in result.stderr
    unknown = UNIT.read_text().replace("[Service]\n", "[Service]\nLimitNOFILES=10\n")
    result = _verify(_root_with_unit(tmp_path / "key", unknown))
    assert "LimitNOFILES" in result.stderr


def test_the_unit_runs_as_its_own_user_with_the_hardening_the_deployment_doc_promises():
    unit = _directives(UNIT.read_text())
    assert unit["User"] == ["config-server"] and unit["ExecStart"][0].startswith("/opt/config-server/bin/")
    assert unit["ProtectSystem"] == ["strict"] and unit["NoNewPrivileges"] == ["true"]
    assert unit["ReadWritePaths"] == ["/var/lib/config-server"]
    assert "CONFIG_SERVER_DATA_DIR=/var/lib/config-server" in unit["Environment"]
    assert int(unit["LimitNOFILE"][0]) >= 12_000 + 64  # one worker's default connections and reserve
    assert unit["KillMode"] == ["mixed"] and int(unit["TimeoutStopSec"][0]) > 10  # gunicorn's grace
