"""deploy/helm/config-server (issue 23): linted and rendered offline (helm-python-sdk, Helm's own Go
code in-process), every rendered object validated by `kubernetes-validate --strict` against three
Kubernetes versions, and what the objects mean checked: probes, selectors, Secrets, sizing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from config_server.settings import Settings

helm = pytest.importorskip("helm_python", reason="helm-python-sdk has no wheel for this platform")

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "config-server"
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0", "1.37.0")
VALIDATE = str(Path(sys.executable).with_name("kubernetes-validate"))

URL = {"repository": {"url": "https://git.example.com/org/config.git"}}
EVERYTHING = {
    "repository": {
        "url": "git@git.example.com:org/config.git",
        "ssh": {
            "privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\n",
            "knownHosts": "git.example.com ssh-ed25519 AAAA",
        },
    },
    "auth": {"file": "clients: []\n"},
    "encryption": {"key": "s3cr3t-passphrase"},
    "webhookSecret": "s3cr3t-hook",
    "redis": {"enabled": True},
}
EXTERNAL = {
    **URL,
    "replicaCount": 3,
    "redis": {"url": "redis://:pw@redis.example.com:6379/0"},
    "auth": {"existingSecret": "my-auth"},
    "encryption": {"existingSecret": "my-keys"},
    "server": {"extraEnv": [{"name": "CONFIG_SERVER_POLLS_PER_ADDRESS", "value": "1000"}]},
    "podDisruptionBudget": {"enabled": False},
}
VALUE_SETS = {"minimal": URL, "everything": EVERYTHING, "external": EXTERNAL}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name="cs", namespace="config")
    return [doc for text in manifests.values() for doc in yaml.safe_load_all(text) if doc]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def server_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment", "cs-config-server")["spec"]["template"]["spec"]["containers"][0]


def validate(objects: list[dict[str, Any]], folder: Path, version: str) -> subprocess.CompletedProcess[str]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for number, item in enumerate(objects):
        path = folder / f"{number}-{item['kind']}.yaml"
        path.write_text(yaml.safe_dump(item))
        files.append(str(path))
    return subprocess.run(
        [VALIDATE, "--strict", "--kubernetes-version", version, *files],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_helm_lint_strict_finds_nothing_to_warn_about():
    for values in VALUE_SETS.values():
        report = helm.lint(str(CHART), values, strict=True)
        assert report["errors"] == [], report
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_is_valid_kubernetes_in_strict_mode(version, tmp_path):
    for name, values in VALUE_SETS.items():
        objects = render(values)
        result = validate(objects, tmp_path / name, version)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count(" passed for resource ") == len(objects)


def test_strict_validation_would_catch_a_misspelled_field(tmp_path):
    objects = render(URL)
    container = server_container(objects)
    container["readinesProbe"] = container.pop("readinessProbe")
    result = validate(objects, tmp_path, KUBERNETES_VERSIONS[0])
    assert result.returncode != 0 and "readinesProbe" in result.stdout + result.stderr


def test_the_probes_are_the_servers_livez_and_readyz_and_liveness_waits_out_a_worker_replacement():
    container = server_container(render(URL))
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    live = container["livenessProbe"]
    # gunicorn replaces a blocked worker after --worker-timeout (30 s): the pod is not restarted first
    assert live["periodSeconds"] * live["failureThreshold"] > Settings.worker_timeout
    assert container["ports"] == [{"name": "http", "containerPort": 8888, "protocol": "TCP"}]


def test_the_grace_period_lets_long_polls_be_answered_and_requests_finish():
    objects = render(URL)
    pod = one(objects, "Deployment", "cs-config-server")["spec"]["template"]["spec"]
    pre_stop = int(pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    gunicorn_graceful_timeout = 10  # runtime/serving.py
    assert pod["terminationGracePeriodSeconds"] > pre_stop + gunicorn_graceful_timeout


def test_the_service_and_the_budget_select_the_servers_pods_and_not_redis():
    objects = render(EVERYTHING)
    server_pods = one(objects, "Deployment", "cs-config-server")["spec"]["template"]["metadata"]["labels"]
    redis_pods = one(objects, "Deployment", "cs-config-server-redis")["spec"]["template"]["metadata"][
        "labels"
    ]
    for selector in (
        one(objects, "Service", "cs-config-server")["spec"]["selector"],
        one(objects, "PodDisruptionBudget", "cs-config-server")["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= server_pods.items()
        assert not selector.items() <= redis_pods.items()
    redis_service = one(objects, "Service", "cs-config-server-redis")["spec"]["selector"]
    assert redis_service.items() <= redis_pods.items()
    env = {e["name"]: e for e in server_container(objects)["env"]}
    assert env["CONFIG_SERVER_REDIS"]["value"] == "redis://cs-config-server-redis:6379/0"


def test_secrets_are_mounted_where_the_settings_point_and_every_reference_resolves():
    for values in (EVERYTHING, EXTERNAL):
        objects = render(values)
        secrets = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"} | {"my-auth", "my-keys"}
        container = server_container(objects)
        pod = one(objects, "Deployment", "cs-config-server")["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        env = {e["name"]: e for e in container["env"]}
        for volume in volumes.values():
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
        for item in env.values():
            if "valueFrom" in item:
                assert item["valueFrom"]["secretKeyRef"]["name"] in secrets
        for variable, path in (
            ("CONFIG_SERVER_AUTH_FILE", "/etc/config-server/auth/auth.yml"),
            ("CONFIG_SERVER_ENCRYPT_KEY_FILE", "/etc/config-server/keys/encrypt.key"),
        ):
            assert env[variable]["value"] == path
            assert "secret" in volumes[mounts[str(Path(path).parent)]]
    secret_values = yaml.safe_dump([o for o in render(EVERYTHING) if o["kind"] != "Secret"])
    assert "s3cr3t" not in secret_values  # only in Secrets


def test_an_ssh_remote_gets_its_key_and_strict_host_key_checking():
    objects = render(EVERYTHING)
    ssh = one(objects, "Secret", "cs-config-server-ssh")
    assert set(ssh["data"]) == {"id", "known_hosts"}
    env = {e["name"]: e.get("value") for e in server_container(objects)["env"]}
    command = env["GIT_SSH_COMMAND"]
    assert "-i /etc/config-server/ssh/id" in command and "StrictHostKeyChecking=yes" in command
    assert "UserKnownHostsFile=/etc/config-server/ssh/known_hosts" in command
    without_known_hosts = {**EVERYTHING, "repository": {"url": "git@h:o/c.git", "ssh": {"privateKey": "K"}}}
    with pytest.raises(helm.HelmError, match="knownHosts is required"):
        render(without_known_hosts)


def test_a_repository_url_is_required():
    with pytest.raises(helm.HelmError, match="repository.url is required"):
        render({})


def test_every_setting_the_chart_passes_is_one_the_server_knows():
    env = {}
    for values in VALUE_SETS.values():
        for item in server_container(render(values))["env"]:
            if item["name"].startswith("CONFIG_SERVER_") and "value" in item:
                env[item["name"]] = item["value"]
    settings = Settings.load(environ=env)  # an unknown name would be ignored: check names too
    known = {"CONFIG_SERVER_" + name.upper() for name in Settings.__dataclass_fields__}
    assert set(env) <= known
    assert settings.ready_refresh_intervals == 3 and settings.data_dir == "/data"


def test_memory_is_requested_for_the_watchers_a_pod_holds():
    def memory(watchers: int) -> tuple[str, str]:
        resources = server_container(
            render({**URL, "sizing": {"watchersPerPod": watchers, "cpuRequest": "1"}})
        )["resources"]
        return resources["requests"]["memory"], resources["limits"]["memory"]

    # 160 MiB before any watcher, 26.6 KiB per watcher (docs/deployment.md), twice that as the limit
    assert memory(0) == ("160Mi", "320Mi")
    assert memory(10_000) == (f"{160 + 10_000 * 266 // 10_240}Mi", f"{2 * (160 + 10_000 * 266 // 10_240)}Mi")
    fixed = {"requests": {"memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert server_container(render({**URL, "resources": fixed}))["resources"] == fixed
