"""Failures logged where they happen. In a Bytewax 0.21 cluster (several processes) an exception
raised by a step's logic or a sink reaches the terminal only as "PanicException: Send thread panic:
Any { .. }" in every process, without its type or message (one process alone prints the whole
traceback): "Redis unreachable after 8 retries …; check REDIS_URL" would be lost. So the steps'
logic (`flows.adapters._Logic`) and the sinks log the exception first — once, at ERROR, with its
traceback — and then let it stop the worker as before.
"""

from __future__ import annotations

import contextlib
import functools
import logging

log = logging.getLogger("persona.flow")


def report(where: str, exc: BaseException) -> None:
    """Log `exc`, raised in `where`, unless an inner frame already did."""
    if getattr(exc, "_persona_reported", False):
        return
    with contextlib.suppress(AttributeError):  # (an exception type without a __dict__)
        exc._persona_reported = True  # type: ignore[attr-defined]
    log.error("%s failed; the worker stops: %s: %s", where, type(exc).__name__, exc,
              exc_info=exc)


def reported(method):
    """`method` (of a step's logic or a sink partition), reporting what it raises, then raising it."""

    @functools.wraps(method)
    def wrapper(self, *args):
        try:
            return method(self, *args)
        except Exception as exc:
            key = getattr(self, "key", None)
            report(f"{type(self).__name__}.{method.__name__}"
                   + (f" (key {key!r})" if isinstance(key, str) else ""), exc)
            raise

    return wrapper


__all__ = ["report", "reported"]
