"""Client library for services: settings from the config server, kept current without a restart."""

from config_client.binding import Binding
from config_client.client import ConfigClient
from config_client.errors import (
    ConfigClientError,
    ConfigUnavailable,
    InvalidResponse,
    RejectedVersion,
    ServerError,
    UnknownApplication,
)
from config_client.snapshot import Change, Snapshot

__all__ = [
    "Binding",
    "Change",
    "ConfigClient",
    "ConfigClientError",
    "ConfigUnavailable",
    "InvalidResponse",
    "RejectedVersion",
    "ServerError",
    "Snapshot",
    "UnknownApplication",
]
