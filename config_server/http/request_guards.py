"""Refusals before any endpoint runs: a foreign `Host` (421) and a cross-site state change (403).

DNS rebinding (`hosts.py`): a request whose `Host` is not on the allow-list is answered 421
Misdirected Request, whatever it asks; the fast path hands such a request to Flask, so both
answer the same bytes.

Cross-site request forgery: a browser sends HTTP Basic credentials it has cached (the console
is opened with them), and on an open server the network position is the credential, so a page of
another origin could make a visitor's browser POST to `/rollouts/{app}/halt`, `/monitor`,
`/encrypt` or `/decrypt`. Every request that is not GET, HEAD or OPTIONS is refused (403) when

- its `Sec-Fetch-Site` says `cross-site` or `same-site` (every current browser sends it), or
- it carries an `Origin` that is not this server's own (scheme, host and port, as the request
  reached the server, `X-Forwarded-*` applied with `--proxy-hops`), `null` included, or
- its credentials are HTTP Basic and its body is one an HTML form can send: no `Content-Type`,
  or `application/x-www-form-urlencoded`, `multipart/form-data` or `text/plain`. A page of
  another origin can send only those without the browser asking the server first (a CORS
  preflight, which this server never grants), so JSON with Basic cannot be forged, while a
  browser that sends neither header above is still covered.

Machine clients send no `Origin` and no `Sec-Fetch-Site`; those with a token send it as
`Authorization: Bearer` or `X-Config-Token` (the CLI, Alertmanager, monitoring), which no browser
adds by itself, and webhooks are signed: they pass unchanged. The console has no state-changing
action (its pages and polls are GETs), so it needs no token of its own.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, request

from config_server.errors import CrossSiteRequest, MisdirectedRequest
from config_server.http.hosts import HostAllowList

#: Methods that change nothing here: never refused as cross-site.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Bodies an HTML form (or a fetch without a preflight) can send: "" is no Content-Type at all.
FORM_CONTENT_TYPES = frozenset({"", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def install(app: Flask, hosts: HostAllowList) -> None:
    """Register the Host check (unless every name is allowed) and the cross-site check, first."""

    def check_host() -> None:
        if not hosts.allows_environ(request.environ):
            raise MisdirectedRequest(
                f"this server does not answer for host {request.host!r} (see --allowed-hosts)"
            )

    if not hosts.any:
        app.before_request(check_host)
    app.before_request(refuse_cross_site)


def refuse_cross_site() -> None:
    """Raise CrossSiteRequest for a state change a browser may have sent for another site."""
    if request.method in SAFE_METHODS:
        return
    site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if site in ("cross-site", "same-site"):
        raise CrossSiteRequest(f"a cross-site request may not change anything here (Sec-Fetch-Site: {site})")
    origin = request.headers.get("Origin")
    if origin is not None and _origin(origin) != _origin(request.host_url):
        raise CrossSiteRequest(
            f"a cross-site request may not change anything here (Origin {origin[:100]!r} is not this server)"
        )
    scheme = request.headers.get("Authorization", "").partition(" ")[0].lower()
    if scheme == "basic" and request.mimetype in FORM_CONTENT_TYPES:
        raise CrossSiteRequest(
            "a change authenticated with HTTP Basic (credentials a browser re-sends by itself) needs a "
            "body a cross-site form cannot send (Content-Type: application/json), or the token in "
            "Authorization: Bearer or X-Config-Token"
        )


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL; None for `null` or anything malformed."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORTS[scheme]
