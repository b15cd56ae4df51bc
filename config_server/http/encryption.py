"""`POST /encrypt`, `POST /decrypt` and `GET /encrypt/status`, as Spring Cloud Config answers them.

The body is the plain text (or ciphertext) itself. `curl -d value` sends it as a form, so a form
body is URL-decoded and a trailing `=` that curl's form encoding leaves is dropped, as Spring does.
`/decrypt` needs a client with the `decrypt` role: it is refused on a server without an auth file,
since anyone who can reach it could otherwise turn every ciphertext in git back into plain text.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote_plus

from flask import Blueprint, Response, jsonify, request

from config_server.content.crypto import Keyring
from config_server.errors import (
    AccessDenied,
    CryptoError,
    EncryptionUnavailable,
    NoKeyError,
    PayloadRejected,
    PayloadTooLarge,
)
from config_server.http import security
from config_server.http.context import server_state

blueprint = Blueprint("encryption", __name__)
log = logging.getLogger(__name__)

#: Largest value accepted by /encrypt and /decrypt.
MAX_VALUE_BYTES = 64 * 1024


def _keyring() -> Keyring:
    keyring: Keyring | None = server_state().service.keyring
    if keyring is None:
        raise EncryptionUnavailable("No key was installed for encryption service")
    return keyring


def _body_text() -> str:
    data = request.stream.read(MAX_VALUE_BYTES + 1)  # never buffer more than the limit
    if len(data) > MAX_VALUE_BYTES:
        raise PayloadTooLarge(f"the value is larger than {MAX_VALUE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadRejected("the body must be UTF-8 text") from None
    if request.mimetype == "application/x-www-form-urlencoded":
        text = unquote_plus(text)
        if text.endswith("=") and "=" not in text[:-1]:
            text = text[:-1]
    if not text:
        raise PayloadRejected("the body is empty: send the value to encrypt or decrypt")
    return text


@blueprint.get("/encrypt/status")
def status() -> Response:
    """`{"status": "OK"}`, or 404 `NO_KEY` when no key is configured."""
    security.require_role("encrypt", "encrypt")
    if server_state().service.keyring is None:
        body = {"description": "No key was installed for encryption service", "status": "NO_KEY"}
        return Response(jsonify(body).get_data(), status=404, mimetype="application/json")
    return jsonify({"status": "OK"})


@blueprint.post("/encrypt")
def encrypt() -> Response:
    """The ciphertext of the body, to be written `{cipher}<ciphertext>` in the repository.

    `?format=spring` writes Spring's AES-CBC (or RSA/CBC) format instead of AES-GCM, for values
    that a Spring Cloud Config server must still read.
    """
    security.require_role("encrypt", "encrypt")
    keyring = _keyring()
    spring = request.args.get("format", "").lower() == "spring"
    try:
        ciphertext = keyring.encrypt(_body_text(), spring=spring)
    except NoKeyError as exc:
        raise PayloadRejected(str(exc)) from None
    security.note("encrypt", format="spring" if spring else "gcm1")
    return Response(ciphertext, mimetype="text/plain")


@blueprint.post("/decrypt")
def decrypt() -> Response:
    """The plain text of the body (a ciphertext, with or without `{cipher}`)."""
    client = security.require_role("decrypt", "decrypt")
    if not security.auth_enabled():
        raise AccessDenied("/decrypt is disabled on a server without an auth file (see docs/security.md)")
    keyring = _keyring()
    try:
        plaintext = keyring.decrypt(_body_text())
    except CryptoError as exc:
        log.warning("client %s sent a value that does not decrypt: %s", client.name, exc)
        raise PayloadRejected(f"cannot decrypt: {exc}") from None
    return Response(plaintext, mimetype="text/plain")
