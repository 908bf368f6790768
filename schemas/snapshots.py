"""The format of the workers' state in Bytewax recovery snapshots.

Each stateful step snapshots its state with pickle (flows/adapters.py `_Logic.snapshot`): the
classes of operators/ and flows/ (some pickled by position: schemas/exchange.py), River's, and
Python's containers. Code that renames or moves one of those classes, changes its fields, or
changes what a field means makes older snapshots fail to load, or load into states that mean
something else. `STATE_FORMAT` names the format this code writes; a recovery directory records
the format it was made with (scripts/recovery_store.py `mark_state_format`), and the runner
refuses to resume one of another format (README "Upgrading").

Bump it with any such change. tests/integration/test_state_format.py records the snapshotted
classes and their fields and fails when they change, so a change cannot slip through unnoticed:
re-record it (and bump this) when the change is incompatible, re-record alone when old snapshots
still load and mean the same (e.g. a new attribute with a class-level default).
"""

STATE_FORMAT = 1
