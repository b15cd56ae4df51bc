"""Repository backends: where configuration files come from (a git repository or a plain folder)."""

from config_server.backends.base import Backend, Revision
from config_server.backends.factory import open_backend

__all__ = ["Backend", "Revision", "open_backend"]
