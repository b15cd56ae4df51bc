"""compose.yaml (issue 23) is a valid Compose file: it validates against the Compose Specification's
JSON schema (tests/vectors/compose-spec.json, from compose-spec/compose-spec at 170098b, Apache-2.0)
and `podman-compose config` reads it; the schema check would catch a misspelled key."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
SCHEMA = json.loads((ROOT / "tests" / "vectors" / "compose-spec.json").read_text())
PODMAN_COMPOSE = Path(sys.executable).with_name("podman-compose")


def errors(document: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_yaml_follows_the_compose_specification():
    assert errors(yaml.safe_load(COMPOSE.read_text())) == []


def test_the_schema_check_would_catch_a_misspelled_key():
    document = yaml.safe_load(COMPOSE.read_text())
    document["services"]["config-server"]["stop_signl"] = document["services"]["config-server"].pop(
        "stop_signal"
    )
    assert any("stop_signl" in error for error in errors(document))


def test_the_server_gets_redis_its_repository_its_secrets_and_a_volume_for_data():
    document = yaml.safe_load(COMPOSE.read_text())
    server = document["services"]["config-server"]
    env = server["environment"]
    assert env["CONFIG_SERVER_REDIS"] == "redis://redis:6379/0" and "redis" in document["services"]
    assert env["CONFIG_SERVER_AUTH_FILE"] == "/run/secrets/auth_file"
    assert env["CONFIG_SERVER_ENCRYPT_KEY_FILE"] == "/run/secrets/encrypt_key"
    assert set(server["secrets"]) == set(document["secrets"])
    assert "config-data:/data" in server["volumes"] and env["CONFIG_SERVER_REPO"] == "/repo"


@pytest.mark.skipif(
    not PODMAN_COMPOSE.exists() and shutil.which("podman-compose") is None, reason="no podman-compose"
)
def test_podman_compose_reads_it(tmp_path):
    shutil.copy(COMPOSE, tmp_path / "compose.yaml")
    command = str(PODMAN_COMPOSE) if PODMAN_COMPOSE.exists() else "podman-compose"
    result = subprocess.run(
        [command, "-f", "compose.yaml", "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["services"]["config-server"]["image"].startswith(
        "localhost/config-server"
    )
