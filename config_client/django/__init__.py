"""Django integration: add `"config_client.django"` to INSTALLED_APPS and a `CONFIG_SERVER` setting.

```python
# settings.py
INSTALLED_APPS = [..., "config_client.django"]
CONFIG_SERVER = {"url": "http://config:8888", "app": "orders", "profiles": "prod",
                 "cache_dir": "/var/cache/orders-config"}   # any other ConfigClient argument too
```

The client is started once per process when Django is ready (`AppConfig.ready()`), and again,
lazily, in a process forked after that (a pre-fork server that loaded the app before forking):
`client()` always returns the running client of *this* process. Django's `settings` are read once
at start and never change; values that change are read with `config_client.django.get("key")`
or `snapshot()` (one consistent version for a request). After every applied version the signal
`config_changed` is sent (`sender` = the ConfigClient, `change` = the Change), on the client's
watcher thread.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from django.dispatch import Signal

from config_client.client import ConfigClient
from config_client.snapshot import Change, Snapshot

#: Sent after each applied version with `change=` (a Change); receivers run on the watcher thread.
config_changed = Signal()

_lock = threading.Lock()
_running: tuple[int, ConfigClient] | None = None


def client() -> ConfigClient:
    """The started client of this process (started now if this process has none yet)."""
    global _running
    running = _running
    if running is not None and running[0] == os.getpid():
        return running[1]
    with _lock:
        if _running is None or _running[0] != os.getpid():
            made = _make_client()
            made.restarts_after_fork = True  # a forked child starts its own on first use
            made.on_change(_send_signal)
            made.start()
            _running = (os.getpid(), made)
        return _running[1]


def snapshot() -> Snapshot:
    """The current settings of this process's client: one version to read several keys from."""
    return client().snapshot


def get(key: str, default: Any = None) -> Any:
    """The current value of a flat key (`orders.max-items`), or `default`."""
    return client().snapshot.get(key, default)


def _make_client() -> ConfigClient:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    options = dict(getattr(settings, "CONFIG_SERVER", None) or {})
    try:
        url, app = options.pop("url"), options.pop("app")
    except KeyError as exc:
        raise ImproperlyConfigured(f"settings.CONFIG_SERVER needs {exc.args[0]!r}") from None
    return ConfigClient(url, app, **options)


def _send_signal(change: Change) -> None:
    running = _running
    config_changed.send(sender=running[1] if running else ConfigClient, change=change)


def _stop_for_tests() -> None:
    """Stop this process's client (for test suites that configure Django more than once)."""
    global _running
    with _lock:
        if _running is not None:
            _running[1].stop()
            _running = None
