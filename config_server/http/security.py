"""Who is calling, what they may do, and the audit line each request leaves.

With an auth file, every request is identified before it is dispatched: a token from
`Authorization: Bearer`, `X-Config-Token`, or the password of HTTP Basic. A token that no client
holds is a 401 at once; no token is a 401 only where an endpoint needs a client. Handlers then
state what they need (`require_read`, `require_role`), which answers 403 when the client may not.
Without an auth file every caller is `ANONYMOUS` (all roles). With an audit log, one line is
written after each request that was noted, and after every 401 and 403.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, request

from config_server.errors import AccessDenied, AuthenticationRequired
from config_server.http.auth import ANONYMOUS, AuthFile, Client
from config_server.http.context import server_state
from config_server.names import EnvironmentRequest
from config_server.observability.audit import environment_fields

if TYPE_CHECKING:
    pass


def presented_token() -> str | None:
    """The token the request carries, from whichever header it came in."""
    return token_from(request.headers.get("Authorization", ""), request.headers.get("X-Config-Token", ""))


def token_from(authorization: str, x_config_token: str) -> str | None:
    """The token in an `Authorization` (Bearer, or Basic's password) or `X-Config-Token` header.

    Raises AuthenticationRequired for malformed Basic credentials. Free of Flask, for the fast path.
    """
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationRequired("the Basic credentials are malformed") from None
        return decoded.partition(":")[2] or None
    token = x_config_token.strip()
    return token or None


def identify() -> None:
    """Before each request on a server with an auth file: set `g.client` from the token, if any."""
    auth = server_state().auth
    assert auth is not None, "identify is installed only on a server with an auth file"
    g.client = None
    token = presented_token()
    if token is None:
        return
    client = auth.authenticate(token)
    if client is None:
        raise AuthenticationRequired("the token is not valid")
    g.client = client


def caller() -> Client | None:
    """Who makes this request, the one answer to that question (endpoints, checks, audit lines).

    On an open server: ANONYMOUS (it may do everything). With an auth file: the client whose token
    the request carried, or None when it carried none.
    """
    client: Client | None = g.get("client", ANONYMOUS if server_state().auth is None else None)
    return client


def _identified_caller() -> Client:
    """The caller; 401 when a server with an auth file got no credentials."""
    client = caller()
    if client is None:
        raise AuthenticationRequired("this endpoint needs a token (Bearer, X-Config-Token or Basic)")
    return client


def auth_enabled() -> bool:
    """True when an auth file is configured."""
    return server_state().auth is not None


def require_role(role: str | tuple[str, ...], event: str) -> Client:
    """The client, when it holds `role` (one of them, for a tuple); 401 or 403 otherwise. Marks
    the request for the audit log."""
    note(event)
    client = _identified_caller()
    roles = (role,) if isinstance(role, str) else role
    if not any(client.has_role(one) for one in roles):
        wanted = " or ".join(repr(one) for one in roles)
        raise AccessDenied(f"client {client.name!r} does not have the {wanted} role")
    return client


def require_read(asked: EnvironmentRequest, event: str = "read") -> None:
    """Mark the request for the audit log, then check the client may read what it asks (the
    default label when none): 401 without credentials, 403 when `refused_read` names what not.

    A request listing several applications (`orders,shared`) or labels (`main,release-1`) needs
    every one of them. The names were validated when `asked` was parsed.
    """
    note(event, **environment_fields(asked))
    client = _identified_caller()
    if client is ANONYMOUS:
        return
    refused = refused_read(client, asked, server_state().service.backend.default_label)
    if refused is not None:
        app, effective = refused
        raise AccessDenied(
            f"client {client.name!r} may not read application {app!r}, profiles "
            f"{asked.profiles_text!r}, label {effective!r}"
        )


def refused_read(
    client: Client, asked: EnvironmentRequest, default_label: str | Callable[[], str]
) -> tuple[str, str] | None:
    """The one read check (Flask's `require_read`, the fast path, a parked poll's recheck): the
    first (application, label) of the request `client` may not read, or None when it may read
    them all (every listed application at every listed label; `default_label`, or what it
    returns, when none was asked). Free of Flask."""
    if client is ANONYMOUS:
        return None
    if asked.labels is not None:
        labels = asked.labels
    else:
        labels = (default_label() if callable(default_label) else default_label,)
    wanted = asked.profile_names
    for effective in labels:
        for app in asked.applications:
            if not _may_read(client, app, wanted, effective):
                return app, effective
    return None


@functools.lru_cache(maxsize=4096)
def _may_read(client: Client, application: str, profiles: tuple[str, ...], label: str) -> bool:
    """`client.may_read`, remembered: the same few clients read the same few environments.

    Keyed by the client object, so a reloaded auth file (new Client objects) is checked afresh.
    """
    return client.may_read(application, profiles, label)


def still_reads(
    auth: AuthFile | None, token: str | None, asked: EnvironmentRequest, default_label: str
) -> bool:
    """Whether `token` lets its holder read the environment under the auth file as it is now
    (always, on an open server): how a parked long poll is checked again after a reload. Free of
    Flask, for the fast path and the hub."""
    if auth is None:
        return True
    client = auth.authenticate(token) if token is not None else None
    if client is None:
        return False
    return refused_read(client, asked, default_label) is None


Readings = Sequence[tuple[str, tuple[str, ...]]]


def file_guard() -> Callable[[Sequence[Readings], str], None] | None:
    """A check of a plain-text file found for this request, or None when the caller reads anything.

    The check gets what the file is the configuration of (`ConfigService.denoted_environments`:
    groups of (application, profiles) readings) and the label it was found at. It answers 403,
    naming the client and the file's applications, unless the client may read at least one
    reading of every group at that label: exactly when the Environment endpoints would serve it
    the file's settings anyway. Call it after `require_read` (the names were validated when the
    request was parsed).
    """
    client = _identified_caller()
    if client is ANONYMOUS:
        return None

    def check(groups: Sequence[Readings], label: str) -> None:
        for readings in groups:
            if not any(client.may_read(app, profiles, label) for app, profiles in readings):
                denoted = " or ".join(f"{app} ({','.join(profiles)})" for app, profiles in readings)
                raise AccessDenied(
                    f"client {client.name!r} may not read this file: it is the configuration of "
                    f"{denoted} at label {label!r}"
                )

    return check


def note(event: str, **fields: Any) -> None:
    """Mark this request for the audit log with its event and fields (added to what is there)."""
    if not server_state().audit.enabled:
        return
    audit = g.setdefault("audit", {})
    audit["event"] = event
    audit.update(fields)


def write_audit(response: Response) -> Response:
    """After each request: one audit line for noted requests and for every 401/403."""
    log = server_state().audit
    fields = dict(g.pop("audit", None) or {})
    event = fields.pop("event", None)
    if response.status_code in (401, 403):
        fields["intended"] = event
        event = "denied"
        fields["reason"] = _message(response)
    if event is None:
        return response
    client = caller()
    log.record(
        event,
        client=client.name if client is not None else None,
        remote=request.remote_addr,
        method=request.method,
        path=request.path,
        status=response.status_code,
        **fields,
    )
    return response


def _message(response: Response) -> str | None:
    data = response.get_json(silent=True) if response.is_json else None
    return data.get("message") if isinstance(data, dict) else None


def install(app: Flask, authenticate: bool, audit: bool) -> None:
    """Register identification (with an auth file) and auditing (with an audit log) on the app.

    An open server without an audit log registers neither, and pays nothing per request.
    """
    if authenticate:
        app.before_request(identify)
    if audit:
        app.after_request(write_audit)
