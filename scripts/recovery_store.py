"""What a Bytewax 0.21 recovery directory holds, read without Bytewax: its SQLite partitions
(`part-*.sqlite3`), opened read-only. The runner checks the Kafka offsets a restart would resume
from before it starts the workers (`scripts.runner.check_recovery_dir`); the tests read the same
offsets and the steps' states.

A snapshot row (`snaps`: step id "flow.step", state key, epoch, pickled state or NULL for a
discarded key) is written before every worker's frontier (`fronts`) passes its epoch, and a restart
resumes from the lowest frontier of the last execution: the rows of earlier epochs are what it
resumes.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

from schemas.snapshots import STATE_FORMAT

# the format of the state a directory's snapshots hold (schemas/snapshots.py), next to its partitions
MARKER = "persona-state.json"
FLOW = "persona"  # the dataflow's id: a step's id in the store is "persona.{step}"
# the flow's Kafka input (flows/kafka_source.py): its state keys are "{partition}-{topic}"
KAFKA_INPUT_STEP = f"{FLOW}.kafka_in.kafka_input"
# a step's snapshots, oldest first
SNAPSHOTS = "SELECT state_key, snap_epoch, ser_change FROM snaps WHERE step_id = ? ORDER BY snap_epoch"
_FRONTIER = ("SELECT MIN(worker_frontier) FROM fronts WHERE ex_num = "
             "(SELECT MAX(ex_num) FROM fronts)", ())


def store_rows(recovery_dir, *queries: tuple[str, tuple]) -> list[list]:
    """The rows of each (sql, parameters) over every SQLite partition of a recovery directory, all
    of a partition's in one connection; a partition that cannot be read (being written) is skipped
    whole."""
    out: list[list] = [[] for _ in queries]
    for part in Path(recovery_dir).glob("part-*.sqlite3"):
        try:
            # (quoted: '#', '%' or '?' in a path would end or change the URI)
            uri = f"file:{quote(str(part))}?mode=ro"
            with closing(sqlite3.connect(uri, uri=True, timeout=1)) as db:
                rows = [db.execute(sql, params).fetchall() for sql, params in queries]
        except sqlite3.Error:
            continue
        for acc, got in zip(out, rows, strict=True):
            acc += got
    return out


def resume_offsets(recovery_dir) -> dict[tuple[str, int], int]:
    """(topic, partition) → the Kafka offset a restart on `recovery_dir` resumes that partition at
    (the next one to read; negative: from its beginning). Empty for a new directory."""
    frontiers, rows = store_rows(recovery_dir, _FRONTIER, (SNAPSHOTS, (KAFKA_INPUT_STEP,)))
    frontiers = [f for (f,) in frontiers if f is not None]
    if not frontiers:
        return {}
    committed = min(frontiers)
    newest = {key: change for key, epoch, change in rows if epoch < committed}
    offsets = {}
    for key, change in newest.items():
        if change is None:  # discarded
            continue
        offset = pickle.loads(change)  # what the partition's `snapshot` returned
        partition, topic = key.split("-", 1)
        offsets[(topic, int(partition))] = -1 if offset is None else offset
    return offsets


def state_format_of(recovery_dir) -> int | None:
    """The state format a recovery directory was made with (its MARKER), or None when it has none
    (new, or made before the marker existed: format 1)."""
    try:
        return int(json.loads((Path(recovery_dir) / MARKER).read_text())["state_format"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{Path(recovery_dir) / MARKER} is not a state format marker ({exc}): "
                         "restore it, or delete it if the directory was made by this persona"
                         ) from None


def mark_state_format(recovery_dir) -> None:
    """Record this code's STATE_FORMAT in a recovery directory that records none yet."""
    path = Path(recovery_dir) / MARKER
    if not path.exists():
        path.write_text(json.dumps({"state_format": STATE_FORMAT}) + "\n")
