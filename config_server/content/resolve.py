"""Which files serve an (applications, profiles) request, and in what order.

Pure: the caller hands in the folders to search and a function that reads a file (or returns
None); this module decides precedence exactly as `protocol.md` says and builds the Environment.
Highest precedence comes first in the result.

Several application names (`orders,shared`) read `application`, then each name, a later name
beating an earlier one. Profile files beat plain files; within a tier the later profile wins,
then (among the requested names) the later search location, then the later name; the shared
`application` files of a tier come below every requested name's files of that tier.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from config_server.content import profiles as profile_rules
from config_server.content.parsing import Document, parse_file
from config_server.model import Environment, PropertySource

SHARED = "application"
#: Within one name, `.properties` beats `.yml` beats `.yaml`.
EXTENSIONS = (".properties", ".yml", ".yaml")

#: Names with these extensions are configuration files (`.json` is no source, but a rendered name).
CONFIG_FILE_EXTENSIONS = (*EXTENSIONS, ".json")

ReadFile = Callable[[str], "bytes | None"]
ParseFile = Callable[[str, bytes], "list[Document]"]


@dataclass(frozen=True)
class Request:
    """What was asked: application(s), profiles (last is most specific) and the label, if any.

    `application` is the request's text, echoed as the Environment's name; `names` are the
    validated names it lists (`orders,shared`), empty meaning just `application`.
    """

    application: str
    profiles: tuple[str, ...]
    label: str | None
    names: tuple[str, ...] = ()


def own_names(names: Sequence[str]) -> list[str]:
    """The requested names other than `application`, most specific (latest listed) first, once each."""
    seen: list[str] = []
    for name in reversed(names):
        if name != SHARED and name not in seen:
            seen.append(name)
    return seen


def search_order(
    names: Sequence[str], profiles: Sequence[str], folders: Sequence[str]
) -> list[tuple[str, str | None]]:
    """(path without extension, profile or None) pairs from the most to the least specific.

    `folders` are lowest precedence first (the root, then each search path).
    """
    groups = [own_names(names), [SHARED]]
    order: list[tuple[str, str | None]] = []
    for profile in [*reversed(profiles), None]:
        for group in groups:
            for folder in reversed(folders):
                for name in group:
                    stem = f"{name}-{profile}" if profile else name
                    order.append((f"{folder}/{stem}" if folder else stem, profile))
    return order


def file_readings(
    name: str, applications: Sequence[str], profiles: tuple[str, ...]
) -> list[tuple[str, tuple[str, ...]]] | None:
    """The (application, profiles) environments whose configuration a file name denotes.

    None when the name is no configuration file (a template) or is `application.{ext}`, which
    every environment reads. Otherwise every reading of the name, since `{app}-{profile}` is
    ambiguous: `orders-prod.yml` is the `prod` file of `orders` and the plain file of an
    application `orders-prod` (read for whatever profiles are asked: `profiles`);
    `application-prod.yml` is the `prod` file shared by every application, so also by the
    `applications` asked for. A caller that may read one of these environments would be served
    the file's settings by the Environment endpoint anyway.
    """
    stem, ext = posixpath.splitext(name)
    if ext not in CONFIG_FILE_EXTENSIONS or not stem or stem == SHARED:
        return None
    readings: list[tuple[str, tuple[str, ...]]] = [(stem, profiles)]
    for position, char in enumerate(stem):
        if char == "-" and 0 < position < len(stem) - 1:
            base, profile = stem[:position], stem[position + 1 :]
            owners = applications if base == SHARED else (base,)
            readings.extend((owner, (profile,)) for owner in owners)
    return readings


def resolve_environment(
    request: Request,
    version: str,
    folders: Sequence[str],
    read: ReadFile,
    uri: str,
    parse: ParseFile = parse_file,
) -> Environment:
    """Build the Environment: one property source per file document, most specific first.

    `folders` lists where to look, lowest precedence first (the root, then each search path).
    `parse` turns a file into documents (`config-server validate` passes one that remembers).
    """
    sources: list[PropertySource] = []
    for stem, profile in search_order(request.names or (request.application,), request.profiles, folders):
        for ext in EXTENSIONS:
            path = stem + ext
            data = read(path)
            if data is None:
                continue
            documents = parse(path, data)
            sources.extend(_sources_of(path, documents, profile, request.profiles, uri))
    return Environment(
        name=request.application,
        profiles=request.profiles,
        label=request.label,
        version=version,
        property_sources=tuple(sources),
    )


def _sources_of(
    path: str,
    documents: list[Document],
    profile: str | None,
    active: tuple[str, ...],
    uri: str,
) -> list[PropertySource]:
    """The file's documents that apply, most specific first.

    A profile file contributes its plain documents and those its profiles activate; a plain file
    contributes its activated documents (later profile first) above its plain ones. Within a
    file, a later document beats an earlier one.
    """
    plain = [d for d in documents if d.activation is None]
    activated = [
        d for d in documents if d.activation is not None and profile_rules.is_active(d.activation, active)
    ]
    if profile is not None:
        chosen = sorted(plain + activated, key=lambda d: d.index, reverse=True)
    else:
        activated.sort(key=lambda d: (profile_rules.rank(d.activation, active), d.index), reverse=True)
        chosen = activated + sorted(plain, key=lambda d: d.index, reverse=True)
    many = len(documents) > 1 or (documents and documents[0].index > 0)
    return [
        PropertySource(f"{uri}/{path} (document #{d.index})" if many else f"{uri}/{path}", d.values)
        for d in chosen
    ]
