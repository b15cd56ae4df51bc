"""compose.yaml (issue 23) is a valid Compose file: every key it uses is one the Compose Specification
defines (a schema of our own below: the top-level sections and the service, volume and secret keys,
so a misspelled key is caught, which `podman-compose config` alone does not), and
`podman-compose config` reads it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
#: Service keys of the Compose Specification (services.md of compose-spec), written out here.
SERVICE_KEYS = """
    annotations attach blkio_config build cap_add cap_drop cgroup cgroup_parent command configs
    container_name cpu_count cpu_percent cpu_period cpu_quota cpu_rt_period cpu_rt_runtime cpu_shares
    cpus cpuset credential_spec depends_on deploy develop device_cgroup_rules devices dns dns_opt
    dns_search domainname driver_opts entrypoint env_file environment expose extends external_links
    extra_hosts gpus group_add healthcheck hostname image init ipc isolation label_file labels links
    logging mac_address mem_limit mem_reservation mem_swappiness memswap_limit network_mode networks
    oom_kill_disable oom_score_adj pid pids_limit platform ports post_start pre_stop privileged profiles
    provider pull_policy read_only restart runtime scale secrets security_opt shm_size stdin_open
    stop_grace_period stop_signal storage_opt sysctls tmpfs tty ulimits use_api_socket user userns_mode
    uts volumes volumes_from working_dir
""".split()
_EXTENSION = {"^x-": {}}
_NAMED = {"type": "object", "additionalProperties": {"type": ["object", "null"]}}
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "services": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {key: {} for key in SERVICE_KEYS},
                "patternProperties": _EXTENSION,
                "additionalProperties": False,
                "anyOf": [{"required": ["image"]}, {"required": ["build"]}],
            },
        },
        "volumes": _NAMED,
        "networks": _NAMED,
        "configs": _NAMED,
        "secrets": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {key: {} for key in ("file", "environment", "external", "name", "content")},
                "patternProperties": _EXTENSION,
                "additionalProperties": False,
            },
        },
        "include": {"type": "array"},
    },
    "patternProperties": _EXTENSION,
    "additionalProperties": False,
    "required": ["services"],
}
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
