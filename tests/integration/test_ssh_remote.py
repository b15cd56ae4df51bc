"""An SSH remote served through a real `sshd` (Debian's openssh-server) on 127.0.0.1, with its own
host key and authorized_keys in the test's folder: cloned and served with `--ssh-key` and
`--ssh-known-hosts`, a pushed change picked up, and an unknown or changed host key, or a key the
host does not accept, refused at once with an error that says what to do."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from config_server.backends.mirror import Mirror
from config_server.backends.ssh import SshOptions
from tests.helpers import GIT_ENV, GitRepo, free_port, port_open, wait_for

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


class SshGitHost:
    """`sshd` on a free port of 127.0.0.1 letting this user in with one key; a bare repository."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "sshd"
        self.dir.mkdir()
        self.port = free_port()
        self.host_key = self._keygen("host_key")
        self.client_key = self._keygen("client_key")
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self._public('host_key')}\n")
        (self.dir / "authorized_keys").write_text(self._public("client_key") + "\n")
        self.log = self.dir / "sshd.log"
        self.config = self.dir / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\nPidFile {self.dir / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        )
        self.bare = tmp / "remote" / "config.git"
        self.url = f"ssh://{getpass.getuser()}@127.0.0.1:{self.port}{self.bare}"
        self.process: subprocess.Popen[bytes] | None = None

    def _keygen(self, name: str) -> Path:
        path = self.dir / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        return path

    def _public(self, name: str) -> str:
        return " ".join((self.dir / f"{name}.pub").read_text().split()[:2])

    def start(self) -> SshGitHost:
        """Start sshd in the foreground (`-D`), logging to a file (`-E`), and wait for its port."""
        self.process = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self.process.poll() is None and port_open(self.port), what="sshd to listen")
        return self

    def stop(self) -> None:
        """Stop the sshd this fixture started (its own process, by its pid)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def accepted_logins(self) -> int:
        return self.log.read_text().count("Accepted publickey") if self.log.exists() else 0


@pytest.fixture
def ssh_host(tmp_path: Path) -> Iterator[SshGitHost]:
    """A real sshd on 127.0.0.1 for the test; skipped where none is installed or it cannot run."""
    if not os.path.exists(SSHD) or not shutil.which("ssh-keygen"):
        pytest.skip("openssh-server is not installed (make test-deps installs it)")
    privsep = Path("/run/sshd")  # sshd refuses to start without its privilege separation folder
    if not privsep.is_dir():
        try:
            privsep.mkdir(mode=0o755, parents=True)
        except OSError as exc:
            pytest.skip(f"sshd needs {privsep}, which cannot be made here: {exc}")
    host = SshGitHost(tmp_path)
    try:
        yield host.start()
    finally:
        host.stop()


def publish(repo: GitRepo, bare: Path) -> None:
    """The repository's history as the bare repository sshd serves; `origin` pushes to it."""
    bare.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(bare)], env=GIT_ENV, check=True)
    repo.git("remote", "add", "origin", str(bare))


def message(server, label: str = "") -> str:
    body = requests.get(f"{server.url}/orders/default{label}", timeout=10).json()
    return str(body["propertySources"][0]["source"]["message"])


def test_an_ssh_remote_is_cloned_and_served_and_a_pushed_change_is_picked_up(
    server_process, repo: GitRepo, ssh_host: SshGitHost
):
    repo.commit({"orders.yml": "message: one\n"})
    publish(repo, ssh_host.bare)
    server = server_process(
        "--repo", ssh_host.url, "--workers", "1", "--refresh-interval", "0",
        "--ssh-key", str(ssh_host.client_key), "--ssh-known-hosts", str(ssh_host.known_hosts),
    )  # fmt: skip
    server.wait_ready(lambda: requests.get(f"{server.url}/health", timeout=1).ok)
    assert message(server) == "one"
    assert ssh_host.accepted_logins() >= 1  # cloned over ssh with the key

    repo.commit({"orders.yml": "message: two\n"})
    repo.git("push", "-q", "origin", "main")
    assert requests.post(
        f"{server.url}/monitor", data={"path": "orders.yml"}, timeout=30
    ).ok  # a push webhook
    wait_for(lambda: message(server) == "two", timeout=15, what="the pushed change to be served")
    health = requests.get(f"{server.url}/health", timeout=5).json()
    assert str(ssh_host.client_key) not in str(health)  # neither the key's path nor its contents
    assert ssh_host.client_key.read_text().splitlines()[1] not in server.stop()


def test_an_unknown_host_key_is_refused_at_once_with_a_clear_error(
    server_process, repo: GitRepo, ssh_host: SshGitHost, tmp_path: Path
):
    repo.commit({"orders.yml": "message: one\n"})
    publish(repo, ssh_host.bare)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    started = time.monotonic()
    server = server_process(
        "--repo", ssh_host.url, "--workers", "1", "--refresh-interval", "0",
        "--ssh-key", str(ssh_host.client_key), "--ssh-known-hosts", str(empty),
    )  # fmt: skip
    server.wait_ready(lambda: port_open(server.port))
    assert time.monotonic() - started < 30  # the clone was refused, not left hanging
    health = requests.get(f"{server.url}/health", timeout=5)
    assert health.status_code == 503
    error = health.json()["details"]["repository"]["lastError"]
    assert f"not in {empty}" in error and "Host key verification failed" in error
    assert requests.get(f"{server.url}/orders/default", timeout=5).status_code == 404
    assert ssh_host.accepted_logins() == 0  # refused before any key was offered
    assert empty.read_text() == ""  # and not added: strict by default
    assert "not in" in server.stop()  # the master's warning says why


def test_a_changed_host_key_and_a_refused_client_key_say_what_to_do(
    repo: GitRepo, ssh_host: SshGitHost, tmp_path: Path
):
    repo.commit({"orders.yml": "message: one\n"})
    publish(repo, ssh_host.bare)
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    impostor_line = " ".join(Path(f"{impostor}.pub").read_text().split()[:2])
    changed = tmp_path / "changed_known_hosts"
    changed.write_text(f"[127.0.0.1]:{ssh_host.port} {impostor_line}\n")

    mirror = Mirror(ssh_host.url, tmp_path / "cache-a", SshOptions(str(ssh_host.client_key), str(changed)))
    assert mirror.refresh() is False
    assert mirror.last_error is not None and "key differs from the one in" in mirror.last_error

    mirror = Mirror(ssh_host.url, tmp_path / "cache-b", SshOptions(str(impostor), str(ssh_host.known_hosts)))
    assert mirror.refresh() is False
    assert mirror.last_error is not None and "refused --ssh-key" in mirror.last_error

    mirror = Mirror(
        ssh_host.url, tmp_path / "cache-c", SshOptions(str(ssh_host.client_key), str(ssh_host.known_hosts))
    )
    assert mirror.refresh() is True and mirror.exists()
    assert ssh_host.accepted_logins() == 1


def test_trust_on_first_use_adds_the_host_key_when_strict_checking_is_off(
    repo: GitRepo, ssh_host: SshGitHost, tmp_path: Path
):
    repo.commit({"orders.yml": "message: one\n"})
    publish(repo, ssh_host.bare)
    fresh = tmp_path / "tofu_known_hosts"
    options = SshOptions(str(ssh_host.client_key), str(fresh), strict_host_keys=False)
    mirror = Mirror(ssh_host.url, tmp_path / "cache", options)
    assert mirror.refresh() is True
    assert ssh_host._public("host_key").split()[1] in fresh.read_text()


def test_a_missing_key_file_stops_the_start_up_with_its_path(tmp_path: Path):
    missing = tmp_path / "no_such_key"
    command = [
        str(Path(sys.executable).with_name("config-server")),
        "serve",
        "--data-dir",
        str(tmp_path / "d"),
    ]
    done = subprocess.run(
        [*command, "--repo", "git@git.example.com:org/config.git", "--ssh-key", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"SSH key file {missing} does not exist" in done.stderr
