"""Event sources for offline evaluation: the project's JSONL event log and MovieLens ratings.

`read_events(path)` dispatches on the file:

* `*.jsonl` / `*.jsonl.gz` (or content starting with `{`): one wire-format event per line, decoded with
  `schemas.codec.decode_event`; invalid lines are skipped and counted in `ReadStats`. File order is kept.
* MovieLens 100K `u.data` (also `u1.base`, `ua.test`, ...): `user \\t item \\t rating \\t unix_time`;
  genres from `u.item` (last 19 columns are genre flags, names from `u.genre`) in the same directory.
* MovieLens `ratings.csv` (`userId,movieId,rating,timestamp`); genres from `movies.csv` ("|"-separated).
* A directory holding one of the above (u.data, then ratings.csv, then a single *.jsonl[.gz]).

MovieLens ratings become events in time order (stable sort by timestamp, ties in file order):
before the first rating of an item, a synthetic `post_created` (post_id "m<item>", topics = its genres,
author "studio:<first genre>", same ts); each rating becomes a `like` when rating >= 4, else an
`impression` (seen, not engaged). Users are "u<id>", times are epoch milliseconds, event ids are
deterministic.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from schemas.codec import decode_event
from schemas.events import Event

LIKE_THRESHOLD = 4.0

ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
MAX_DISTINCT_REASONS = 50


@dataclass
class ReadStats:
    """What a reader saw: lines read, events produced, invalid lines and why."""

    path: str = ""
    format: str = ""
    lines: int = 0
    events: int = 0
    invalid: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def reject(self, reason: str) -> None:
        self.invalid += 1
        reason = reason[:200]
        if reason in self.reasons or len(self.reasons) < MAX_DISTINCT_REASONS:
            self.reasons[reason] += 1
        else:
            self.reasons["(other reasons)"] += 1


def detect_format(path: str | Path) -> tuple[str, Path]:
    """("jsonl" | "ml-udata" | "ml-csv", file) for a file or a dataset directory."""
    p = Path(path)
    if p.is_dir():
        for name, fmt in (("u.data", "ml-udata"), ("ratings.csv", "ml-csv")):
            if (p / name).is_file():
                return fmt, p / name
        logs = sorted(p.glob("*.jsonl")) + sorted(p.glob("*.jsonl.gz"))
        if len(logs) == 1:
            return "jsonl", logs[0]
        raise ValueError(f"{p}: no u.data, ratings.csv or single *.jsonl[.gz] inside")
    if not p.is_file():
        raise FileNotFoundError(p)
    name = p.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
        return "jsonl", p
    if name.endswith((".edges", ".edgelist", ".edges.gz", ".edgelist.gz")):
        return "edges", p
    if name.endswith(".csv"):
        return "ml-csv", p
    if name.endswith((".data", ".base", ".test")):
        return "ml-udata", p
    with _open_binary(p) as fh:
        head = fh.readline().lstrip()
    if head.startswith(b"{"):
        return "jsonl", p
    if b"\t" in head and len(head.split()) >= 4:
        return "ml-udata", p
    from operators.suggestions.edgelist import looks_like_edge_list
    if looks_like_edge_list(head):
        return "edges", p
    if b"\t" in head:
        return "ml-udata", p
    raise ValueError(f"{p}: cannot tell the format (expected .jsonl[.gz], u.data or ratings.csv)")


def read_events(path: str | Path, stats: ReadStats | None = None) -> Iterator[Event]:
    """Events of a JSONL log or a MovieLens ratings file, in order. Fills `stats` when given."""
    fmt, file = detect_format(path)
    stats = stats if stats is not None else ReadStats()
    stats.path, stats.format = str(file), fmt
    if fmt == "jsonl":
        return _read_jsonl(file, stats)
    if fmt == "edges":  # `user friend [ts]` lines → follow events (operators/suggestions/edgelist)
        from operators.suggestions.edgelist import read_edges
        return read_edges(file, stats)
    if fmt == "ml-udata":
        rows = _udata_rows(file, stats)
        genres = read_udata_genres(file.parent)
    else:
        rows = _csv_rows(file, stats)
        genres = read_csv_genres(file.parent)
    return _ratings_to_events(rows, genres, stats)


# ----------------------------------------------------------------------------- JSONL event log


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _read_jsonl(path: Path, stats: ReadStats) -> Iterator[Event]:
    with _open_binary(path) as fh:
        for line in fh:
            stats.lines += 1
            line = line.strip()
            if not line:
                continue
            event, reason = decode_event(line)
            if event is None:
                stats.reject(f"line {stats.lines}: {reason}" if stats.invalid < 5 else str(reason))
                continue
            stats.events += 1
            yield event


# ----------------------------------------------------------------------------- MovieLens

Row = tuple[int, int, str, str, float]  # (ts_ms, line_no, user, item, rating)


def _udata_rows(path: Path, stats: ReadStats) -> list[Row]:
    rows: list[Row] = []
    with open(path, encoding="latin-1") as fh:
        for line_no, line in enumerate(fh, 1):
            stats.lines += 1
            parts = line.split()
            if not parts:
                continue
            try:
                user, item, rating, ts = parts[0], parts[1], float(parts[2]), int(parts[3])
            except (IndexError, ValueError):
                stats.reject(f"not 'user item rating time': {line.strip()[:80]!r}")
                continue
            rows.append((ts * 1000, line_no, user, item, rating))
    return rows


def _csv_rows(path: Path, stats: ReadStats) -> list[Row]:
    rows: list[Row] = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"userId", "movieId", "rating", "timestamp"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: header lacks {sorted(missing)}")
        for rec in reader:
            stats.lines += 1
            try:
                rows.append(
                    (
                        int(rec["timestamp"]) * 1000,
                        reader.line_num,
                        rec["userId"].strip(),
                        rec["movieId"].strip(),
                        float(rec["rating"]),
                    )
                )
            except (TypeError, ValueError, AttributeError):
                stats.reject(f"bad ratings.csv row at line {reader.line_num}")
    return rows


def read_udata_genres(directory: Path) -> dict[str, tuple[str, ...]]:
    """item id -> genre names from MovieLens 100K `u.item` (+ `u.genre`); {} when absent."""
    item_file = directory / "u.item"
    if not item_file.is_file():
        return {}
    names = list(ML100K_GENRES)
    genre_file = directory / "u.genre"
    if genre_file.is_file():
        pairs = []
        for line in genre_file.read_text(encoding="latin-1").splitlines():
            name, _, idx = line.strip().rpartition("|")
            if name and idx.isdigit():
                pairs.append((int(idx), name))
        if pairs:
            names = [name for _, name in sorted(pairs)]
    out: dict[str, tuple[str, ...]] = {}
    with open(item_file, encoding="latin-1") as fh:
        for line in fh:
            parts = line.rstrip("\r\n").split("|")
            if len(parts) < len(names) + 1:
                continue
            flags = parts[-len(names) :]
            out[parts[0]] = tuple(n for n, f in zip(names, flags, strict=True) if f.strip() == "1")
    return out


def read_csv_genres(directory: Path) -> dict[str, tuple[str, ...]]:
    """movieId -> genres from MovieLens `movies.csv`; {} when absent."""
    movies = directory / "movies.csv"
    if not movies.is_file():
        return {}
    out: dict[str, tuple[str, ...]] = {}
    with open(movies, encoding="utf-8", newline="") as fh:
        for rec in csv.DictReader(fh):
            raw = (rec.get("genres") or "").strip()
            genres = (
                ()
                if raw in ("", "(no genres listed)")
                else tuple(g.strip() for g in raw.split("|") if g.strip())
            )
            out[(rec.get("movieId") or "").strip()] = genres
    return out


def author_for(item: str) -> str:
    """Synthetic author of a movie. MovieLens has no authors, so each movie gets its own: a shared
    author would make author caps and author affinities act on genres, which they are not."""
    return f"studio:m{item}"


def _ratings_to_events(
    rows: list[Row], genres: dict[str, tuple[str, ...]], stats: ReadStats
) -> Iterator[Event]:
    rows.sort(key=lambda r: r[0])  # stable: ties keep file order
    seen: set[str] = set()
    for ts, line_no, user, item, rating in rows:
        post_id = "m" + item
        if item not in seen:
            seen.add(item)
            topics = genres.get(item) if genres else None
            stats.events += 1
            yield Event(
                event_id=f"ml:post:{post_id}",
                type="post_created",
                ts=ts,
                user_id=author_for(item),
                post_id=post_id,
                topics=topics,
            )
        stats.events += 1
        yield Event(
            event_id=f"ml:{line_no}:u{user}:{post_id}",
            type="like" if rating >= LIKE_THRESHOLD else "impression",
            ts=ts,
            user_id="u" + user,
            post_id=post_id,
        )
