"""The `config-client` command: `get` prints settings, `watch` prints one JSON line per new version.

config-client get --server URL APP PROFILES [KEY] [--label L] [--format yaml|json|properties|env]
config-client watch --server URL APP PROFILES [--label L]
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

import yaml

from config_client.client import ConfigClient
from config_client.errors import ConfigClientError
from config_client.snapshot import Change, unflatten


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


def _client(args: argparse.Namespace, watch: bool) -> ConfigClient:
    return ConfigClient(
        args.server,
        args.app,
        args.profiles,
        args.label,
        token=args.token,
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
        sub.add_argument("--server", required=True, help="config server URL, e.g. http://127.0.0.1:8888")
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
    return parser


if __name__ == "__main__":
    sys.exit(main())
