"""The one mapping between configuration file names and applications, profiles and search folders.

Pure: names in, names out; no listing, no reading. Resolution asks which files an (applications,
profiles) request reads (`search_order`); the resource scope asks which environments a served
file name denotes (`file_readings`); webhooks ask which applications a changed file may shape
(`applications_reading`); the known-names listing, `config-server validate` and the history ask
which applications and profiles the files name (`applications_from_files`/`_stems`,
`shared_profiles`/`_from_stems`); `git log` asks for the globs of an application's files (`file_patterns`);
search paths are expanded to folders (`search_path_folders`), matched back (`search_path_pattern`)
and listed (`listed_search_folders`) here too.

The rules, once: an application `orders` with profile `prod` reads `orders-prod.{ext}` above
`orders.{ext}`, `.properties` above `.yml` above `.yaml`; the shared `application*` files are read
by every application, below its own. `{a}-{b}` is ambiguous: the `b` file of application `a`, and
the plain file of an application `a-b`; a listing calls it a profile file of the shortest
application (a name with a file of its own) that it starts with, else an application.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence

#: The shared application: its files (`application.yml`, `application-prod.yml`) every one reads.
SHARED = "application"
#: Within one name, `.properties` beats `.yml` beats `.yaml`.
EXTENSIONS = (".properties", ".yml", ".yaml")
#: Names with these extensions are configuration files (`.json` is no source, but a rendered name).
CONFIG_FILE_EXTENSIONS = (*EXTENSIONS, ".json")


def source_stem(name: str) -> str | None:
    """The name without its source extension (`orders-prod.yml` -> `orders-prod`), None when the
    name is no configuration source (a template, `README.md`, a rendered `.json` name)."""
    for ext in EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return None


def is_shared(stem: str) -> bool:
    """Whether a stem is one of the shared files every application reads (`application`,
    `application-prod`)."""
    return stem == SHARED or stem.startswith(SHARED + "-")


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
    """(path without extension, profile or None) pairs an environment reads, most specific first.

    `folders` are lowest precedence first (the root, then each search path). Each pair is read
    with every one of `EXTENSIONS`, in that order.
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


def profiles_with_files(names: Sequence[str], stems: Iterable[str]) -> frozenset[str]:
    """The profiles that name a file of the requested applications or the shared ones, from the
    stems of the files in the folders searched (`orders-p1` -> `p1` for `orders`; `application-eu`
    -> `eu`): a profile outside this set reads no file for them."""
    prefixes = [name + "-" for name in (*own_names(names), SHARED)]
    return frozenset(
        stem[len(prefix) :]
        for stem in stems
        for prefix in prefixes
        if stem.startswith(prefix) and len(stem) > len(prefix)
    )


def _hyphen_readings(stem: str) -> list[tuple[str, str]]:
    """(application, profile) for every hyphen inside `stem`: `a-b-c` -> (`a`, `b-c`), (`a-b`, `c`)."""
    return [
        (stem[:position], stem[position + 1 :])
        for position, char in enumerate(stem)
        if char == "-" and 0 < position < len(stem) - 1
    ]


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
    for base, profile in _hyphen_readings(stem):
        owners = applications if base == SHARED else (base,)
        readings.extend((owner, (profile,)) for owner in owners)
    return readings


def applications_reading(name: str) -> list[str] | None:
    """The applications whose settings a changed file (a base name) may shape, sorted; None when
    it may shape every application's: a shared `application*` file, or no configuration source (a
    template may be used by anyone).

    `orders-prod.yml` -> `orders` (its `prod` file) and `orders-prod` (a hyphenated application's
    own file, `my-service.yml`)."""
    stem = source_stem(name)
    if stem is None or is_shared(stem):
        return None
    return sorted({stem, *(base for base, _ in _hyphen_readings(stem))})


def applications_from_stems(stems: Iterable[str]) -> dict[str, list[str]]:
    """Application names and their profiles, from the stems of configuration files.

    `orders` names application `orders`; `orders-prod` its profile `prod` when `orders` is an
    application (the shortest one it starts with), else it names application `orders-prod` itself
    (a hyphenated name). The shared `application*` files name no application (`shared_profiles`).
    """
    apps: dict[str, set[str]] = {}
    for stem in sorted(set(stems), key=len):
        if is_shared(stem):
            continue
        # the shortest application it starts with: a prefix up to a hyphen, looked up (not every
        # application scanned per stem, which made 5,000 applications cost seconds)
        owner = next((stem[:at] for at, char in enumerate(stem) if char == "-" and stem[:at] in apps), None)
        if owner is None:
            apps[stem] = set()
        else:
            apps[owner].add(stem[len(owner) + 1 :])
    return {app: sorted(profiles) for app, profiles in sorted(apps.items())}


def applications_from_files(file_names: Iterable[str]) -> dict[str, list[str]]:
    """Application names and their profiles, from the file names of one folder (other files,
    `README.md`, ignored): `applications_from_stems` of their stems."""
    return applications_from_stems(stem for stem in map(source_stem, file_names) if stem is not None)


def shared_profiles_from_stems(stems: Iterable[str]) -> set[str]:
    """Profiles the shared files name, from the stems of configuration files
    (`application-prod` -> `prod`)."""
    prefix = SHARED + "-"
    return {stem[len(prefix) :] for stem in stems if stem.startswith(prefix)}


def shared_profiles(file_names: Iterable[str]) -> set[str]:
    """Profiles the shared files of one folder name (`application-prod.yml` -> `prod`)."""
    return shared_profiles_from_stems(stem for stem in map(source_stem, file_names) if stem is not None)


def file_patterns(application: str) -> list[str]:
    """Globs of the files that shape an application's settings: its own and the shared ones."""
    return [f"{application}.*", f"{application}-*", f"{SHARED}.*", f"{SHARED}-*"]


def search_path_folders(pattern: str, application: str, profiles: tuple[str, ...], label: str) -> list[str]:
    """A search path with `{application}` and `{label}` filled in, once per profile when it names
    `{profile}` (globs are left for the caller, which lists folders, to expand)."""
    pattern = pattern.replace("{application}", application).replace("{label}", label)
    if "{profile}" not in pattern:
        return [pattern]
    return [pattern.replace("{profile}", p) for p in profiles]


def search_path_pattern(search_path: str) -> re.Pattern[str]:
    """A search path as a regular expression over folders, capturing `{application}` and `{profile}`."""
    parts: list[str] = []
    for piece in re.split(r"(\{application\}|\{profile\}|\{label\}|\*|\?)", search_path):
        if piece == "{application}":
            parts.append("(?P<application>[^/]+)" if "(?P<application>" not in "".join(parts) else "[^/]+")
        elif piece == "{profile}":
            parts.append("(?P<profile>[^/]+)" if "(?P<profile>" not in "".join(parts) else "[^/]+")
        elif piece == "{label}":
            parts.append(".*")  # a label may hold a `/`
        elif piece == "*":
            parts.append("[^/]*")
        elif piece == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def listed_search_folders(search_paths: Sequence[str]) -> tuple[list[str], bool]:
    """(folders, root folders are applications) a listing of every name looks in: the root and
    each search path without placeholders or globs; True when a search path starts with
    `{application}` (then each folder of the root names an application)."""
    folders = [""]
    root_folders_are_applications = False
    for pattern in search_paths:
        if pattern.split("/", 1)[0] == "{application}":
            root_folders_are_applications = True
        elif not set(pattern) & set("{}*?["):
            folders.append(pattern)
    return folders, root_folders_are_applications
