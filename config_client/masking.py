"""Secret values kept out of rejection reasons.

A service's own `validate` callable (or a model's error) may quote a value in its message, and
the reason is logged, kept, and sent to the server in `X-Config-Rejected`, where the console and
`/instances` show it. Before that, the values of keys the client knows to be secret are replaced
by `******`: the keys whose names Spring Boot's actuator masks (ending in `password`, `secret`,
`key`, `token`, or holding `credentials`) and any holding `password`, `secret` or `token`. The
reason is also cut to MAX_REASON_CHARS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: What replaces a secret value in a reason.
MASK = "******"
#: The longest reason kept (the header carries at most 512 characters of it).
MAX_REASON_CHARS = 1024
#: Values shorter than this are not masked: `1` or `on` would mask every such text in the reason.
MIN_SECRET_CHARS = 4

_SECRET_NAME = re.compile(r"(password|passwd|secret|key|token)$|credential|password|secret|token")
_INDEX = re.compile(r"\[\d+\]")


def is_secret_key(key: str) -> bool:
    """True for a key whose value is treated as a secret (`db.password`, `api-key`, ...)."""
    return _SECRET_NAME.search(_INDEX.sub("", key).lower().replace("_", "-")) is not None


def masked_reason(reason: str, values: Mapping[str, Any]) -> str:
    """The reason with every secret value of `values` replaced by MASK, at most MAX_REASON_CHARS."""
    secrets = {
        str(value)
        for key, value in values.items()
        if value is not None and is_secret_key(key) and len(str(value)) >= MIN_SECRET_CHARS
    }
    for secret in sorted(secrets, key=len, reverse=True):
        reason = reason.replace(secret, MASK)
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    return reason
