"""The pure rollout module: the file, the schedule, sticky cohorts and the decision, with plain data."""

from __future__ import annotations

import pytest

from config_server.content.rollout_plan import (
    COMPLETE,
    HALTED,
    RUNNING,
    Instance,
    Rollout,
    RolloutState,
    cohort_point,
    decide,
    parse_duration,
    parse_rollout,
    phase,
)
from config_server.errors import RolloutFileError

FILE = b"""\
canary: release/orders-v2
profiles: [prod]
match:
  labels: {zone: eu-west-1}
steps: [5, 25, 50, 100]
bake: 10m
halt-on:
  rejected: 2
"""


def rollout(**changes) -> Rollout:
    base = dict(
        application="orders", canary="canary", rollout_id="canary", steps=(10.0, 50.0, 100.0), bake=60.0
    )
    base.update(changes)
    return Rollout(**base)


def test_the_issue_example_parses_whole():
    parsed = parse_rollout("orders", FILE)
    assert parsed.canary == "release/orders-v2"
    assert parsed.rollout_id == "release/orders-v2"
    assert parsed.profiles == ("prod",)
    assert parsed.match_labels == (("zone", "eu-west-1"),)
    assert parsed.steps == (5.0, 25.0, 50.0, 100.0)
    assert parsed.bake == 600.0
    assert parsed.halt_on_rejected == 2


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (b"canary: x\nsteps: [5, 100]\nbake: [\n", 4, "does not parse"),
        (b"canary: x\nstep: [5]\nbake: 1m\n", 2, "unknown key 'step'"),
        (b"steps: [5]\nbake: 1m\n", 1, "canary"),
        (b"canary: x\nsteps: [50, 25]\nbake: 1m\n", 2, "larger than the one before"),
        (b"canary: x\nsteps: [0, 25]\nbake: 1m\n", 2, "not a percentage"),
        (b"canary: x\nsteps: [5, 101]\nbake: 1m\n", 2, "not a percentage"),
        (b"canary: x\nsteps: [5]\nbake: soon\n", 3, "not a duration"),
        (b"canary: ../x\nsteps: [5]\nbake: 1m\n", 1, "canary"),
        (b"canary: x\nsteps: [5]\nbake: 1m\nhalt-on: {rejected: 0}\n", 4, "at least 1"),
        (b"canary: x\ncanary: y\nsteps: [5]\nbake: 1m\n", 2, "duplicate key"),
        (b"- just\n- a list\n", 1, "must be a mapping"),
        (b"canary: x\nsteps: &s [5]\nbake: 1m\nid: *s\n", 4, "aliases"),
    ],
)
def test_a_bad_file_is_refused_whole_naming_the_line(text, line, words):
    with pytest.raises(RolloutFileError) as caught:
        parse_rollout("orders", text)
    assert caught.value.line == line
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"rollouts/orders.yml:{line}: ")


def test_durations():
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("500ms") == 0.5
    assert parse_duration(2) == 2
    for bad in ("", "10", "m", "-1s", 0, True, "1x"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_steps_advance_by_bake_time_then_complete():
    plan = rollout()
    state = RolloutState(started=1000.0)
    assert phase(plan, state, 1000.0) == phase(plan, state, 1059.9)
    assert (phase(plan, state, 1000.0).state, phase(plan, state, 1000.0).percent) == (RUNNING, 10.0)
    assert phase(plan, state, 1000.0).next_step_at == 1060.0
    assert phase(plan, state, 1060.0).percent == 50.0
    assert phase(plan, state, 1179.0).percent == 100.0
    done = phase(plan, state, 1180.0)
    assert (done.state, done.percent, done.next_step_at) == (COMPLETE, 100.0, None)


def test_a_halt_freezes_the_step_and_serves_the_base_to_everyone():
    plan = rollout()
    state = RolloutState(started=1000.0, halted_at=1070.0, halt_reason="rejected")
    frozen = phase(plan, state, 5000.0)
    assert (frozen.state, frozen.percent) == (HALTED, 50.0)
    everyone = [Instance(f"i-{n}", {}) for n in range(200)]
    assert all(decide(plan, state, one, 5000.0)[0] is None for one in everyone)


def test_cohorts_are_sticky_and_grow_with_the_step():
    plan = rollout()
    state = RolloutState(started=0.0)
    instances = [Instance(f"host-{n}:{n * 7}", {}) for n in range(1000)]
    at_10 = {i.instance_id for i in instances if decide(plan, state, i, 1.0)[0] == "canary"}
    at_50 = {i.instance_id for i in instances if decide(plan, state, i, 61.0)[0] == "canary"}
    at_100 = {i.instance_id for i in instances if decide(plan, state, i, 121.0)[0] == "canary"}
    assert 50 <= len(at_10) <= 150
    assert 400 <= len(at_50) <= 600
    assert at_10 < at_50 < at_100 == {i.instance_id for i in instances}
    again = {i.instance_id for i in instances if decide(plan, state, i, 2.0)[0] == "canary"}
    assert again == at_10


def test_the_point_depends_on_application_rollout_and_instance_only():
    point = cohort_point("orders", "v2", "host-1")
    assert point == cohort_point("orders", "v2", "host-1")
    assert 0 <= point < 100
    assert point != cohort_point("orders", "v3", "host-1")
    assert point != cohort_point("payments", "v2", "host-1")


def test_callers_without_an_id_and_unmatched_instances_get_the_base():
    plan = rollout(steps=(100.0,), match_labels=(("zone", "eu"),))
    state = RolloutState(started=0.0)
    assert decide(plan, state, None, 1.0)[0] is None
    assert decide(plan, state, Instance("a", {"zone": "us"}), 1.0)[0] is None
    assert decide(plan, state, Instance("a", {}), 1.0)[0] is None
    assert decide(plan, state, Instance("a", {"zone": "eu", "tier": "web"}), 1.0)[0] == "canary"


def test_a_rollout_not_yet_started_serves_the_base():
    assert decide(rollout(), None, Instance("a", {}), 1.0) == (None, None)


def test_profiles_limit_the_environments():
    plan = rollout(profiles=("prod",))
    assert plan.applies_to(("prod",))
    assert plan.applies_to(("prod", "eu"))
    assert not plan.applies_to(("default",))
    assert rollout().applies_to(("anything",))


def test_header_value():
    plan = rollout(steps=(2.5, 100.0))
    assert phase(plan, RolloutState(0.0), 1.0).header("orders") == "orders; step=2.5; state=running"
    assert phase(plan, RolloutState(0.0), 500.0).header("orders") == "orders; step=100; state=complete"


HOSTILE = {
    "a bake of 400 digits": (b"canary: x\nsteps: [5]\nbake: " + b"9" * 400 + b"\n", "is not a duration"),
    "an id of 5000 digits": (
        b"canary: x\nsteps: [5]\nbake: 1m\nid: " + b"7" * 5000 + b"\n",
        "not a valid int",
    ),
    "steps nested 3000 deep": (b"canary: x\nbake: 1m\nsteps: " + b"[" * 3000 + b"]" * 3000 + b"\n", "nested"),
}


@pytest.mark.parametrize("text, words", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_file_is_a_file_error_not_a_crash(text, words):
    """Numbers too large for a float or for str(), and nesting deeper than Python recurses, are
    the file's error like any other (before: OverflowError, ValueError, RecursionError)."""
    with pytest.raises(RolloutFileError) as caught:
        parse_rollout("orders", text)
    assert str(caught.value).startswith("rollouts/orders.yml")
    assert words in str(caught.value)
