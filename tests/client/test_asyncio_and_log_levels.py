"""asyncio listeners and `wait_for_version`, and log levels from settings (issue 14)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from config_client import ConfigClient, ConfigClientError, RejectedVersion
from tests.helpers import wait_for


def test_coroutine_listener_runs_on_its_loop_and_wait_for_version(repo, serve, clients):
    repo.commit({"orders.yml": "limit: 1\n"})
    server = serve(repo.path)
    client = clients(server.url, "orders", validate=lambda s: s.get("limit") != 13 or 1 / 0)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[tuple[int, object, list[str]]] = []
        changed = asyncio.Event()

        async def listener(change) -> None:
            seen.append((threading.get_ident(), asyncio.get_running_loop(), change.keys))
            changed.set()

        client.on_change(listener)
        await asyncio.to_thread(client.start)
        await client.wait_for_version(client.version, timeout=1)  # already applied: at once
        sha = await asyncio.to_thread(repo.commit, {"orders.yml": "limit: 2\n"})
        await client.wait_for_version(sha, timeout=10)
        assert client.get("limit") == 2
        await asyncio.wait_for(changed.wait(), 10)
        assert seen == [(threading.get_ident(), loop, ["limit"])]
        bad = await asyncio.to_thread(repo.commit, {"orders.yml": "limit: 13\n"})
        with pytest.raises(RejectedVersion, match="division by zero"):
            await client.wait_for_version(bad, timeout=10)
        with pytest.raises(TimeoutError):
            await client.wait_for_version("never", timeout=0.2)

    asyncio.run(main())
    with pytest.raises(ConfigClientError, match="event loop"):

        async def orphan(change) -> None:
            pass

        client.on_change(orphan)


@pytest.fixture
def restore_levels():
    loggers = [logging.getLogger(), logging.getLogger("orders.db"), logging.getLogger("orders.web")]
    before = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, before, strict=True):
        logger.setLevel(level)


def test_log_levels_applied_at_start_and_on_change_and_unknown_level_rejected(
    repo, serve, clients, restore_levels
):
    logging.getLogger("orders.web").setLevel(logging.ERROR)
    repo.commit(
        {
            "orders.yml": "logging:\n  level:\n    root: warn\n    orders.db: DEBUG\n    orders.web: TRACE\n",
        }
    )
    server = serve(repo.path)
    client = clients(server.url, "orders", logging_levels=True).start()
    assert logging.getLogger().level == logging.WARNING
    assert logging.getLogger("orders.db").level == logging.DEBUG
    assert logging.getLogger("orders.web").level == 5
    sha = repo.commit({"orders.yml": "logging:\n  level:\n    root: INFO\n    orders.db: ERROR\n"})
    wait_for(lambda: client.version == sha, what="the change")
    assert logging.getLogger().level == logging.INFO
    assert logging.getLogger("orders.db").level == logging.ERROR
    assert logging.getLogger("orders.web").level == logging.ERROR  # key gone: its level before
    bad = repo.commit({"orders.yml": "logging:\n  level:\n    root: INFO\n    orders.db: LOUD\n"})
    wait_for(lambda: client.rejected, what="the unknown level to be refused")
    assert client.rejected[0] == bad and "logging.level.orders.db" in client.rejected[1]
    assert logging.getLogger("orders.db").level == logging.ERROR and client.version == sha


def test_log_levels_ignored_without_the_option(repo, serve, restore_levels):
    repo.commit({"orders.yml": "logging:\n  level:\n    orders.db: LOUD\n"})
    server = serve(repo.path)
    client = ConfigClient(server.url, "orders", watch=False).start()
    assert client.get("logging.level.orders.db") == "LOUD" and client.rejected is None
