"""Profile activation expressions of multi-document YAML (`prod`, `prod | eu`, `!dev`, `a & (b | c)`)."""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"\s*([()!&|]|[^()!&|\s]+)")


def is_active(expression: Any, active: tuple[str, ...]) -> bool:
    """True when the activation expression (a string, a comma list or a YAML list) matches."""
    return any(_evaluate(part, set(active)) for part in _alternatives(expression))


def rank(expression: Any, active: tuple[str, ...]) -> int:
    """Position of the latest requested profile the expression names (-1 if none): later wins."""
    names: set[str] = set()
    for part in _alternatives(expression):
        names.update(t for t in _TOKEN.findall(part) if t not in "()!&|")
    return max((i for i, p in enumerate(active) if p in names), default=-1)


def _alternatives(expression: Any) -> list[str]:
    if isinstance(expression, list):
        return [str(item) for item in expression]
    return [part for part in str(expression).split(",") if part.strip()]


def _evaluate(text: str, active: set[str]) -> bool:
    tokens: list[str] = _TOKEN.findall(text)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def parse_or() -> bool:
        value = parse_and()
        while peek() == "|":
            take()
            value = parse_and() or value
        return value

    def parse_and() -> bool:
        value = parse_unary()
        while peek() == "&":
            take()
            value = parse_unary() and value
        return value

    def parse_unary() -> bool:
        token = take() if peek() is not None else ""
        if token == "!":
            return not parse_unary()
        if token == "(":
            value = parse_or()
            if peek() == ")":
                take()
            return value
        return token.strip() in active

    try:
        return parse_or()
    except IndexError:
        return False
