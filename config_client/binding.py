"""Typed, refreshable settings: `client.bind(Model, prefix="orders")`.

The Python answer to Spring's `@ConfigurationProperties` with `@RefreshScope`. A `Binding` builds
one instance of the model from each version *before* that version is applied; the instance travels
with the snapshot it was built from, so a reader always gets the model and the flat settings of
the same version, swapped in together. A version that does not fit the model is rejected whole
(`RejectedVersion`): not applied, listeners not called, the last good copy kept.

Models: a pydantic `BaseModel` (pydantic is optional: install the `pydantic` extra; it is never
imported here, a model is recognised by its `model_validate`) or a dataclass, whose fields are
checked here (`int`, `float`, `bool`, `str`, `list[...]`, `dict[str, ...]`, `X | None`, nested
dataclasses; a `.properties` string such as `"10"` or `"true"` is accepted for `int`/`bool`, as
pydantic's lax mode does). Keys are matched with `-` read as `_` (`max-items` fills `max_items`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Generic, Protocol, TypeVar, Union

from config_client.errors import ConfigClientError, RejectedVersion
from config_client.snapshot import Snapshot

M = TypeVar("M")


class BoundClient(Protocol):
    """What a binding reads of its `ConfigClient`: the names it serves and the current version."""

    app: str
    profiles: str

    @property
    def snapshot(self) -> Snapshot:
        """The current version's settings."""


class Binding(Generic[M]):
    """A model bound to a prefix of a client's settings; attributes read the current version."""

    def __init__(self, client: BoundClient, model: type[M], prefix: str = "") -> None:
        self._client = client
        self.model = model
        self.prefix = prefix.strip(".")

    def build(self, snapshot: Snapshot) -> M:
        """The model instance for one snapshot; raises RejectedVersion when it does not fit."""
        data = section(snapshot.nested(), self.prefix)
        where = f"{self.model.__name__}" + (f" (prefix {self.prefix!r})" if self.prefix else "")
        try:
            return construct(self.model, data)
        except _Mismatch as exc:
            raise RejectedVersion(snapshot.version, f"{where}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, a model's own check
            raise RejectedVersion(snapshot.version, f"{where}: {_first_error(exc)}") from None

    def current(self) -> M:
        """The instance built from the client's current version (one consistent object)."""
        try:
            return self._client.snapshot.model(self)  # type: ignore[no-any-return]
        except KeyError:
            raise ConfigClientError(
                f"no version of {self._client.app}/{self._client.profiles} satisfying "
                f"{self.model.__name__} has been applied yet"
            ) from None

    def __call__(self) -> M:
        """Same as `current()`: lets a binding serve as a FastAPI dependency."""
        return self.current()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.current(), name)

    def __repr__(self) -> str:
        return f"<Binding {self.model.__name__} prefix={self.prefix!r}>"


def section(nested: dict[str, Any], prefix: str) -> Any:
    """The part of the nested settings under a dotted prefix (`{}` when absent), keys with `-`
    read as `_`."""
    node: Any = nested
    for part in filter(None, prefix.split(".")):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return _underscored(node)


def _underscored(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k).replace("-", "_"): _underscored(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_underscored(v) for v in node]
    return node


class _Mismatch(ValueError):
    """A value does not fit a dataclass field."""


def construct(model: type[M], data: Any) -> M:
    """An instance of `model` (pydantic model or dataclass) from nested data."""
    validate = getattr(model, "model_validate", None)
    if validate is not None:
        return validate(data)  # type: ignore[no-any-return]
    if dataclasses.is_dataclass(model):
        return _convert(model, data, "")  # type: ignore[no-any-return]
    raise TypeError(f"bind() needs a pydantic model or a dataclass, not {model!r}")


def _convert(tp: Any, value: Any, path: str) -> Any:
    where = path or "(root)"
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except _Mismatch as exc:
                errors.append(str(exc))
        raise _Mismatch(errors[0] if errors else f"{where}: no type fits")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(tp, value, path)
    if origin in (list, tuple, set, frozenset):
        if not isinstance(value, list):
            raise _Mismatch(f"{where}: expected a list, got {_kind(value)}")
        args = typing.get_args(tp) or (Any,)
        items = [_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
        return origin(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch(f"{where}: expected a mapping, got {_kind(value)}")
        args = typing.get_args(tp) or (Any, Any)
        return {k: _convert(args[1], v, f"{path}.{k}" if path else k) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise _Mismatch(f"{where}: expected a boolean, got {_kind(value)}")
        return value
    if tp is int:
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch(f"{where}: expected an integer, got {_kind(value)}")
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Mismatch(f"{where}: expected a number, got {_kind(value)}")
        return float(value)
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise _Mismatch(f"{where}: expected {tp.__name__}, got {_kind(value)}")
    return value


def _dataclass(tp: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise _Mismatch(f"{path or '(root)'}: expected a mapping, got {_kind(value)}")
    hints = typing.get_type_hints(tp)
    kwargs = {}
    for f in dataclasses.fields(tp):
        if not f.init:
            continue
        key = f"{path}.{f.name}" if path else f.name
        if f.name in value:
            kwargs[f.name] = _convert(hints.get(f.name, Any), value[f.name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _Mismatch(f"{key}: missing")
    return tp(**kwargs)


def _kind(value: Any) -> str:
    """The type of a value that does not fit, never the value: it may be a decrypted secret, and
    the message is logged, sent as X-Config-Rejected, stored and shown by the server."""
    return "null" if value is None else type(value).__name__


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            location = ".".join(str(p) for p in first.get("loc", ()))
            return f"{location}: {first.get('msg', exc)}" if location else str(first.get("msg", exc))
        except Exception:  # noqa: BLE001 - fall back to the message
            pass
    return " ".join(str(exc).split())
