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

import pickle
import sqlite3
from contextlib import closing
from pathlib import Path

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
            with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=1)) as db:
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
