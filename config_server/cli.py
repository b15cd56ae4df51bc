"""The `config-server` command: `serve` runs the server on gunicorn.

Every option can also come from a `CONFIG_SERVER_<NAME>` environment variable or from the YAML
settings file given by `--config` (or `CONFIG_SERVER_CONFIG`); a flag beats a variable, which
beats the file.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import MISSING, fields

import click

from config_server import __version__
from config_server.settings import ENV_PREFIX, Settings


def _settings_options(func):
    for f in reversed(fields(Settings)):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        shown = f" [default: {default}]" if default not in (None, "", []) else ""
        func = click.option(
            flag,
            f.name,
            default=None,
            help=f"{f.metadata.get('help', '')}{shown} (env {ENV_PREFIX}{f.name.upper()})",
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
@_settings_options
def serve(settings_file: str | None, **options) -> None:
    """Serve the configuration repository over HTTP on gunicorn."""
    try:
        settings = Settings.load(options, settings_file)
    except (ValueError, TypeError, OSError) as exc:
        raise click.UsageError(str(exc)) from exc
    from config_server.serving import serve as run

    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        run(settings)
    except Exception as exc:  # noqa: BLE001 - a start-up failure is reported, not traced
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":
    main()
