"""Which files serve an (applications, profiles) request, and in what order.

Pure: the caller hands in the folders to search and a function that reads a file (or returns
None); this module reads the files `file_names.search_order` names (precedence exactly as
`protocol.md` says) and builds the Environment. Highest precedence comes first in the result.

Several application names (`orders,shared`) read `application`, then each name, a later name
beating an earlier one. Profile files beat plain files; within a tier the later profile wins,
then (among the requested names) the later search location, then the later name; the shared
`application` files of a tier come below every requested name's files of that tier.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from config_server.content import profiles as profile_rules
from config_server.content.file_names import EXTENSIONS, search_order
from config_server.content.parsing import Document, parse_file
from config_server.model import Environment, PropertySource

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


def noting_profiles(named: set[str], parse: ParseFile = parse_file) -> ParseFile:
    """`parse`, adding to `named` every profile the activation expressions of the parsed files
    mention (`profiles.names_in`): with the profiles files are named after, what decides which
    requested profiles change a resolution (`profiles.relevant`)."""

    def parse_noting(path: str, data: bytes) -> list[Document]:
        documents = parse(path, data)
        for document in documents:
            if document.activation is not None:
                named.update(profile_rules.names_in(document.activation))
        return documents

    return parse_noting


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
