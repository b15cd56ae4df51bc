"""Settings precedence, the CLI, the sample repository, and real serving on gunicorn."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from config_server.backends.sample import ensure_sample_repository
from config_server.settings import Settings
from tests.helpers import GIT_ENV, free_port, http_ready, wait_for

PROJECT = Path(__file__).resolve().parents[2]
CONFIG_SERVER = Path(sys.executable).with_name("config-server")
#: Close each connection, so that stopping gunicorn does not wait for idle keep-alive ones.
CLOSE = {"Connection": "close"}


def test_flag_beats_environment_beats_file(tmp_path):
    settings_file = tmp_path / "server.yml"
    settings_file.write_text("port: 7000\nworkers: 3\nsearch-paths: [a, b]\nhost: 0.0.0.0\n")
    env = {"CONFIG_SERVER_PORT": "7100", "CONFIG_SERVER_HOST": "127.0.0.2"}
    settings = Settings.load({"host": "127.0.0.3"}, str(settings_file), env)
    assert settings.port == 7100
    assert settings.workers == 3
    assert settings.host == "127.0.0.3"
    assert settings.search_paths == ["a", "b"]
    assert Settings.load({}, None, {"CONFIG_SERVER_SEARCH_PATHS": "x, y"}).search_paths == [
        "x",
        "y",
    ]


def test_settings_file_from_environment_and_unknown_keys(tmp_path):
    settings_file = tmp_path / "server.yml"
    settings_file.write_text("prot: 1\n")
    with pytest.raises(ValueError, match="unknown settings"):
        Settings.load({}, None, {"CONFIG_SERVER_CONFIG": str(settings_file)})


def test_invalid_values_are_refused():
    with pytest.raises(ValueError, match="port"):
        Settings.load({"port": "70000"}, None, {})


def test_help_documents_every_option():
    out = subprocess.run(
        [str(CONFIG_SERVER), "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in (
        "--repo",
        "--cache-dir",
        "--search-paths",
        "--refresh-interval",
        "--workers",
        "--port",
        "--host",
        "--config",
        "CONFIG_SERVER_REPO",
    ):
        assert name in out
    assert (
        "serve"
        in subprocess.run([str(CONFIG_SERVER), "--help"], capture_output=True, text=True, check=True).stdout
    )


def test_sample_repository_becomes_git_on_first_run(tmp_path):
    path = ensure_sample_repository(tmp_path)
    assert (path / ".git").is_dir()
    assert (path / "orders.yml").is_file()
    log = subprocess.run(
        ["git", "log", "--oneline"], cwd=path, capture_output=True, text=True, check=True
    ).stdout
    assert len(log.splitlines()) == 1
    assert ensure_sample_repository(tmp_path) == path


def test_serve_runs_gunicorn_and_picks_up_commits(tmp_path):
    """`config-server serve` with no --repo serves the sample on gunicorn; a commit shows at once."""
    port = free_port()
    env = {**os.environ, "CONFIG_SERVER_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen(
        [str(CONFIG_SERVER), "serve", "--port", str(port), "--workers", "1"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ready(f"{base}/health"), timeout=30, what="config-server to listen")
        response = requests.get(f"{base}/orders/prod", timeout=5, headers=CLOSE)
        assert response.status_code == 200
        assert response.headers["Server"].startswith("gunicorn")
        env_json = response.json()
        assert env_json["propertySources"][0]["name"].endswith("/orders-prod.yml")
        repo = tmp_path / "data" / "config-repo"
        text = (repo / "orders.yml").read_text().replace("max-items: 100", "max-items: 250")
        (repo / "orders.yml").write_text(text)
        subprocess.run(["git", "commit", "-qam", "raise"], cwd=repo, env=GIT_ENV, check=True)
        rendered = requests.get(f"{base}/orders-default.yml", timeout=5, headers=CLOSE).text
        assert "max-items: 250" in rendered
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert "Traceback" not in process.stderr.read()


def test_serve_reports_a_bad_repository_clearly(tmp_path):
    result = subprocess.run(
        [str(CONFIG_SERVER), "serve", "--repo", str(tmp_path / "missing"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_help_shows_each_option_typed_with_its_default_and_variable():
    """Before: every option read `TEXT` (`--port TEXT`, `--watch TEXT`) and a non-number port was
    refused only after the settings were read."""
    from click.testing import CliRunner

    from config_server.cli import main

    text = " ".join(CliRunner().invoke(main, ["serve", "--help"], terminal_width=200).output.split())
    assert "--port INTEGER Port to listen on. [default: 8888] (env CONFIG_SERVER_PORT)" in text
    assert "--watch true|false" in text and "[default: true] (env CONFIG_SERVER_WATCH)" in text
    assert "--client-timeout NUMBER" in text and "--search-paths A,B,..." in text
    assert "--repo TEXT" in text and "TEXT" not in text.split("--port", 1)[1].split("--", 1)[0]
    refused = CliRunner().invoke(main, ["serve", "--port", "eighty"])
    assert refused.exit_code == 2 and "'eighty' is not a valid integer" in refused.output
