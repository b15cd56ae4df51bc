"""A configuration server for microservices: YAML in git, served over the Spring Cloud Config protocol.

`create_app` is imported lazily so that `config-server serve` can apply gevent's monkey patches
before GitPython, subprocess or threading are imported.
"""

from typing import Any

from config_server.version import __version__

__all__ = ["create_app", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from config_server.app import create_app

        return create_app
    raise AttributeError(name)
