"""The one long-poll loop (`delivery/long_poll.py`) says what happened, with a scripted hub: no
server, no sockets; both the Flask view and the fast path only write what it returns."""

from __future__ import annotations

import time
from typing import Any

import pytest

from config_server.content.environment_answer import BASE_ROUTE, Route
from config_server.delivery import long_poll
from config_server.delivery.watch_hub import REROUTED, REVOKED
from config_server.errors import InvalidName
from config_server.model import Environment, PropertySource
from config_server.names import EnvironmentRequest
from config_server.safety.environment_cache import ResolvedEnvironment

ASKED = EnvironmentRequest.parse("orders", "prod", None)
CANARY = Route("canary", (("X-Config-Rollout", "r"),))


def resolved(version: str) -> ResolvedEnvironment:
    source = PropertySource("orders.yml", {"version": version})  # the ETag is of the content
    return ResolvedEnvironment(Environment("orders", ("prod",), None, version, (source,)))


class ScriptedHub:
    """Answers each `wait` with the next scripted result; `current` with `now`."""

    def __init__(self, *waits: Any, now: Any = None) -> None:
        self.waits = list(waits)
        self.now = now
        self.routes: list[Route] = []

    def wait(self, request, known, timeout, direct, route, since, allowed):
        assert request is ASKED
        self.routes.append(route)
        return self.waits.pop(0)

    def reroutes(self, application: str) -> int:
        return 7

    def current(self, request, route):
        return self.now


class Direct:
    """A direct answer the hub did (or did not) write."""

    def __init__(self, answered: bool) -> None:
        self.answered = answered
        self.version = "v-direct" if answered else None

    def finish(self) -> bool:
        return self.answered


def hold(hub: ScriptedHub, known: str = "old", decide: Any = lambda: BASE_ROUTE, direct: Any = None) -> Any:
    return long_poll.hold(
        hub,  # type: ignore[arg-type]
        ASKED,
        long_poll.KnownEtags(frozenset({known})),
        time.monotonic() + 5,
        BASE_ROUTE,
        0,
        (("X-Old", "1"),),
        decide,
        direct,
    )


def test_a_timeout_is_not_modified_with_the_headers_the_caller_holds():
    assert hold(ScriptedHub(None)) == long_poll.NotModified((("X-Old", "1"),))


def test_a_new_version_is_changed_with_its_headers():
    new = resolved("v2")
    outcome = hold(ScriptedHub((new, (("X-New", "1"),))))
    assert outcome == long_poll.Changed(new, (("X-New", "1"),))


def test_an_answer_the_hub_wrote_is_answered_by_the_hub_with_the_version_sent():
    new = resolved("v2")
    outcome = hold(ScriptedHub((new, ())), direct=Direct(True))
    assert outcome == long_poll.AnsweredByHub("v-direct", new)


def test_a_revoked_token_is_revoked_unless_the_hub_answered_first():
    assert hold(ScriptedHub(REVOKED)) == long_poll.Revoked((("X-Old", "1"),))
    assert hold(ScriptedHub(REVOKED), direct=Direct(True)) == long_poll.AnsweredByHub("v-direct", None)


def test_a_reroute_the_adapter_does_not_answer_is_handed_over():
    assert isinstance(hold(ScriptedHub(REROUTED), decide=lambda: None), long_poll.HandedOver)


def test_a_reroute_to_a_new_answer_answers_at_once_and_otherwise_waits_on_the_new_route():
    new = resolved("v3")
    hub = ScriptedHub(REROUTED, now=(new, (("X-Config-Rollout", "r"),)))
    assert hold(hub, decide=lambda: CANARY) == long_poll.Changed(new, (("X-Config-Rollout", "r"),))
    held = resolved("v1")
    hub = ScriptedHub(REROUTED, None, now=(held, (("X-Config-Rollout", "r"),)))
    outcome = hold(hub, known=held.etag, decide=lambda: CANARY)
    assert outcome == long_poll.NotModified((("X-Config-Rollout", "r"),))
    assert hub.routes == [BASE_ROUTE, CANARY]


def test_one_wait_parser_caps_and_refuses_as_before():
    assert long_poll.wait_seconds("2.5") == 2.5
    assert long_poll.wait_seconds("600") == 60.0
    with pytest.raises(InvalidName, match="wait must be a number of seconds, not 'x'"):
        long_poll.wait_seconds("x")
    with pytest.raises(InvalidName, match="non-negative"):
        long_poll.wait_seconds("-1")
