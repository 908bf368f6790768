"""The feed inspector: one static HTML page (reader/static/inspect.html: plain HTML + vanilla JS, no
build step, nothing loaded from elsewhere) and the two JSON endpoints it polls.

GET /inspect                     the page (`?user=ID` opens a user directly)
GET /inspect/api/user/{user_id}  the user's feed (scores, reasons, explanations) and top affinities
GET /inspect/api/stats           the reader's live metrics (reader.metrics.ReaderMetrics.snapshot)
"""

from __future__ import annotations

from pathlib import Path

import redis
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse

from reader.client import PersonaClient
from reader.metrics import ReaderMetrics

PAGE = Path(__file__).with_name("static") / "inspect.html"
# the page only talks to this server: no external scripts, styles, fonts or images
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")


def install(api: FastAPI, client: PersonaClient, metrics: ReaderMetrics) -> None:
    """Adds the routes to the app itself (flat routes keep reader.middleware.route_template exact)."""
    page = PAGE.read_bytes()

    @api.get("/inspect", include_in_schema=False)
    def inspect_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP,
                                           "X-Content-Type-Options": "nosniff",
                                           "Cache-Control": "no-store"})

    @api.get("/inspect/api/user/{user_id}", tags=["inspector"])
    def inspect_user(user_id: str, limit: int = Query(50, ge=1, le=200)) -> dict:
        """A user's feed (first `limit` items) and published profile (top authors and topics)."""
        if not user_id or len(user_id) > 128:
            raise HTTPException(422, "user_id must be 1..128 characters")
        try:
            return {"feed": client.feed(user_id, limit).to_dict(),
                    "profile": client.profile(user_id)}
        except redis.RedisError as exc:
            raise HTTPException(503, f"feed store unavailable: {exc}") from exc

    @api.get("/inspect/api/stats", tags=["inspector"])
    def inspect_stats() -> dict:
        """Requests/s, error rate and latency quantiles of the API routes over the last minute."""
        return metrics.snapshot()
