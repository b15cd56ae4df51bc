"""A configuration server for microservices: YAML in git, served over the Spring Cloud Config protocol."""

__version__ = "0.1.0"

from config_server.app import create_app  # noqa: E402

__all__ = ["create_app", "__version__"]
