"""Relative times for people: "3 min ago" for a moment, from an ISO 8601 time and the time now."""

from __future__ import annotations

from datetime import datetime

#: (seconds in a unit, its name), largest first; a time is shown in the largest unit it reaches.
UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))

#: Closer than this (either way) is "just now".
JUST_NOW_SECONDS = 5


def ago(seconds: float) -> str:
    """`seconds` before now as "42 s ago", "3 min ago", "2 h ago", "5 d ago"; "just now" within
    `JUST_NOW_SECONDS`; a time after now (another host's clock) as "in 3 min"."""
    if abs(seconds) < JUST_NOW_SECONDS:
        return "just now"
    whole = int(abs(seconds))
    size, name = next((size, name) for size, name in UNITS if whole >= size)
    text = f"{whole // size} {name}"
    return f"{text} ago" if seconds > 0 else f"in {text}"


def ago_iso(moment: str, now: float) -> str:
    """The ISO 8601 time `moment` relative to the Unix time `now`; `moment` unchanged if it is not a
    time with a zone (nothing is lost, the exact time stays shown)."""
    try:
        then = datetime.fromisoformat(moment)
    except (TypeError, ValueError):
        return moment
    if then.tzinfo is None:
        return moment
    return ago(now - then.timestamp())
