"""The server's version, in one place: the package, `config-server --version` and the OpenAPI document."""

__version__ = "0.1.0"
