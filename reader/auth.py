"""Bearer-token access to the reader (config `reader.token`, env PERSONA_READER__TOKEN).

Every route requires `Authorization: Bearer <token>` when a token is configured, except /healthz (for
load balancers) and the inspector's static page /inspect (no data in it: the page sends the token on
every API call it makes). Comparison is constant-time.

>>> authorized("Bearer s3cret", "s3cret"), authorized("Bearer nope", "s3cret"), authorized(None, "")
(True, False, True)
"""

from __future__ import annotations

import hmac

PUBLIC_PATHS = frozenset({"/healthz", "/inspect"})


def authorized(header: str | None, token: str) -> bool:
    """True when no token is configured, or `header` is "Bearer <token>" (constant-time compare)."""
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    # compare even on a malformed header, so the timing does not reveal which check failed
    same = hmac.compare_digest(given.strip().encode(), token.encode())
    return scheme.lower() == "bearer" and same
