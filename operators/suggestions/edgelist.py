"""Edge lists (`user friend [timestamp]` per line) replayed as `follow` events.

Whitespace- or comma-separated; `#` and `%` lines are comments. The optional third column is a unix
time in seconds (or milliseconds when ≥ 1e11); without it, edges are one second apart in file order.
Events are yielded in time order (stable), with deterministic event ids.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from schemas.events import Event

BASE_TS_MS = 1_600_000_000_000  # edges without a timestamp start here, one second apart
EDGE_SUFFIXES = (".edges", ".edgelist", ".edges.gz", ".edgelist.gz")


def looks_like_edge_list(head: bytes) -> bool:
    parts = head.replace(b",", b" ").split()
    return 2 <= len(parts) <= 3 and not head.lstrip().startswith(b"{") and all(
        p.replace(b".", b"").isdigit() for p in parts[2:])


def read_edges(path: str | Path, stats=None) -> Iterator[Event]:
    p = Path(path)
    opener = gzip.open if p.name.endswith(".gz") else open
    rows: list[tuple[int, int, str, str]] = []
    with opener(p, "rt") as fh:
        for n, line in enumerate(fh):
            if stats is not None:
                stats.lines += 1
            line = line.strip()
            if not line or line[0] in "#%":
                continue
            parts = line.replace(",", " ").split()
            if len(parts) < 2 or parts[0] == parts[1]:
                if stats is not None:
                    stats.reject("edge list: need two distinct ids")
                continue
            try:
                ts = float(parts[2]) if len(parts) > 2 else None
            except ValueError:
                ts = None
            if ts is None:
                ms = BASE_TS_MS + len(rows) * 1000
            else:
                ms = int(ts if ts >= 1e11 else ts * 1000)
            rows.append((ms, n, parts[0], parts[1]))
    rows.sort(key=lambda r: (r[0], r[1]))
    for ms, n, u, v in rows:
        if stats is not None:
            stats.events += 1
        yield Event(event_id=f"edge-{n}", type="follow", ts=ms, user_id=f"u{u}",
                    target_id=f"u{v}")
