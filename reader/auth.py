"""Bearer-token access to the reader (config `reader.token`, env PERSONA_READER__TOKEN).

Every route requires `Authorization: Bearer <token>` when a token is configured, except /healthz (for
load balancers) and the inspector's static page /inspect (no data in it: the page sends the token on
every API call it makes). Comparison is constant-time. Several tokens, comma-separated, are all
accepted: to rotate, configure "new,old", move the clients to the new one, then drop the old.

>>> authorized("Bearer s3cret", "s3cret"), authorized("Bearer nope", "s3cret"), authorized(None, "")
(True, False, True)
>>> authorized("Bearer old", "new,old"), authorized("Bearer new,old", "new,old")
(True, False)
>>> authorized("Bearer ", "new,"), authorized("Bearer", "a,,b")  # an empty entry is no token
(False, False)
>>> wire = "Bearer pässwort".encode()  # a client's UTF-8 bytes; the server decodes latin-1
>>> authorized(wire.decode("latin-1"), "pässwort"), authorized("Bearer pässwort", "pässwort")
(True, False)
"""

from __future__ import annotations

import hmac
from functools import cache

PUBLIC_PATHS = frozenset({"/healthz", "/inspect"})


def authorized(header: str | None, token: str) -> bool:
    """True when no token is configured, or `header` is "Bearer <t>" for one of the configured
    tokens (comma-separated; each compared in constant time)."""
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    given_bytes = _wire_bytes(given.strip())
    # compare with every token, even on a malformed header, so the timing does not reveal which
    # check failed or which token matched
    same = False
    for accepted in _accepted(token):
        same |= hmac.compare_digest(given_bytes, accepted)
    return scheme.lower() == "bearer" and same and bool(given_bytes)


def _wire_bytes(text: str) -> bytes:
    """The bytes a client sent: the server decodes header values as latin-1, so a UTF-8 token
    (configured as text) matches the UTF-8 bytes it was sent as."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:  # (a caller that decoded the header otherwise)
        return text.encode()


@cache
def _accepted(token: str) -> tuple[bytes, ...]:
    """The configured tokens, split once (not on every request); empty entries ("new," while
    rotating) are none."""
    return tuple(t for t in (t.strip().encode() for t in token.split(",")) if t)
