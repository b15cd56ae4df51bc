"""Decrypt the `{cipher}` values of a resolved Environment before it is cached and served.

As Spring Cloud Config does: a value that cannot be decrypted is dropped and replaced by
`invalid.<key>` = `<n/a>`, and the log says which key of which file failed, never the value.
The failures are returned too, so that the cached result knows it is broken for watchers (who
must not be handed it) without anybody scanning it again for `invalid.` keys.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, NamedTuple

from config_server.content.crypto import CIPHER_PREFIX, Keyring
from config_server.errors import CryptoError
from config_server.model import Environment, PropertySource

log = logging.getLogger(__name__)

INVALID_PREFIX = "invalid."
NOT_AVAILABLE = "<n/a>"


class Decrypted(NamedTuple):
    """An environment with its `{cipher}` values decrypted, and those that could not be."""

    environment: Environment
    #: (property source name, key) of every value served as `invalid.<key>`.
    undecryptable: tuple[tuple[str, str], ...] = ()


def decrypt_environment(environment: Environment, keyring: Keyring | None) -> Decrypted:
    """The environment with every `{cipher}` value decrypted (or marked invalid), and the failures."""
    sources = []
    failed: list[tuple[str, str]] = []
    changed = False
    for source in environment.property_sources:
        if any(_is_cipher(v) for v in source.source.values()):
            sources.append(PropertySource(source.name, _decrypt_source(source, keyring, failed)))
            changed = True
        else:
            sources.append(source)
    if not changed:
        return Decrypted(environment)
    return Decrypted(replace(environment, property_sources=tuple(sources)), tuple(failed))


def _is_cipher(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(CIPHER_PREFIX)


def _decrypt_source(
    source: PropertySource, keyring: Keyring | None, failed: list[tuple[str, str]]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in source.source.items():
        if not _is_cipher(value):
            values[key] = value
            continue
        if keyring is None:
            log.warning("cannot decrypt %s in %s: no encryption key is configured", key, source.name)
            values[INVALID_PREFIX + key] = NOT_AVAILABLE
            failed.append((source.name, key))
            continue
        try:
            values[key] = keyring.decrypt(value)
        except CryptoError as exc:
            log.warning("cannot decrypt %s in %s: %s", key, source.name, exc)
            values[INVALID_PREFIX + key] = NOT_AVAILABLE
            failed.append((source.name, key))
    return values
