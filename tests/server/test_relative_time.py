"""Relative times of the console: units, rounding down, clock skew and what is not a time."""

from __future__ import annotations

from datetime import UTC, datetime

from config_server.observability.relative_time import ago, ago_iso


def test_ago_uses_the_largest_unit_reached_and_rounds_down():
    assert ago(0) == "just now" and ago(4.9) == "just now" and ago(-3) == "just now"
    assert ago(5) == "5 s ago" and ago(59.9) == "59 s ago"
    assert ago(60) == "1 min ago" and ago(3 * 60 + 59) == "3 min ago"
    assert ago(3600) == "1 h ago" and ago(86399) == "23 h ago"
    assert ago(5 * 86400 + 10) == "5 d ago"
    assert ago(-180) == "in 3 min"  # another host's clock runs ahead


def test_ago_iso_reads_the_consoles_iso_times_and_leaves_anything_else_as_it_is():
    now = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC).timestamp()
    assert ago_iso("2026-01-02T11:57:00+00:00", now) == "3 min ago"
    assert ago_iso("2026-01-02T13:57:00+02:00", now) == "3 min ago"
    assert ago_iso("2026-01-02T11:57:00", now) == "2026-01-02T11:57:00"  # no zone: not guessed
    assert ago_iso("yesterday", now) == "yesterday"
    assert ago_iso("", now) == ""
