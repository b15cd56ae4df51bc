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
    names = names_in(expression)
    return max((i for i, p in enumerate(active) if p in names), default=-1)


def names_in(expression: Any) -> set[str]:
    """Every profile name an activation expression mentions, negated ones included (`!p1` makes
    `p1` matter: its absence activates the document)."""
    names: set[str] = set()
    for part in _alternatives(expression):
        names.update(t for t in _TOKEN.findall(part) if t not in "()!&|")
    return names


def relevant(wanted: tuple[str, ...], with_files: frozenset[str], named: frozenset[str]) -> tuple[str, ...]:
    """The requested profiles that change what an environment resolves to, in their order and
    with their repeats: those a file is named after (`orders-p1.yml`) and those an activation
    expression of a file read mentions. Resolving the result gives the same property sources
    as resolving `wanted`: a dropped profile reads no file and decides no activation, and the
    kept ones keep their relative order, which is all `rank` compares."""
    return tuple(p for p in wanted if p in with_files or p in named)


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
