"""The `config-server` command: `serve` runs the server on gunicorn; `validate` checks a repository;
`diff` shows a change's effect before it is merged; `rollout status|halt|resume|advance` and `pin`,
`unpin`, `pins` talk to a running server.

Every option can also come from a `CONFIG_SERVER_<NAME>` environment variable or from the YAML
settings file given by `--config` (or `CONFIG_SERVER_CONFIG`); a flag beats a variable, which
beats the file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from config_server.settings import ENV_PREFIX, Settings
from config_server.version import __version__

if TYPE_CHECKING:
    from config_server.content.crypto import Keyring

_Command = TypeVar("_Command", bound=Callable[..., Any])


#: click's parameter type and the metavar `--help` shows, by the Settings field's annotation.
_OPTION_TYPES: dict[str, tuple[Any, str]] = {
    "int": (click.INT, "INTEGER"),
    "float": (click.FLOAT, "NUMBER"),
    "bool": (click.STRING, "true|false"),
    "list[str]": (click.STRING, "A,B,..."),
}


def _settings_options(func: _Command) -> _Command:
    """One option per Settings field, typed, with its default and its environment variable.

    Values keep their spelling until `Settings.load` coerces them (a flag beats a variable, which
    beats the settings file), so a bool takes the same words everywhere: true/false, yes/no, 1/0."""
    for f in reversed(fields(Settings)):
        if not f.metadata.get("flag", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        kind, metavar = _OPTION_TYPES.get(str(f.type), (click.STRING, "TEXT"))
        shown = f" [default: {str(default).lower() if isinstance(default, bool) else default}]"
        func = click.option(
            flag,
            f.name,
            default=None,
            type=kind,
            metavar=metavar,
            help=f"{f.metadata.get('help', '')}{shown if default not in (None, '', []) else ''} "
            f"(env {ENV_PREFIX}{f.name.upper()})",
        )(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="config-server")
def main() -> None:
    """A configuration server for microservices: YAML in git, served over the Spring Cloud Config
    protocol.

    Options may also be set with CONFIG_SERVER_<NAME> environment variables (for example
    CONFIG_SERVER_REPO) or in a YAML settings file (--config), with the same names.
    """


@main.command()
@click.option(
    "--config",
    "settings_file",
    default=None,
    type=click.Path(dir_okay=False),
    help=f"YAML settings file with any of the options below (env {ENV_PREFIX}CONFIG).",
)
@click.option(
    "--override",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="A property put first in every environment (Spring's overrides); repeatable. "
    f"(env {ENV_PREFIX}OVERRIDES: key=value pairs, comma- or newline-separated)",
)
@_settings_options
def serve(settings_file: str | None, **options: Any) -> None:
    """Serve the configuration repository over HTTP on gunicorn."""
    options["overrides"] = list(options["overrides"]) or None
    try:
        settings = Settings.load(options, settings_file)
    except (ValueError, TypeError, OSError) as exc:
        raise click.UsageError(str(exc)) from exc
    from config_server.runtime.log_setup import configure_logging
    from config_server.runtime.serving import serve as run

    configure_logging(settings)
    try:
        run(settings)
    except Exception as exc:  # noqa: BLE001 - a start-up failure is reported, not traced
        raise click.ClickException(str(exc)) from exc


def _keyring_from(settings_file: str | None, key_file: str | None) -> Keyring:
    from config_server.content.crypto import load_keyring
    from config_server.errors import CryptoError

    try:
        settings = Settings.load({"encrypt_key_file": key_file}, settings_file)
        keyring = load_keyring(settings.encrypt_key, settings.encrypt_key_file, settings.encrypt_salt)
    except (ValueError, TypeError, OSError, CryptoError) as exc:
        raise click.UsageError(str(exc)) from exc
    if keyring is None:
        raise click.UsageError("no key: set ENCRYPT_KEY or give --key-file")
    return keyring


def _value_or_stdin(value: str | None) -> str:
    if value is None or value == "-":
        return sys.stdin.read().rstrip("\n")
    return value


_key_file_option = click.option(
    "--key-file",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="Key file (passphrase, PEM or keyring); default: ENCRYPT_KEY or CONFIG_SERVER_ENCRYPT_KEY[_FILE].",
)
_settings_file_option = click.option(
    "--config", "settings_file", default=None, type=click.Path(dir_okay=False), help="YAML settings file."
)


@main.command()
@_settings_file_option
@_key_file_option
@click.option(
    "--key", "key_name", default=None, help="Name of the keyring key to use (default: the primary)."
)
@click.option("--spring", is_flag=True, help="Write Spring's AES-CBC format instead of AES-GCM.")
@click.argument("value", required=False)
def encrypt(
    settings_file: str | None, key_file: str | None, key_name: str | None, spring: bool, value: str | None
) -> None:
    """Print `{cipher}...` for VALUE (or standard input), ready to paste into a YAML file."""
    from config_server.errors import CryptoError

    keyring = _keyring_from(settings_file, key_file)
    try:
        click.echo("{cipher}" + keyring.encrypt(_value_or_stdin(value), key_name=key_name, spring=spring))
    except CryptoError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@_settings_file_option
@_key_file_option
@click.argument("value", required=False)
def decrypt(settings_file: str | None, key_file: str | None, value: str | None) -> None:
    """Print the plain text of VALUE (or standard input), with or without `{cipher}`."""
    from config_server.errors import CryptoError

    keyring = _keyring_from(settings_file, key_file)
    try:
        click.echo(keyring.decrypt(_value_or_stdin(value)))
    except CryptoError as exc:
        raise click.ClickException(f"cannot decrypt: {exc}") from exc


@main.command()
@click.argument("path", required=False, default=".", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--rev",
    default=None,
    help="Check this branch, tag or commit of the git repository at PATH (default: the files of "
    "PATH as they are on disk, as a pre-commit hook sees them).",
)
@click.option(
    "--format", "output", type=click.Choice(["text", "json"]), default="text", help="Output format."
)
@click.option("--search-paths", default="", help="Comma-separated folders also searched, as for serve.")
@_settings_file_option
@_key_file_option
def validate(
    path: str,
    rev: str | None,
    output: str,
    search_paths: str,
    settings_file: str | None,
    key_file: str | None,
) -> None:
    """Check every application and profile of the repository at PATH as the server would.

    One line per problem, `file:line: application/profile: message`; exit status 1 when there
    is a problem, 0 when there is none, 2 on a usage error. `{cipher}` values are decrypted with
    the server's key (ENCRYPT_KEY, CONFIG_SERVER_ENCRYPT_KEY[_FILE] or --key-file); without a key
    they are left unchecked, and a note says so.
    """
    import json
    import tempfile
    from pathlib import Path

    from config_server.backends.base import Backend
    from config_server.backends.git import GitBackend
    from config_server.backends.native import NativeBackend
    from config_server.content.crypto import load_keyring
    from config_server.errors import ConfigServerError, CryptoError
    from config_server.safety.repo_check import check_repository

    try:
        settings = Settings.load({"encrypt_key_file": key_file}, settings_file)
        keyring = load_keyring(settings.encrypt_key, settings.encrypt_key_file, settings.encrypt_salt)
    except (ValueError, TypeError, OSError, CryptoError) as exc:
        raise click.UsageError(str(exc)) from exc
    root = Path(path)
    bare = (root / "HEAD").is_file() and (root / "objects").is_dir()
    paths = [p for p in search_paths.split(",") if p.strip()]
    with tempfile.TemporaryDirectory(prefix="config-validate-") as scratch:
        try:
            backend: Backend
            if rev is not None or bare:
                backend = GitBackend(str(root), scratch)
            else:
                backend = NativeBackend(root)
            try:
                report = check_repository(backend, rev, paths, keyring, decrypt=keyring is not None)
            finally:
                backend.close()
        except ConfigServerError as exc:
            raise click.UsageError(str(exc)) from exc
    if keyring is None:
        click.echo("note: no encryption key given: {cipher} values were not checked", err=True)
    if output == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        for finding in report.findings:
            click.echo(finding.text())
        count = len(report.findings)
        summary = f"{count} problem{'' if count == 1 else 's'} in {report.environments} environments"
        click.echo(f"{summary} at {report.where()}", err=True)
    sys.exit(1 if report.findings else 0)


@main.command()
@click.option("--name", default="my-service", help="Client name for the auth-file snippet.")
@click.option("--hash", "hash_only", is_flag=True, help="Hash a token read from standard input instead.")
def token(name: str, hash_only: bool) -> None:
    """Make a new client token: the token on standard output, an auth-file entry on standard error."""
    from config_server.http.auth import hash_token, new_token

    if hash_only:
        click.echo(hash_token(sys.stdin.read().strip()))
        return
    fresh = new_token()
    click.echo(fresh)
    click.echo(
        f"# give the token above to the client; put this in the auth file:\n"
        f"  - name: {name}\n    tokens: [{hash_token(fresh)}]\n    roles: [read]\n"
        f'    applications: ["*"]',
        err=True,
    )


_data_dir_option = click.option(
    "--data-dir",
    default=None,
    help=f"The server's --data-dir, which holds state.db [default: {ENV_PREFIX}DATA_DIR, the settings "
    "file's, else .data].",
)


def _state_file(data_dir: str | None, settings_file: str | None) -> tuple[Path, Settings]:
    """The state store's file under the server's data dir, and the settings it was found from."""
    from config_server.state.backup import STATE_FILE

    try:
        settings = Settings.load({"data_dir": data_dir}, settings_file)
    except (ValueError, TypeError, OSError) as exc:
        raise click.UsageError(str(exc)) from exc
    return Path(settings.data_dir) / STATE_FILE, settings


def _redis_note(settings: Settings) -> None:
    if settings.redis:
        click.echo(
            "note: with --redis the shared state (inventory, rollouts) is in Redis: back it up with "
            "Redis's own persistence (RDB or AOF); state.db holds this machine's durable copy of "
            "the rollouts only",
            err=True,
        )


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items())


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@_data_dir_option
@_settings_file_option
def backup(path: str, data_dir: str | None, settings_file: str | None) -> None:
    """Copy the state store (<data-dir>/state.db) into the file PATH, while the server runs.

    The copy is consistent (SQLite's online backup API) and self-contained; an existing PATH is
    replaced. It holds the rollouts (halts, progress), their rejections and the instance
    inventory; clones, verdicts and metrics are rebuilt from git and need no backup
    (docs/operations.md, "Backups").
    """
    from config_server.errors import BackupError
    from config_server.state.backup import backup_state

    source, settings = _state_file(data_dir, settings_file)
    _redis_note(settings)
    try:
        counts = backup_state(source, path)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"backed up {source} to {path}: {_counted(counts)}")


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@_data_dir_option
@_settings_file_option
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing state store (stop the server first: what it recorded since the "
    "backup is lost).",
)
def restore(path: str, data_dir: str | None, settings_file: str | None, force: bool) -> None:
    """Put the backup file PATH back as the state store (<data-dir>/state.db).

    The file is checked first (SQLite's integrity check, the store's tables). An existing store
    is replaced only with --force, in one transaction.
    """
    from config_server.errors import BackupError
    from config_server.state.backup import restore_state

    target, settings = _state_file(data_dir, settings_file)
    _redis_note(settings)
    try:
        counts = restore_state(path, target, force=force)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"restored {path} into {target}: {_counted(counts)}")


@main.group()
def rollout() -> None:
    """See, halt, resume and advance rollouts (`rollouts/{app}.yml`) on a running server.

    They talk to the server over HTTP: --server (or the first URL of CONFIG_CLIENT_SERVERS,
    default http://127.0.0.1:8888) with --token (or CONFIG_CLIENT_TOKEN) of a client with the
    `rollout`, `release` or `admin` role. CONFIG_SERVER_* variables are the server's own settings; the
    CONFIG_SERVER_URL and CONFIG_SERVER_TOKEN these commands read before still work, with a
    deprecation warning.
    """


#: The server `config-server rollout` calls when neither --server nor a variable names one.
DEFAULT_ROLLOUT_SERVER = "http://127.0.0.1:8888"


def _deprecation(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _caller_server(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    """--server, else the first URL of CONFIG_CLIENT_SERVERS (or deprecated CONFIG_SERVER_URL)."""
    from config_client.variables import configured_servers

    if value:
        return value
    configured = configured_servers(warn=_deprecation)
    first = (configured or "").split(",")[0].strip()
    return first or DEFAULT_ROLLOUT_SERVER


def _caller_token(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--token, else CONFIG_CLIENT_TOKEN (or the deprecated CONFIG_SERVER_TOKEN)."""
    from config_client.variables import configured_token

    return value or configured_token(warn=_deprecation)


_server_option = click.option(
    "--server",
    default=None,
    callback=_caller_server,
    help="The server's URL [default: the first URL of CONFIG_CLIENT_SERVERS, else "
    f"{DEFAULT_ROLLOUT_SERVER}].",
)
_token_option = click.option(
    "--token",
    default=None,
    callback=_caller_token,
    help="Bearer token [default: the CONFIG_CLIENT_TOKEN variable].",
)
_label_option = click.option("--label", default=None, help="The base label (default: the server's).")


def _rollout_call(method: str, url: str, token: str | None, **kwargs: Any) -> dict[str, Any]:
    import requests

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.request(method, url, headers=headers, timeout=30, **kwargs)
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from exc
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {"message": response.text[:200]}
    if response.status_code >= 400:
        raise click.ClickException(f"{response.status_code}: {body.get('message', body)}")
    return body


@rollout.command("status")
@click.argument("application", required=False)
@_server_option
@_token_option
@_label_option
@click.option(
    "--format", "output", type=click.Choice(["text", "json"]), default="text", help="Output format."
)
def rollout_status(
    application: str | None, server: str, token: str | None, label: str | None, output: str
) -> None:
    """Each rollout: state, step, cohort, versions, rejections, time to the next step."""
    import json

    params = {k: v for k, v in (("application", application), ("label", label)) if v}
    body = _rollout_call("GET", server.rstrip("/") + "/rollouts", token, params=params)
    if output == "json":
        click.echo(json.dumps(body, indent=2))
        return
    click.echo(format_rollout_status(body), nl=False)


@rollout.command("halt")
@click.argument("application")
@_server_option
@_token_option
@_label_option
@click.option("--reason", default="halted from the command line", show_default=True, help="Why.")
def rollout_halt(application: str, server: str, token: str | None, label: str | None, reason: str) -> None:
    """Halt APPLICATION's rollout now: its cohort is answered the base label at once."""
    body = _rollout_move(server, token, application, label, "halt", reason)
    click.echo(f"{body['application']} at {body['label']}: halted ({body['haltReason']})")


@rollout.command("resume")
@click.argument("application")
@_server_option
@_token_option
@_label_option
@click.option("--reason", default="resumed from the command line", show_default=True, help="Why.")
def rollout_resume(application: str, server: str, token: str | None, label: str | None, reason: str) -> None:
    """Resume APPLICATION's halted rollout: the halted step bakes again from now, its cohort gets
    the canary again."""
    body = _rollout_move(server, token, application, label, "resume", reason)
    click.echo(
        f"{body['application']} at {body['label']}: resumed, {body['state']} at step {body['step']:g}%"
    )


@rollout.command("advance")
@click.argument("application")
@_server_option
@_token_option
@_label_option
@click.option("--reason", default="advanced from the command line", show_default=True, help="Why.")
def rollout_advance(application: str, server: str, token: str | None, label: str | None, reason: str) -> None:
    """Start APPLICATION's rollout's next step now (after the last step: complete)."""
    body = _rollout_move(server, token, application, label, "advance", reason)
    click.echo(
        f"{body['application']} at {body['label']}: advanced, {body['state']} at step {body['step']:g}%"
    )


def _rollout_move(
    server: str, token: str | None, application: str, label: str | None, action: str, reason: str
) -> dict[str, Any]:
    """`POST /rollouts/{app}/{action}` with the reason; the answer's JSON."""
    return _post_reason(server, token, ("rollouts", application, action), label, reason)


def _post_reason(
    server: str, token: str | None, path: tuple[str, ...], label: str | None, reason: str
) -> dict[str, Any]:
    """`POST` to `path` (each part quoted) on `server`, `?label=` when given, with `{"reason"}`: the
    operator actions (halt, resume, advance, approve); the answer's JSON."""
    from urllib.parse import quote

    params = {"label": label} if label else {}
    url = server.rstrip("/") + "/" + "/".join(quote(part, safe="") for part in path)
    return _rollout_call("POST", url, token, params=params, json={"reason": reason})


def _pin_url(server: str, application: str, profiles: str, label: str | None) -> str:
    """`/pins/{app}/{profiles}[/{label}]` on `server`, each name quoted (`/` in a label as `(_)`)."""
    from urllib.parse import quote

    parts = [application, profiles] + ([label.replace("/", "(_)")] if label else [])
    return server.rstrip("/") + "/pins/" + "/".join(quote(part, safe="(),") for part in parts)


@main.command("pin")
@click.argument("application")
@click.argument("profiles")
@click.option("--to", "version", required=True, help="The commit to pin to (full or abbreviated id).")
@click.option("--reason", required=True, help="Why (kept with the pin and in the audit log).")
@_server_option
@_token_option
@click.option("--label", default=None, help="The label pinned (default: the server's).")
def pin(
    application: str,
    profiles: str,
    version: str,
    reason: str,
    server: str,
    token: str | None,
    label: str | None,
) -> None:
    """Pin APPLICATION/PROFILES (at --label) to a version its label served before: every instance is
    answered it at once, whatever lands on git, until `config-server unpin`. Needs the `release`
    role (or admin); talks to a running server like `rollout halt`."""
    body = _rollout_call(
        "POST",
        _pin_url(server, application, profiles, label),
        token,
        json={"version": version, "reason": reason},
    )
    click.echo(
        f"{body['application']}/{body['profiles']} at {body['label']}: pinned to {body['version']} "
        f"(by {body['by']}: {body['reason']})"
    )


@main.command("unpin")
@click.argument("application")
@click.argument("profiles")
@click.option("--reason", default="", help="Why (goes to the audit log).")
@_server_option
@_token_option
@click.option("--label", default=None, help="The label unpinned (default: the server's).")
def unpin(
    application: str, profiles: str, reason: str, server: str, token: str | None, label: str | None
) -> None:
    """Unpin APPLICATION/PROFILES (at --label): its label's newest good commit is served again at once."""
    body = _rollout_call(
        "DELETE", _pin_url(server, application, profiles, label), token, json={"reason": reason}
    )
    click.echo(
        f"{body['application']}/{body['profiles']} at {body['label']}: unpinned (was {body['version']})"
    )


@main.command("pins")
@_server_option
@_token_option
def pins(server: str, token: str | None) -> None:
    """Every pin of a running server: environment, version, who and why."""
    body = _rollout_call("GET", server.rstrip("/") + "/pins", token)
    for one in body.get("pins", []):
        click.echo(
            f"{one['application']}/{one['profiles']} at {one['label']}: {one['version'][:12]} "
            f"by {one['by']}: {one['reason']}"
        )
    if not body.get("pins"):
        click.echo("no pins")


@main.command("approve")
@click.argument("version")
@_server_option
@_token_option
@click.option("--label", default=None, help="The label the commit is on (default: the server's).")
@click.option("--reason", default="", help="Why it may be released (kept in the audit log).")
def approve_command(version: str, server: str, token: str | None, label: str | None, reason: str) -> None:
    """Approve commit VERSION (an id or a prefix of 7+ hex digits) for the protected environments
    of `policy/approvals.yml`: it and the changes before it on the label are served. Talks to a
    running server (--server, --token of a client with the `approver` role; its author may not
    approve it)."""
    body = _post_reason(server, token, ("approvals", version), label, reason)
    click.echo(f"{body['version']} approved on {body['label']} by {body['approver']}")


@main.command("revert")
@click.argument("version")
@click.option("--reason", required=True, help="Why (in the revert commit's message and the audit log).")
@_server_option
@_token_option
@click.option("--label", default=None, help="The branch the commit is on (default: the server's).")
def revert_command(version: str, reason: str, server: str, token: str | None, label: str | None) -> None:
    """Revert commit VERSION on --label with a new `git revert` commit, made and pushed by a running
    server that may write to its repository (never a force push); it is then served like any
    commit. Where the server may not write, prints the git command to run instead. Needs the
    `release` role (or admin). Exit status 0 when reverted, 1 otherwise."""
    from urllib.parse import quote

    import requests

    url = f"{server.rstrip('/')}/reverts/{quote(version, safe='')}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params = {"label": label} if label else {}
    try:
        response = requests.post(url, headers=headers, params=params, json={"reason": reason}, timeout=300)
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from exc
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {"message": response.text[:200]}
    if response.status_code < 300 and body.get("reverted"):
        click.echo(
            f"{body['version'][:12]} reverted on {body['label']} by {body['commit']}"
            f"{' (pushed)' if body['pushed'] else ''}"
        )
        return
    if response.status_code < 300:
        click.echo(f"the server cannot revert: {body.get('why')}; run this in a clone instead:", err=True)
    else:
        click.echo(f"{response.status_code}: {body.get('message', body)}", err=True)
    if body.get("command"):
        click.echo(body["command"])
    sys.exit(1)


def format_rollout_status(body: dict[str, Any]) -> str:
    """`config-server rollout status` as text: one block per rollout of a `/rollouts` answer, then
    the ignored files."""
    from config_server.content.rollout_plan import HALTED

    lines = []
    for r in body.get("rollouts", []):
        steps = ", ".join(f"{s:g}%" for s in r["steps"])
        lines.append(f"{r['application']} at {r['label']}: {r['state']}, step {r['step']:g}% of [{steps}]")
        lines.append(f"  canary     {r['canary']} ({(r['canaryVersion'] or '?')[:12]}), id {r['id']}")
        if r.get("secondsToNextStep") is not None:
            lines.append(f"  next step  in {int(r['secondsToNextStep'])} s")
        if r["state"] == HALTED:
            refused = len({rejection["instance"] for rejection in r["rejections"]})
            lines.append(f"  cohort     {r['cohort']} served the canary before the halt, {refused} refused")
        else:
            lines.append(
                f"  cohort     {r['cohort']} of {r['matching']} matching ({r['instances']} instances)"
            )
        for version, count in r["versions"].items():
            lines.append(f"  version    {version[:12]}: {count}")
        for rejection in r["rejections"]:
            lines.append(f"  rejected   {rejection['instance']}: {rejection['reason'] or '-'}")
        if r.get("haltReason"):
            shown = "halted    " if r["state"] == HALTED else "was halted"
            lines.append(f"  {shown} {r['haltReason']}")
        if r.get("lastMove"):
            lines.append(f"  moved      {r['lastMove']['note']}")
        lines.append(f"  next       {r['advice']}")
    for error in body.get("errors", []):
        lines.append(f"ignored {error['application']} at {error['label']}: {error['message']}")
    if not lines:
        lines.append("no rollouts")
    return "\n".join(lines) + "\n"


@main.command("diff")
@click.argument("revisions", metavar="BASE..HEAD")
@click.argument("path", required=False)
@click.option("--repo", default=".", show_default=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "markdown", "json"]),
    default="text",
    show_default=True,
    help="Output format (markdown: a pull-request comment).",
)
@click.option(
    "--fail-on",
    type=click.Choice(["held-back"]),
    default=None,
    help="Exit 1 only when the head would be held back for some environment, not for any difference.",
)
@click.option("--search-paths", default="", help="Comma-separated folders also searched, as for serve.")
@click.option(
    "--server",
    default=None,
    help="A running server whose live instances of each environment are counted (GET /instances).",
)
@_token_option
@_settings_file_option
@_key_file_option
def diff_command(
    revisions: str,
    path: str | None,
    repo: str,
    output: str,
    fail_on: str | None,
    search_paths: str,
    server: str | None,
    token: str | None,
    settings_file: str | None,
    key_file: str | None,
) -> None:
    """The effect of the commits BASE..HEAD on every environment, before they are merged.

    For each application and profile whose resolved settings differ between BASE and HEAD (any
    git revision; an empty side is the default branch): each key added, removed or changed, with
    old and new value ({cipher} values masked) and the file and line that set it, and whether the
    server would hold HEAD back for it (the checks of `validate`). PATH (a file or folder of the
    repository) counts only the changes under it. Exit status: 0 no difference, 1 differences
    (with --fail-on held-back: 1 only when some environment would be held back), 2 on an error.
    """
    import dataclasses
    import json
    import tempfile

    from config_server.backends.git import GitBackend
    from config_server.content.crypto import load_keyring
    from config_server.errors import ConfigServerError, CryptoError
    from config_server.observability.change_effect import change_effect, live_instances, with_instances
    from config_server.observability.change_report import as_markdown, as_text, summary
    from config_server.safety.config_service import ConfigService
    from config_server.safety.release_gates import approval_gate, broken_gate

    def fail(message: str) -> None:
        click.echo(f"error: {message}", err=True)
        sys.exit(2)

    base_text, dots, head_text = revisions.partition("..")
    if not dots or head_text.startswith("."):
        fail(f"{revisions!r} is not BASE..HEAD (two dots; use `git merge-base` for a branch's fork point)")
    try:
        settings = Settings.load({"encrypt_key_file": key_file}, settings_file)
        keyring = load_keyring(settings.encrypt_key, settings.encrypt_key_file, settings.encrypt_salt)
    except (ValueError, TypeError, OSError, CryptoError) as exc:
        fail(str(exc))
    with tempfile.TemporaryDirectory(prefix="config-diff-") as scratch:
        try:
            backend = GitBackend(repo, scratch)
            try:
                labels = []
                for text in (base_text, head_text):
                    try:  # a branch, tag or commit id as the server reads it, else any git revision
                        labels.append(backend.resolve(text or None).label if text else None)
                    except ConfigServerError:
                        labels.append(backend.commit_of(text))
                service = ConfigService(
                    backend, [p for p in search_paths.split(",") if p.strip()], cache_size=1
                )
                gates = [broken_gate(keyring, decrypt=keyring is not None), approval_gate(backend.read)]
                effect = change_effect(service, labels[0], labels[1], path, gates)
            finally:
                backend.close()
        except ConfigServerError as exc:
            fail(str(exc))
    for side, text in (("base", base_text), ("head", head_text)):
        if text and getattr(effect, side).label != text:  # HEAD, origin/main: shown as written
            setattr(effect, side, dataclasses.replace(getattr(effect, side), label=text))
    if server:
        try:
            body = _rollout_call("GET", server.rstrip("/") + "/instances", token, params={"limit": 10_000})
        except click.ClickException as exc:
            fail(exc.format_message())
        if body.get("truncated"):
            click.echo(f"note: {body.get('note', 'the instances were cut short')}", err=True)
        live = [i for i in body.get("instances", []) if i.get("status") != "gone"]
        with_instances(effect, live_instances((i["application"], i["profiles"], i["label"]) for i in live))
    if keyring is None:
        click.echo("note: no encryption key given: {cipher} values were not checked", err=True)
    if output == "json":
        click.echo(json.dumps(effect.to_json(), indent=2))
    elif output == "markdown":
        click.echo(as_markdown(effect), nl=False)
    else:
        click.echo(as_text(effect), nl=False)
        click.echo(summary(effect), err=True)
    if fail_on == "held-back":
        sys.exit(1 if effect.held_back else 0)
    sys.exit(1 if effect.differs else 0)


if __name__ == "__main__":
    main()
