"""`config-server diff`'s text and markdown: a change's effect (`change_effect.ChangeEffect`) for a
terminal and for a pull-request comment.

Environments whose change is the same (the same key changes with the same values and files, the
same verdict: a change to `application.yml` changes every environment alike) are shown once, with
the list of their names. Markdown stays within a comment's size: at most `MAX_GROUPS` groups,
`MAX_ROWS` rows per group and `MAX_NAMES` names per group are shown, and a line says what was left
out (the JSON output has everything).
"""

from __future__ import annotations

import json
from typing import Any

from config_server.observability.change_effect import ChangeEffect, EnvironmentEffect

#: Groups of environments, rows of a group and environment names of a group in the markdown.
MAX_GROUPS = 30
MAX_ROWS = 40
MAX_NAMES = 20
#: The longest value shown in a markdown cell.
MAX_VALUE_CHARS = 80

_SIGNS = {"added": "+", "removed": "-", "changed": "~"}


def groups(effect: ChangeEffect) -> list[list[EnvironmentEffect]]:
    """The listed environments grouped by identical effect, in the order of their first member."""
    grouped: dict[str, list[EnvironmentEffect]] = {}
    for environment in effect.environments:
        shape = environment.to_json()
        for name in ("application", "profiles", "instances"):
            shape.pop(name)
        grouped.setdefault(json.dumps(shape, sort_keys=True, default=str), []).append(environment)
    return list(grouped.values())


def summary(effect: ChangeEffect) -> str:
    """One line: how many environments change and are held back, between which versions."""
    count = len(effect.environments)
    held = len(effect.held_back)
    where = f"{_version(effect, 'base')}..{_version(effect, 'head')}"
    scope = f" under {effect.path}" if effect.path else ""
    return (
        f"{count} environment{'' if count == 1 else 's'} change{'s' if count == 1 else ''}"
        f"{f', {held} would be held back' if held else ''} at {where}{scope} "
        f"({effect.resolved} of {effect.named} environments resolved)"
    )


def as_text(effect: ChangeEffect) -> str:
    """Per group: its environments, verdict, problems, then `~ key: old -> new  (file:line)` rows."""
    out: list[str] = []
    for group in groups(effect):
        first = group[0]
        names = ", ".join(e.name for e in group)
        verdict = f"held back ({', '.join(h.reason for h in first.holds)})" if first.held_back else "served"
        out.append(f"{names}: {verdict}{_instances_text(group)}")
        for hold in first.holds:
            out.extend(f"  ! {p.location}: {p.message}" for p in hold.problems)
        if first.base_error:
            out.append(f"  (did not resolve at the base: {first.base_error})")
        for change in first.changes:
            if change.kind == "added":
                values = _value(change.new)
            elif change.kind == "removed":
                values = _value(change.old)
            else:
                values = f"{_value(change.old)} -> {_value(change.new)}"
            where = f"was {change.location}" if change.kind == "removed" else change.location
            out.append(f"  {_SIGNS[change.kind]} {change.key}: {values}  ({where})")
    return "".join(line + "\n" for line in out)


def as_markdown(effect: ChangeEffect) -> str:
    """A pull-request comment: a heading with the summary, then per group a table of its key changes."""
    held = len(effect.held_back)
    mark = "🛑" if held else ("✏️" if effect.differs else "✅")
    out = [f"### {mark} Configuration diff `{_version(effect, 'base')}..{_version(effect, 'head')}`", ""]
    out.append(_escape(summary(effect)) + ".")
    grouped = groups(effect)
    for group in grouped[:MAX_GROUPS]:
        first = group[0]
        names = ", ".join(f"`{e.name}`" for e in group[:MAX_NAMES])
        if len(group) > MAX_NAMES:
            names += f" and {len(group) - MAX_NAMES} more"
        if first.held_back:
            verdict = f"🛑 **held back** ({', '.join(h.reason for h in first.holds)})"
        else:
            verdict = "served"
        out += ["", f"#### {names}: {verdict}{_instances_text(group)}"]
        for hold in first.holds:
            out += [f"> {_code(p.location)}: {_escape(p.message)}" for p in hold.problems]
        if first.base_error:
            out.append(f"> did not resolve at the base: {_escape(first.base_error)}")
        if first.changes:
            out += ["", "| | key | old | new | set at |", "|---|---|---|---|---|"]
            for change in first.changes[:MAX_ROWS]:
                old = _cell(change.old) if change.kind != "added" else ""
                new = _cell(change.new) if change.kind != "removed" else ""
                where = f"was {change.location}" if change.kind == "removed" else change.location
                out.append(
                    f"| {_SIGNS[change.kind]} | {_code(change.key)} | {old} | {new} | {_code(where)} |"
                )
            if len(first.changes) > MAX_ROWS:
                out.append(
                    f"\n…and {len(first.changes) - MAX_ROWS} more keys (`--format json` lists them all)."
                )
    if len(grouped) > MAX_GROUPS:
        left = sum(len(g) for g in grouped[MAX_GROUPS:])
        out += ["", f"…and {left} more environments (`--format json` lists them all)."]
    return "\n".join(out) + "\n"


def _version(effect: ChangeEffect, side: str) -> str:
    revision = effect.base if side == "base" else effect.head
    short = revision.version[:12]
    return short if revision.label.startswith(short[:7]) else f"{revision.label} ({short})"


def _instances_text(group: list[EnvironmentEffect]) -> str:
    counts = [e.instances for e in group if e.instances is not None]
    if not counts:
        return ""
    total = sum(sum(c.values()) for c in counts)
    labels: dict[str, int] = {}
    for count in counts:
        for label, number in count.items():
            labels[label] = labels.get(label, 0) + number
    detail = ", ".join(f"{label}: {number}" for label, number in sorted(labels.items()))
    return f" [{total} live instance{'' if total == 1 else 's'}{f': {detail}' if detail else ''}]"


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _cell(value: Any) -> str:
    """A value as a code span of a table cell, cut to `MAX_VALUE_CHARS`."""
    text = _value(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 1] + "…"
    return _code(text)


def _code(text: str) -> str:
    """A code span safe in a table cell: pipes escaped, line breaks as spaces, no backtick inside."""
    return "`" + text.replace("|", "\\|").replace("\r", " ").replace("\n", " ").replace("`", "'") + "`"


def _escape(text: str) -> str:
    """Prose safe in a markdown line or cell: pipes escaped, line breaks as spaces, no HTML."""
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ").replace("<", "&lt;")
