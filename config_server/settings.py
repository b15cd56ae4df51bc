"""The server's settings: one dataclass, filled from flags, `CONFIG_SERVER_*` variables and a YAML file.

Precedence, highest first: command-line flag, environment variable, settings file, default.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

#: Distinct environments one caller may long-poll at once per worker (`--slots-per-caller`).
DEFAULT_SLOTS_PER_CALLER = 64


ENV_PREFIX = "CONFIG_SERVER_"


@dataclass
class Settings:
    """Everything `create_app` and `config-server serve` need; validated once by `validate()`."""

    repo: str | None = field(
        default=None,
        metadata={
            "help": "Git repository: a local path or a file://, https://, ssh:// or git:// URL; "
            "a plain folder is served as-is. Default: a git copy of sample-config-repo/."
        },
    )
    ssh_key: str | None = field(
        default=None,
        metadata={
            "help": "Private key file for an SSH remote (ssh://... or git@host:org/config.git); "
            "mode 0600 or 0400, without a passphrase. Default: ssh's own keys."
        },
    )
    ssh_known_hosts: str | None = field(
        default=None,
        metadata={
            "help": "known_hosts file holding the SSH remote's host key. Default: ssh's own "
            "(~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts)."
        },
    )
    ssh_strict_host_keys: bool = field(
        default=True,
        metadata={
            "help": "Refuse an SSH remote whose host key is not in known_hosts (false: trust it on "
            "first use and add it there; a changed key is refused either way)."
        },
    )
    cache_dir: str = field(
        default="",
        metadata={"help": "Where remote repositories are cloned (default: <data-dir>/cache)."},
    )
    data_dir: str = field(
        default=".data",
        metadata={"help": "Working data: clones, and the git copy of the sample repository."},
    )
    default_label: str | None = field(
        default=None,
        metadata={"help": "Label served when a request names none (default: main, else master)."},
    )
    search_paths: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Comma-separated folders also searched; {application}, {profile}, {label} and "
            "globs allowed."
        },
    )
    refresh_interval: float = field(
        default=30.0,
        metadata={"help": "Seconds between background fetches of a remote repository (0: never)."},
    )
    ready_refresh_intervals: int = field(
        default=3,
        metadata={
            "help": "A remote repository's server is not ready (GET /readyz answers 503) once its last "
            "successful fetch is older than this many refresh intervals (0: never for that reason)."
        },
    )
    watch: bool = field(
        default=True,
        metadata={"help": "Watch the repository with watchdog so watchers hear of a commit at once."},
    )
    poll_interval: float = field(
        default=5.0,
        metadata={"help": "Seconds between safety checks of watched environments."},
    )
    webhook_secret: str | None = field(
        default=None,
        metadata={"help": "Secret POST /monitor deliveries must be signed with (HMAC-SHA256 or token)."},
    )
    allow_revert: bool = field(
        default=True,
        metadata={
            "help": "Let the release role revert a commit from the API, CLI and console: a local "
            "repository gets the revert commit, a remote only with --push-url. false: the server "
            "answers the git command to run instead."
        },
    )
    push_url: str | None = field(
        default=None,
        metadata={
            "help": "Where a remote repository's reverts are pushed (never forced), with its "
            "credentials: https://user:token@host/org/config.git, or an SSH URL (--ssh-key). "
            "Default: none, so a remote is never written to."
        },
    )
    redis: str | None = field(
        default=None,
        metadata={
            "help": "Redis URL (redis://host:6379/0) that makes this server a replica of a cluster: "
            "change hints are shared through it (docs/deployment.md). Default: a single server."
        },
    )
    cache_size: int = field(
        default=1024, metadata={"help": "Resolved environments kept in memory per worker."}
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on."})
    port: int = field(default=8888, metadata={"help": "Port to listen on."})
    allowed_hosts: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Comma-separated host names (globs; * for any) requests may name in their Host "
            "header; others get 421 (DNS rebinding). Default: localhost, 127.0.0.1 and ::1 when "
            "--host is a loopback address, else any."
        },
    )
    workers: int = field(default=2, metadata={"help": "Gunicorn worker processes."})
    worker_class: str = field(
        default="gevent",
        metadata={"help": "gevent (many long polls per worker) or gthread (a thread per request)."},
    )
    worker_connections: int = field(
        default=12000,
        metadata={"help": "Concurrent connections per gevent worker, long-poll watchers included."},
    )
    reuse_port: bool = field(
        default=False,
        metadata={
            "help": "Each worker listens on its own SO_REUSEPORT socket, so the kernel spreads new "
            "connections (watchers reconnecting after a worker died) over every worker, a fresh "
            "one included; but a blocked or booting worker then still gets its share of new "
            "connections, /health probes included (docs/serving.md). Start-up fails if the port "
            "is taken, by another reuse-port server too."
        },
    )
    threads: int = field(default=8, metadata={"help": "Threads per gthread worker."})
    blocking_monitor: float = field(
        default=0.0,
        metadata={
            "help": "Report, with its stack on standard error, any greenlet that holds a gevent "
            "worker's event loop for longer than this many seconds (gevent's blocking monitor, "
            "started once the worker has booted; 0: off). For tests and diagnosis."
        },
    )
    worker_timeout: float = field(
        default=30.0,
        metadata={
            "help": "Seconds a worker may go without a heartbeat before gunicorn replaces it; a gevent "
            "worker beats only while its event loop turns (long polls do not count)."
        },
    )
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error."})
    log_format: str = field(
        default="text",
        metadata={
            "help": "text, or json: one JSON object per line (time, level, logger, message, request "
            "id, client, application), gunicorn's access and error lines too (docs/operations.md)."
        },
    )
    access_log: bool = field(
        default=False,
        metadata={"help": "Log every request to standard output, gunicorn's access-log format."},
    )
    client_timeout: float = field(
        default=15.0,
        metadata={
            "help": "Seconds a client may take to send its request headers, and to send any one "
            "chunk of a request or read any chunk of a response (gevent worker)."
        },
    )
    request_timeout: float = field(
        default=120.0,
        metadata={
            "help": "Seconds after which a request is cut off however busy its client is; must "
            "exceed the 60 s long-poll cap (gevent worker)."
        },
    )
    encrypt_key: str | None = field(
        default=None,
        repr=False,
        metadata={
            "help": "Symmetric key (or RSA private key in PEM) for {cipher} values. Set it with "
            "ENCRYPT_KEY or CONFIG_SERVER_ENCRYPT_KEY, never on the command line.",
            "flag": False,
        },
    )
    encrypt_key_file: str | None = field(
        default=None,
        metadata={
            "help": "File holding the key: a passphrase, an RSA private key in PEM, or a YAML "
            "keyring of named keys (see docs/security.md)."
        },
    )
    encrypt_salt: str = field(
        default="deadbeef",
        metadata={"help": "Hex salt of Spring-compatible AES-CBC and RSA values (Spring's default)."},
    )
    auth_file: str | None = field(
        default=None,
        metadata={
            "help": "YAML file of clients (hashed tokens, roles, application/profile/label globs). "
            "Without it the server is open to anyone who can reach it."
        },
    )
    audit_log: str | None = field(
        default=None,
        metadata={
            "help": "File that receives one JSON line per read, encrypt, decrypt, monitor and "
            "denied request ('-' for standard error)."
        },
    )
    record_instances: bool = field(
        default=True,
        metadata={
            "help": "Record who fetches which version (GET /instances, the console) in <data-dir>/state.db."
        },
    )
    instance_ids_per_address: int = field(
        default=1000,
        metadata={
            "help": "Distinct instance ids one remote address may add to the inventory per hour "
            "(per worker), and twice as many rows (an id with one application, profiles and "
            "label); reports beyond are dropped, the requests are served."
        },
    )
    polls_per_address: int = field(
        default=500,
        metadata={
            "help": "Long polls one client address may hold parked at once, per worker (0: no cap); "
            "one beyond is answered 429. Behind a proxy, set --proxy-hops so the address is the client's."
        },
    )
    slots_per_caller: int = field(
        default=DEFAULT_SLOTS_PER_CALLER,
        metadata={
            "help": "Distinct environments (application, profiles, label) one caller may wait on at "
            "once, per worker (0: no cap); a long poll on one more is answered 429. A caller is its "
            "client and address (its address on an open server)."
        },
    )
    unknown_applications: str = field(
        default="warn",
        metadata={
            "help": "A request for an application no configuration file names: serve (the shared "
            "application* settings, marked X-Config-Unknown-Application), warn (serve it so and log "
            "each name once) or deny (404 naming the application)."
        },
    )
    certfile: str | None = field(
        default=None, metadata={"help": "TLS certificate (PEM) to serve HTTPS directly."}
    )
    keyfile: str | None = field(default=None, metadata={"help": "TLS private key (PEM) for --certfile."})
    proxy_hops: int = field(
        default=0,
        metadata={
            "help": "Reverse proxies in front of the server whose X-Forwarded-For/-Proto to trust (0: none)."
        },
    )

    overrides: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "Properties put first in every environment (Spring's overrides): repeat "
            "--override key=value; CONFIG_SERVER_OVERRIDES takes key=value pairs separated by commas "
            "or newlines, or a YAML mapping; the settings file an `overrides:` mapping.",
            "flag": False,
        },
    )

    def validate(self) -> Settings:
        """Check ranges and fill derived defaults; raise ValueError with a clear message."""
        if self.port < 0 or self.port > 65535:
            raise ValueError(f"port {self.port} is out of range")
        if self.workers < 1 or self.threads < 1:
            raise ValueError("workers and threads must be at least 1")
        if self.instance_ids_per_address < 1:
            raise ValueError("instance-ids-per-address must be at least 1")
        if self.polls_per_address < 0:
            raise ValueError("polls-per-address must not be negative")
        if self.slots_per_caller < 0:
            raise ValueError("slots-per-caller must not be negative")
        if self.refresh_interval < 0:
            raise ValueError("refresh-interval must not be negative")
        if self.ready_refresh_intervals < 0:
            raise ValueError("ready-refresh-intervals must not be negative")
        if self.cache_size < 1:
            raise ValueError("cache-size must be at least 1")
        if self.worker_class not in ("gevent", "gthread"):
            raise ValueError(f"worker-class must be gevent or gthread, not {self.worker_class!r}")
        if self.unknown_applications not in ("serve", "warn", "deny"):
            raise ValueError(
                f"unknown-applications must be serve, warn or deny, not {self.unknown_applications!r}"
            )
        if self.poll_interval <= 0:
            raise ValueError("poll-interval must be positive")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError(f"unknown log level {self.log_level!r}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log-format must be text or json, not {self.log_format!r}")
        if self.client_timeout <= 0 or self.request_timeout <= 0:
            raise ValueError("client-timeout and request-timeout must be positive")
        if self.worker_timeout < 5:
            raise ValueError("worker-timeout must be at least 5 seconds (a heartbeat waits up to 3 s)")
        if self.proxy_hops < 0:
            raise ValueError("proxy-hops must not be negative")
        if self.redis and not self.redis.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis must be a redis://, rediss:// or unix:// URL")
        if bool(self.certfile) != bool(self.keyfile):
            raise ValueError("certfile and keyfile go together: give both or neither")
        try:
            bytes.fromhex(self.encrypt_salt)
        except ValueError:
            raise ValueError(f"encrypt-salt must be hex, not {self.encrypt_salt!r}") from None
        self.overrides = parse_overrides(self.overrides)
        if not self.cache_dir:
            self.cache_dir = str(Path(self.data_dir) / "cache")
        return self

    @classmethod
    def load(
        cls,
        overrides: dict[str, Any] | None = None,
        settings_file: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> Settings:
        """Merge defaults, the YAML settings file, `CONFIG_SERVER_*` variables and overrides."""
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        settings_file = settings_file or environ.get(f"{ENV_PREFIX}CONFIG")
        if settings_file:
            values.update(_read_settings_file(settings_file))
        layers = [values.pop("overrides", None), environ.get(f"{ENV_PREFIX}OVERRIDES")]
        if "ENCRYPT_KEY" in environ:  # Spring Cloud Config's own variable
            values["encrypt_key"] = environ["ENCRYPT_KEY"]
        for f in fields(cls):
            env_name = ENV_PREFIX + f.name.upper()
            if env_name in environ and f.name != "overrides":
                values[f.name] = environ[env_name]
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        layers.append(values.pop("overrides", None))
        merged: dict[str, Any] = {}  # per key: the settings file, then the variable, then the flags
        for layer in layers:
            merged.update(parse_overrides(layer))
        values["overrides"] = merged
        return cls(**{k: _coerce(cls, k, v) for k, v in values.items()}).validate()


def parse_overrides(value: Any) -> dict[str, Any]:
    """Overrides from a mapping, `key=value` strings, or text of `key=value` pairs or a YAML mapping.

    Text pairs are separated by newlines when there are any, else by commas. Raises ValueError
    naming the malformed item.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(f"overrides are not a valid YAML mapping: {exc}") from None
            if not isinstance(value, dict):
                raise ValueError("overrides must be a mapping of keys to values")
        else:
            value = [item.strip() for item in text.split("\n" if "\n" in text else ",") if item.strip()]
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)):
        pairs = []
        for item in value:
            key, sep, text = str(item).partition("=")
            if not sep:
                raise ValueError(f"override {item!r} must be written key=value")
            pairs.append((key, text))
    else:
        raise ValueError("overrides must be a mapping or key=value pairs")
    result: dict[str, Any] = {}
    for key, item in pairs:
        name = str(key).strip()
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"override key {key!r} is empty or contains spaces")
        result[name] = item
    return result


def _read_settings_file(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"settings file {path} must be a mapping")
    known = {f.name for f in fields(Settings)}
    values = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"settings file {path}: unknown settings {sorted(unknown)}")
    return values


def _coerce(cls: type, name: str, value: Any) -> Any:
    kind = {f.name: f for f in dataclasses.fields(cls)}[name].type
    if "dict" in str(kind):
        return parse_overrides(value)
    if "list" in str(kind):
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return list(value)
    if kind == "bool" or kind is bool:
        if isinstance(value, str):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(f"{name} must be true or false, not {value!r}")
            return value.lower() in ("1", "true", "yes", "on")
        return bool(value)
    if kind == "int" or kind is int:
        return int(value)
    if kind == "float" or kind is float:
        return float(value)
    return None if value is None else str(value)
