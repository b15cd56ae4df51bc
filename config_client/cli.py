"""The `config-client` command: `get` prints settings, `watch` prints one JSON line per new version.

config-client get --server URL APP PROFILES [KEY] [--label L] [--format yaml|json|properties|env]
config-client watch --server URL APP PROFILES [--label L]
config-client instances --server URL APP [--profiles P] [--label L]

Without --server the CONFIG_CLIENT_SERVERS variable is read, without --token CONFIG_CLIENT_TOKEN
(the deprecated CONFIG_SERVER_URL and CONFIG_SERVER_TOKEN still work, with a warning).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import requests
import yaml

from config_client.client import ConfigClient
from config_client.errors import ConfigClientError, ConfigUnavailable
from config_client.snapshot import Change, unflatten
from config_client.transport import server_urls
from config_client.variables import SERVERS_ENV, configured_servers, configured_token


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if not args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(levelname)s %(message)s",
    )
    try:
        return int(args.run(args))
    except ConfigClientError as exc:
        print(f"config-client: {exc}", file=sys.stderr)
        return 2


def _warn(message: str) -> None:
    print(f"config-client: warning: {message}", file=sys.stderr)


def _servers(args: argparse.Namespace) -> list[str]:
    """--server (repeated), else CONFIG_CLIENT_SERVERS (or the deprecated CONFIG_SERVER_URL)."""
    try:
        return server_urls(args.server or configured_servers("", warn=_warn))
    except ValueError as exc:
        raise ConfigClientError(str(exc)) from None


def _token(args: argparse.Namespace) -> str | None:
    """--token, else CONFIG_CLIENT_TOKEN (or the deprecated CONFIG_SERVER_TOKEN)."""
    return str(args.token) if args.token else configured_token(warn=_warn)


def _client(args: argparse.Namespace, watch: bool) -> ConfigClient:
    return ConfigClient(
        _servers(args),
        args.app,
        args.profiles,
        args.label,
        token=_token(args) or "",
        username=args.username,
        password=args.password,
        fail_fast=True,
        watch=watch,
        cache_dir=args.cache_dir,
        wait=args.wait,
        poll_interval=args.poll_interval,
    )


def _get(args: argparse.Namespace) -> int:
    client = _client(args, watch=False).start()
    values = dict(client.snapshot.values)
    if args.key is not None:
        if args.key in values:
            print(_scalar_text(values[args.key]) if args.format != "json" else json.dumps(values[args.key]))
            return 0
        section = {k: v for k, v in values.items() if k.startswith((f"{args.key}.", f"{args.key}["))}
        if not section:
            print(f"config-client: no key {args.key!r}", file=sys.stderr)
            return 1
        values = section
    sys.stdout.write(render(values, args.format))
    return 0


def render(values: dict[str, Any], fmt: str) -> str:
    """Flat settings as yaml, json, properties (`key=value`) or env (`KEY='value'`) text."""
    if fmt == "json":
        return json.dumps(unflatten(values), indent=2, sort_keys=True) + "\n"
    if fmt == "properties":
        return "".join(f"{k}={_scalar_text(values[k])}\n" for k in sorted(values))
    if fmt == "env":
        return "".join(f"{_env_name(k)}={shlex.quote(_scalar_text(values[k]))}\n" for k in sorted(values))
    return yaml.safe_dump(unflatten(values), default_flow_style=False, sort_keys=True, allow_unicode=True)


def _watch(args: argparse.Namespace) -> int:
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    client = _client(args, watch=True)

    def emit(change: Change) -> None:
        line = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **change.to_json()}
        print(json.dumps(line, default=str), flush=True)

    client.on_change(emit)
    client.start()
    emit(Change(None, client.version, added=dict(client.snapshot.values)))
    stopped.wait()
    client.stop()
    return 0


def _instances(args: argparse.Namespace) -> int:
    """Print the server's inventory of one application: id, version, since, status (plain requests)."""
    params = {"application": args.app, "profiles": args.profiles, "label": args.label}
    headers = {"Accept": "application/json"}
    token = _token(args)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    auth = (args.username or "", args.password or "") if args.username or args.password else None
    server = _servers(args)[0]
    url = server + "/instances"
    try:
        response = requests.get(
            url, params={k: v for k, v in params.items() if v}, headers=headers, auth=auth, timeout=10
        )
    except requests.RequestException as exc:
        raise ConfigUnavailable(f"cannot reach {server}: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        message = body.get("message") if isinstance(body, dict) else response.reason
        print(f"config-client: {response.status_code} {message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    rows = [("ID", "VERSION", "SINCE", "STATUS")]
    for instance in body.get("instances", []):
        status = instance.get("status", "")
        rejected = instance.get("rejected")
        if rejected:
            status += f" ({str(rejected.get('version'))[:12]}: {rejected.get('reason') or 'no reason'})"
        current = instance.get("current")
        if current is not None:  # by content: the settings it runs are (not) the newest
            status += " (current)" if current else " (behind)"
        version = instance.get("version") or "unknown"
        rows.append((str(instance.get("id")), version[:12], str(instance.get("since", "")), status))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3])
    for env in body.get("environments", []):
        shares = ", ".join(f"{v[:12]}: {n}" for v, n in env.get("versions", {}).items()) or "none"
        where = f"{env.get('application')}/{env.get('profiles')}/{env.get('label')}"
        print(f"# {where}: {shares}", file=sys.stderr)
    if body.get("truncated"):
        print(f"# {body.get('note') or 'more instances matched than shown'}", file=sys.stderr)
    return 0


def _env_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", key).strip("_").upper()


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="config-client", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for name, run, help_text in (
        ("get", _get, "print one key or all settings"),
        ("watch", _watch, "print one JSON line per applied version"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(run=run)
        sub.add_argument(
            "--server",
            action="append",
            help="config server URL, e.g. http://127.0.0.1:8888; repeat it for replicas of a cluster "
            f"(default: the {SERVERS_ENV} variable, comma-separated)",
        )
        sub.add_argument("app", help="application name")
        sub.add_argument("profiles", help="comma-separated profiles")
        if name == "get":
            sub.add_argument("key", nargs="?", help="one flat key (or a prefix) to print")
            sub.add_argument("--format", choices=("yaml", "json", "properties", "env"), default="yaml")
        sub.add_argument("--label", help="branch, tag or commit (default: the server's)")
        sub.add_argument("--token", help="bearer token (default: the CONFIG_CLIENT_TOKEN variable)")
        sub.add_argument("--username", help="HTTP Basic user name")
        sub.add_argument("--password", help="HTTP Basic password")
        sub.add_argument("--cache-dir", help="folder for the last-known-good copy")
        sub.add_argument("--wait", type=float, default=30.0, help="long-poll seconds (default 30)")
        sub.add_argument(
            "--poll-interval",
            type=float,
            default=30.0,
            help="seconds between polls against servers without long poll",
        )
        sub.add_argument("-v", "--verbose", action="store_true", help="log what the client does")
    sub = commands.add_parser("instances", help="list the instances of an application and their versions")
    sub.set_defaults(run=_instances)
    sub.add_argument(
        "--server",
        action="append",
        help="config server URL, e.g. http://127.0.0.1:8888 (default: the first URL of the "
        f"{SERVERS_ENV} variable)",
    )
    sub.add_argument("app", help="application name")
    sub.add_argument("--profiles", help="only these comma-separated profiles")
    sub.add_argument("--label", help="only this label")
    sub.add_argument(
        "--token",
        help="bearer token, read role for the application or admin (default: the "
        "CONFIG_CLIENT_TOKEN variable)",
    )
    sub.add_argument("--username", help="HTTP Basic user name")
    sub.add_argument("--password", help="HTTP Basic password")
    sub.add_argument("--json", action="store_true", help="print the server's JSON answer")
    sub.add_argument("-v", "--verbose", action="store_true", help="log what the client does")
    return parser


if __name__ == "__main__":
    sys.exit(main())
