"""The Environment and PropertySource values that the server resolves and serves as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PropertySource:
    """One configuration document: its name and its flattened `a.b[0].c` keys, in file order."""

    name: str
    source: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The Spring Cloud Config JSON shape of this property source."""
        return {"name": self.name, "source": self.source}


@dataclass(frozen=True)
class Environment:
    """The resolved configuration of one (application, profiles, label): sources, most specific first."""

    name: str
    profiles: tuple[str, ...]
    label: str | None
    version: str
    property_sources: tuple[PropertySource, ...] = field(default_factory=tuple)
    state: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The Spring Cloud Config Environment JSON shape."""
        return {
            "name": self.name,
            "profiles": list(self.profiles),
            "label": self.label,
            "version": self.version,
            "state": self.state,
            "propertySources": [ps.to_json() for ps in self.property_sources],
        }
