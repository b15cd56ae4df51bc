"""Rollouts: a canary label sent to a sticky share of an application's instances, step by step.

A rollout is the file `rollouts/{app}.yml` at the base label's head (see docs/rollouts.md):

    canary: release/orders-v2      # the label rolled out to the cohort
    profiles: [prod]               # environments it applies to (default: all)
    match: {labels: {zone: eu-west-1}}
    steps: [5, 25, 50, 100]        # percent of matching instances, in order
    bake: 10m                      # time at each step before the next
    halt-on: {rejected: 1}         # halt when this many cohort instances reject the canary

Pure, as `resolve.py`: the caller hands in the file's bytes, the stored state and the time; no
git, no HTTP, no clock, no store inside. The edge (`delivery/rollout_runner.py`) reads the file,
keeps the state in the state store and wakes long polls.

Contract:
- `parse_rollout` accepts a file completely or raises `RolloutFileError` (naming the line): a
  rollout is never half-applied.
- `phase(rollout, state, now)`: the schedule starts at `state.started`; step i runs from
  `started + i*bake`; after the last step has baked the rollout is `complete` (its last step
  stays in force until the file is removed); a halt freezes it as `halted` until a resume newer
  than the halt; an operator's resume or advance re-anchors the schedule (step k from now).
- `cohort_point(application, rollout_id, instance_id)` is a stable point in [0, 100): an instance
  is in the cohort at step p when its point is below p, so every replica and restart agrees, and
  an instance in the cohort at 5% stays in it at 25%.
- `decide(...)` answers the canary label only to an identified instance that matches, is in the
  cohort at the current step, of a rollout that is running or complete; everyone else (callers
  without an id above all) gets the base label (None).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from config_server import names
from config_server.content.parsing import StrictLoader, key_lines
from config_server.errors import InvalidName, RolloutFileError

#: Where an application's rollout file lives in the repository.
ROLLOUTS_FOLDER = "rollouts"
#: The response header of an answer that comes from a rollout's canary label.
ROLLOUT_HEADER = "X-Config-Rollout"

RUNNING, HALTED, COMPLETE = "running", "halted", "complete"

_KEYS = {"id", "canary", "profiles", "match", "steps", "bake", "halt-on"}
_LABEL_VALUE = re.compile(names.INSTANCE_LABEL)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_MAX_ID = 128
#: Deepest nesting of maps and lists a rollout file may have (a few levels are all it needs).
MAX_DEPTH = 16
#: A rollout file is a few lines; anything bigger is refused before it is parsed.
MAX_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Rollout:
    """One application's rollout, as its file says."""

    application: str
    canary: str
    rollout_id: str
    steps: tuple[float, ...]
    bake: float
    halt_on_rejected: int = 1
    profiles: tuple[str, ...] | None = None
    match_labels: tuple[tuple[str, str], ...] = ()

    def applies_to(self, profiles: Sequence[str]) -> bool:
        """True when a request for these profiles is in the rollout (any one of them listed)."""
        return self.profiles is None or any(p in self.profiles for p in profiles)

    def matches(self, client_labels: Mapping[str, str]) -> bool:
        """True when an instance with these labels may be in the cohort."""
        return all(client_labels.get(k) == v for k, v in self.match_labels)

    @property
    def duration(self) -> float:
        """Seconds from the start until the last step has baked."""
        return self.bake * len(self.steps)


@dataclass(frozen=True)
class RolloutState:
    """What the state store keeps of a rollout: when it started and, if it was halted, when and why."""

    started: float
    halted_at: float | None = None
    halt_reason: str | None = None
    #: A resume at or after the halt ends it (`halted`); an older halt is history.
    resumed_at: float | None = None
    #: The schedule's anchor (an operator's resume or advance): step `anchor_step` began at
    #: `anchor_at`; None while the schedule runs from `started` at step 0.
    anchor_at: float | None = None
    anchor_step: int = 0

    @property
    def halted(self) -> bool:
        """True when a halt is recorded and no resume came after it."""
        return self.halted_at is not None and (self.resumed_at is None or self.halted_at >= self.resumed_at)


@dataclass(frozen=True)
class Phase:
    """Where a rollout stands at a moment: state, step (index and percent), when the next step starts."""

    state: str
    step: int
    percent: float
    next_step_at: float | None

    def header(self, application: str) -> str:
        """The `X-Config-Rollout` value: `<app>; step=<percent>; state=<state>`."""
        return f"{application}; step={format_percent(self.percent)}; state={self.state}"


@dataclass(frozen=True)
class Instance:
    """A caller that identified itself: its id and its labels (`X-Config-Client-Labels`)."""

    instance_id: str
    labels: Mapping[str, str]


def format_percent(percent: float) -> str:
    """`5` for 5.0, `2.5` for 2.5."""
    return str(int(percent)) if float(percent).is_integer() else f"{percent:g}"


def phase(rollout: Rollout, state: RolloutState, now: float) -> Phase:
    """The rollout's phase at `now` (a halt freezes the step it was halted at). Step i runs from
    `started + i*bake`, or, after an operator's move, from `anchor_at + (i - anchor_step)*bake`."""
    halted = state.halted
    at = now if not halted or state.halted_at is None else min(now, state.halted_at)
    origin, first = (state.started, 0) if state.anchor_at is None else (state.anchor_at, state.anchor_step)
    elapsed = max(0.0, at - origin)
    index = first + int(elapsed // rollout.bake) if rollout.bake > 0 else len(rollout.steps)
    if halted:
        index = min(index, len(rollout.steps) - 1)
        return Phase(HALTED, index, rollout.steps[index], None)
    if index >= len(rollout.steps):
        return Phase(COMPLETE, len(rollout.steps) - 1, rollout.steps[-1], None)
    return Phase(RUNNING, index, rollout.steps[index], origin + (index - first + 1) * rollout.bake)


def cohort_point(application: str, rollout_id: str, instance_id: str) -> float:
    """A stable point in [0, 100) for this instance in this rollout (SHA-256, first 64 bits)."""
    digest = hashlib.sha256(f"{application}\0{rollout_id}\0{instance_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def in_cohort(rollout: Rollout, percent: float, instance: Instance) -> bool:
    """True when the instance matches the rollout and its point is below `percent`."""
    if not rollout.matches(instance.labels):
        return False
    return cohort_point(rollout.application, rollout.rollout_id, instance.instance_id) < percent


def decide(
    rollout: Rollout, state: RolloutState | None, instance: Instance | None, now: float
) -> tuple[str | None, Phase | None]:
    """(canary label, phase) for a cohort instance; (None, phase or None) for the base label.

    A rollout without state (not seen started yet) and a halted one serve the base label to all.
    """
    if state is None:
        return None, None
    current = phase(rollout, state, now)
    if instance is None or current.state == HALTED:
        return None, current
    if in_cohort(rollout, current.percent, instance):
        return rollout.canary, current
    return None, current


#: A halt reason of `rejection_halt_reason` with the instance's own reason: the count, the
#: version, the instance, the quoted reason it sent.
_REJECTION_HALT = re.compile(r'(\d+ cohort instances? rejected [^:\s]+: [A-Za-z0-9._:@-]+): ".*"', re.DOTALL)


def rejection_halt_reason(count: int, version: str, instance_id: str, reason: str | None) -> str:
    """The halt reason of a rollout halted by `count` cohort rejections, the last one of
    `instance_id` (with the reason it sent, which may quote a setting of the canary)."""
    return f"{count} cohort instance{'s' if count > 1 else ''} rejected {version[:12]}" + (
        f': {instance_id}: "{reason}"' if reason else f": {instance_id}"
    )


def without_rejection_reason(halt_reason: str | None) -> str | None:
    """The halt reason without the rejecting instance's own reason (for logs, the audit log and
    callers who may not read the application); any other halt reason unchanged."""
    if halt_reason is None:
        return None
    match = _REJECTION_HALT.fullmatch(halt_reason)
    return f"{match[1]} (reason withheld)" if match else halt_reason


def parse_client_labels(text: str) -> dict[str, str]:
    """`zone=eu,tier=web` (already validated by the inventory) as a dict."""
    return dict(pair.split("=", 1) for pair in text.split(",") if "=" in pair)


def rollout_path(application: str) -> str:
    """`rollouts/{app}.yml`."""
    return f"{ROLLOUTS_FOLDER}/{application}.yml"


def parse_duration(value: Any) -> float:
    """Seconds from `10m`, `1h30m`, `1.5s`, `500ms` or a plain number of seconds; ValueError else."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError("too large a duration") from None
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "")
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                raise ValueError("not a duration")
            seconds += float(match[1]) * _UNITS[match[2]]
            pos = match.end()
        if pos != len(text):
            raise ValueError("not a duration")
    else:
        raise ValueError("not a duration")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def parse_rollout(application: str, data: bytes, path: str | None = None) -> Rollout:
    """The rollout of `rollouts/{application}.yml`, checked as a whole; RolloutFileError naming the
    line of the first problem (nothing of a bad file is applied)."""
    path = path or rollout_path(application)
    if len(data) > MAX_FILE_BYTES:
        raise RolloutFileError(path, None, f"larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
        _check_events(path, text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = _load(text)
    except UnicodeDecodeError:
        raise RolloutFileError(path, None, "not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise RolloutFileError(path, mark.line + 1 if mark else None, f"does not parse: {problem}") from None
    try:
        return _rollout(application, path, raw, _key_lines(node))
    except RolloutFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a hostile file does is that file's error
        raise RolloutFileError(path, None, f"cannot be read ({type(exc).__name__})") from None


def _check_events(path: str, text: str) -> None:
    """Refuse aliases (no expansion bombs: a rollout file needs none) and nesting deeper than
    MAX_DEPTH, from the event stream, before anything recursive builds the file."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1 if event.start_mark else None
        if isinstance(event, yaml.AliasEvent):
            raise RolloutFileError(path, line, "aliases (*name) are not allowed in a rollout file")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise RolloutFileError(path, line, f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _rollout(application: str, path: str, raw: Any, lines: dict[str | None, int]) -> Rollout:
    """The rollout of a parsed file, every key checked; RolloutFileError naming the line."""

    def fail(key: str | None, message: str) -> RolloutFileError:
        return RolloutFileError(path, lines.get(key, 1 if key is None else None), message)

    if not isinstance(raw, dict):
        raise fail(None, "a rollout file must be a mapping (canary, steps, bake, ...)")
    unknown = sorted(str(k) for k in raw if k not in _KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key {unknown[0]!r} (expected: {', '.join(sorted(_KEYS))})")
    canary = raw.get("canary")
    if not isinstance(canary, str) or not canary.strip():
        where = "canary" if "canary" in raw else None
        raise fail(where, "canary: a label (branch, tag or commit) is required")
    try:
        canary = names.validate_label(canary.strip())
    except InvalidName as exc:
        raise fail("canary", f"canary: {exc}") from None
    rollout_id = raw.get("id", canary)
    if not isinstance(rollout_id, str | int) or not str(rollout_id).strip() or len(str(rollout_id)) > _MAX_ID:
        raise fail("id", f"id: a name of 1-{_MAX_ID} characters")
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps:
        raise fail("steps" if "steps" in raw else None, "steps: a list of percentages is required")
    checked: list[float] = []
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, int | float) or not 0 < step <= 100:
            raise fail("steps", f"steps: {step!r} is not a percentage in (0, 100]")
        if checked and step <= checked[-1]:
            raise fail("steps", "steps: each step must be larger than the one before")
        checked.append(float(step))
    if "bake" not in raw:
        raise fail(None, "bake: the time at each step (such as 10m) is required")
    try:
        bake = parse_duration(raw["bake"])
    except ValueError:
        raise fail("bake", f"bake: {raw['bake']!r} is not a duration such as 30s, 10m or 1h") from None
    profiles = raw.get("profiles")
    if profiles is not None:
        if isinstance(profiles, str):
            profiles = [p.strip() for p in profiles.split(",")]
        if not isinstance(profiles, list) or not profiles:
            raise fail("profiles", "profiles: a list of profile names")
        try:
            profiles = tuple(p for one in profiles for p in names.validate_profiles(str(one)))
        except InvalidName as exc:
            raise fail("profiles", f"profiles: {exc}") from None
    match_labels = _match_labels(raw.get("match"), fail)
    halt_on = raw.get("halt-on", {}) or {}
    if not isinstance(halt_on, dict) or set(halt_on) - {"rejected"}:
        raise fail("halt-on", "halt-on: a mapping with `rejected: <count>`")
    rejected = halt_on.get("rejected", 1)
    if isinstance(rejected, bool) or not isinstance(rejected, int) or rejected < 1:
        raise fail("halt-on", "halt-on: rejected must be a whole number of instances, at least 1")
    return Rollout(
        application=application,
        canary=canary,
        rollout_id=str(rollout_id).strip(),
        steps=tuple(checked),
        bake=bake,
        halt_on_rejected=rejected,
        profiles=profiles,
        match_labels=match_labels,
    )


def _match_labels(match: Any, fail: Any) -> tuple[tuple[str, str], ...]:
    if match is None:
        return ()
    if not isinstance(match, dict) or set(match) - {"labels"}:
        raise fail("match", "match: a mapping with `labels: {key: value}`")
    labels = match.get("labels") or {}
    if not isinstance(labels, dict):
        raise fail("match", "match: labels must map label names to values")
    pairs = []
    for key, value in labels.items():
        if not _LABEL_VALUE.fullmatch(str(key)) or not _LABEL_VALUE.fullmatch(str(value)):
            raise fail("match", f"match: {key}={value} is not a label (letters, digits and . _ -)")
        pairs.append((str(key), str(value)))
    return tuple(sorted(pairs))


def _load(text: str) -> Any:
    """The file's value, read as configuration is (`parsing.StrictLoader`: duplicate keys are an error)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a safe loader


def _key_lines(node: yaml.Node | None) -> dict[str | None, int]:
    """Key -> its 1-based line, for error messages (`parsing.key_lines`: top-level keys as named)."""
    lines: dict[str | None, int] = {}
    for key, line in key_lines(node):
        lines.setdefault(key, line)
    return lines
