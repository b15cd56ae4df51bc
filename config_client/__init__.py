"""Client library for services: settings from the config server, kept current without a restart."""

from config_client.client import ConfigClient
from config_client.errors import ConfigClientError, ConfigUnavailable, InvalidResponse, ServerError
from config_client.snapshot import Change, Snapshot

__all__ = [
    "Change",
    "ConfigClient",
    "ConfigClientError",
    "ConfigUnavailable",
    "InvalidResponse",
    "ServerError",
    "Snapshot",
]
