"""A recovery directory's set-up and reading without Bytewax (scripts/runner.py `init_recovery`,
scripts/recovery_store.py): partitions are created in a directory that holds other files (a
mounted disk's lost+found), and read back from a path with URI characters in it."""

from __future__ import annotations

from scripts import recovery_store
from scripts.runner import init_recovery


def test_partitions_are_made_next_to_other_files_and_read_from_any_path(tmp_path):
    directory = tmp_path / "disk #1 100%?"
    (directory / "lost+found").mkdir(parents=True)
    init_recovery(str(directory), 2)
    assert sorted(p.name for p in directory.glob("part-*.sqlite3")) == [
        "part-0.sqlite3", "part-1.sqlite3"]
    (counts,) = recovery_store.store_rows(directory, ("SELECT COUNT(*) FROM snaps", ()))
    assert counts == [(0,), (0,)]  # both partitions read (a '#' once ended the URI: none)
    assert recovery_store.resume_offsets(directory) == {}
    init_recovery(str(directory), 2)  # made once: a second call leaves them
    assert len(list(directory.glob("part-*.sqlite3"))) == 2
