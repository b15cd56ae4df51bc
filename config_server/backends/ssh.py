"""How git reaches an SSH remote (`ssh://host/org/config.git`, `git@host:org/config.git`): the key
file, the known_hosts file and host key checking, given to git as `GIT_SSH_COMMAND`.

Host keys are checked strictly by default (a host not in known_hosts, or with another key, is
refused); ssh runs in batch mode (never a prompt: a passphrase-protected key or a password login
fails at once) with a connect timeout and keep-alives, so a remote that does not answer is a
clear error within seconds, not a hang. Only the files' paths go into the command, never their
contents, and the command is never logged.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

from config_server.settings import Settings

#: Seconds ssh waits for the TCP connection and the handshake to begin.
CONNECT_TIMEOUT_S = 10
#: ssh gives up on a silent server after this many keep-alives, one every 15 s.
ALIVE_COUNT_MAX = 3

_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")


def is_ssh(spec: str) -> bool:
    """True for an `ssh://` URL or an scp-like `user@host:path`, which git reaches through ssh."""
    return spec.startswith(("ssh://", "git+ssh://", "ssh+git://")) or bool(_SCP_LIKE.match(spec))


@dataclass(frozen=True)
class SshOptions:
    """The server's SSH settings (`--ssh-key`, `--ssh-known-hosts`, `--ssh-strict-host-keys`)."""

    key_file: str | None = None
    known_hosts: str | None = None
    strict_host_keys: bool = True

    def git_ssh_command(self) -> str:
        """The `GIT_SSH_COMMAND` value: ssh with these options, each path quoted for the shell."""
        parts = ["ssh"]
        if self.key_file:
            parts += ["-i", self.key_file, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            parts += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        parts += [
            "-o",
            f"StrictHostKeyChecking={'yes' if self.strict_host_keys else 'accept-new'}",
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={CONNECT_TIMEOUT_S}",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            f"ServerAliveCountMax={ALIVE_COUNT_MAX}",
        ]
        return " ".join(shlex.quote(part) for part in parts)

    def git_environment(self) -> dict[str, str]:
        """The variables to add to git's environment for an SSH remote."""
        return {"GIT_SSH_COMMAND": self.git_ssh_command()}


def ssh_hint(error: str, stderr: str, options: SshOptions | None) -> str:
    """git's one-line `error` led by what to do about ssh's usual refusals, read from its whole
    `stderr` (the changed-key warning is longer than the one-line error keeps)."""
    known_hosts = (options and options.known_hosts) or "~/.ssh/known_hosts"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        hint = f"the SSH host's key differs from the one in {known_hosts}: refused; find out why first"
    elif "Host key verification failed" in stderr:
        hint = (
            f"the SSH host's key is not in {known_hosts}: refused; add it (ssh-keyscan -p PORT HOST) "
            "after checking its fingerprint, or give --ssh-known-hosts"
        )
    elif "UNPROTECTED PRIVATE KEY FILE" in stderr:
        hint = "ssh ignores a key file others may read: make --ssh-key mode 0600 or 0400"
    elif "Permission denied (publickey" in stderr:
        key = "--ssh-key" if options and options.key_file else "ssh's default key"
        hint = f"the SSH host refused {key}: add its public key on the git host, or give --ssh-key"
    else:
        return error
    return f"{hint} ({error})"


def ssh_options(settings: Settings) -> SshOptions:
    """The SSH options of the server's settings."""
    return SshOptions(settings.ssh_key, settings.ssh_known_hosts, settings.ssh_strict_host_keys)


def check_ssh_files(options: SshOptions) -> None:
    """Before workers start: the key and known_hosts files given exist and can be read (a mistake
    stops the start-up with the path, never the file's contents)."""
    for what, path in (("SSH key", options.key_file), ("SSH known_hosts", options.known_hosts)):
        if not path:
            continue
        if what == "SSH known_hosts" and not options.strict_host_keys and not os.path.exists(path):
            continue  # trust on first use: ssh creates it
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what} file {path} does not exist")
        if not os.access(path, os.R_OK):
            raise PermissionError(f"{what} file {path} cannot be read by this user")
