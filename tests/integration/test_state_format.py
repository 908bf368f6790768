"""The recovery snapshots' format (schemas/snapshots.py). A drained run's recovery directory records
STATE_FORMAT; a directory of another format, or with a broken marker, is refused before any worker
starts. And the classes the snapshots hold, with their fields, are the ones recorded in
state_format.json for this STATE_FORMAT: a change to them fails here until it is re-recorded, with
STATE_FORMAT bumped when older snapshots would no longer load or mean the same. Re-record:

    PERSONA_RECORD_STATE_FORMAT=1 python -m pytest tests/integration/test_state_format.py
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from flows.adapters import _KeyedSnapshot, _PendingTimer
from schemas.snapshots import STATE_FORMAT
from scripts import recovery_store, runner
from scripts.generate import GeneratorConfig, generate
from scripts.services import ServiceError
from tests.integration.helpers import create_run_topics, produce_log, run_env, run_to_end

RECORD = Path(__file__).with_name("state_format.json")
SCALARS = (str, bytes, int, float, bool, complex, type(None))
PLAIN = (dict, list, tuple, set, frozenset)


def snapshot_classes(value, out: dict[str, list[str]], seen: set[int]) -> None:
    """Into `out`: every class reachable from `value` other than the scalars and the plain
    containers, with its fields — a dataclass's in declaration order (some pickle by position:
    schemas/exchange.py), any other object's attributes and slots sorted."""
    if isinstance(value, SCALARS) or id(value) in seen:
        return
    seen.add(id(value))
    cls = type(value)
    if isinstance(value, np.ndarray):
        out.setdefault("numpy.ndarray", [])
        return
    if cls not in PLAIN:
        name = f"{cls.__module__}.{cls.__qualname__}"
        if dataclasses.is_dataclass(value):
            names = [f.name for f in dataclasses.fields(value)]
        elif isinstance(value, PLAIN + (collections.deque,)):
            names = []  # a container subclass (Counter, deque, …): its items below
        else:
            names = sorted(set(getattr(value, "__dict__", {})) | {
                s for c in cls.__mro__ for s in getattr(c, "__slots__", ()) if hasattr(value, s)})
        known = out.setdefault(name, names)
        if known != names:
            out[name] = known + sorted(set(names) - set(known))
        for field in names:
            snapshot_classes(getattr(value, field, None), out, seen)
    if isinstance(value, dict):
        for k, v in value.items():
            snapshot_classes(k, out, seen)
            snapshot_classes(v, out, seen)
    elif isinstance(value, PLAIN + (collections.deque,)):
        for v in value:
            snapshot_classes(v, out, seen)


def recorded_shape(recovery_dir) -> dict[str, dict[str, list[str]]]:
    """Step → the classes its snapshots hold in `recovery_dir` (`snapshot_classes`), outside the
    Kafka input's offsets."""
    (steps,) = recovery_store.store_rows(recovery_dir, ("SELECT DISTINCT step_id FROM snaps", ()))
    shape: dict[str, dict[str, list[str]]] = {}
    for (step,) in sorted(set(steps)):
        if step == recovery_store.KAFKA_INPUT_STEP:
            continue
        (rows,) = recovery_store.store_rows(recovery_dir, (recovery_store.SNAPSHOTS, (step,)))
        classes: dict[str, list[str]] = {}
        for _key, _epoch, change in rows:
            if change is not None:
                snapshot = pickle.loads(change)  # what the step's `snapshot` returned
                if isinstance(snapshot, bytes):
                    snapshot = pickle.loads(snapshot)
                snapshot_classes(snapshot, classes, set())
        shape[step.removeprefix(f"{recovery_store.FLOW}.")] = dict(sorted(classes.items()))
    return shape


@pytest.fixture(scope="module")
def drained(live, tmp_path_factory):
    """(env, recovery dir) of a drained run over a day of 80 users (every event type)."""
    import uuid
    unique = uuid.uuid4().hex[:10]
    env = run_env(live, unique, "format")
    settings = create_run_topics(env)
    events, _ = generate(GeneratorConfig(users=80, days=1, seed=13))
    produce_log(settings, events, 1)
    recovery_dir = tmp_path_factory.mktemp("format")
    assert run_to_end(settings, env, recovery_dir) == 0
    return settings, env, recovery_dir


def test_the_snapshots_hold_the_recorded_classes_and_fields(drained):
    _settings, _env, recovery_dir = drained
    shape = recorded_shape(recovery_dir)
    assert {"users", "items", "dedup", "notifications", "suggestions"} <= shape.keys(), shape.keys()
    assert any(_KeyedSnapshot.__name__ in name for c in shape.values() for name in c) or any(
        _PendingTimer.__name__ in name for c in shape.values() for name in c), "no wrapper seen"
    if os.environ.get("PERSONA_RECORD_STATE_FORMAT") == "1":
        RECORD.write_text(json.dumps({"state_format": STATE_FORMAT, "steps": shape}, indent=1,
                                     sort_keys=True) + "\n")
    record = json.loads(RECORD.read_text())
    assert record["state_format"] == STATE_FORMAT, (
        f"STATE_FORMAT is {STATE_FORMAT} but {RECORD.name} records format "
        f"{record['state_format']}: re-record it (module docstring)")
    changed = []
    for step in sorted(shape.keys() | record["steps"].keys()):
        now, then = shape.get(step, {}), record["steps"].get(step, {})
        for name in sorted(now.keys() | then.keys()):
            if now.get(name) != then.get(name):
                changed.append(f"{step}: {name}: {then.get(name, '(absent)')} → "
                               f"{now.get(name, '(absent)')}")
    # (a class or field only some runs reach would show here as absent: the log is seeded and
    # drained by one process, so the same states are reached every run)
    assert not changed, (
        "the classes or fields the workers snapshot changed:\n  " + "\n  ".join(changed[:20])
        + "\nIf older snapshots would no longer load, or would load into states that mean "
        "something else, bump schemas.snapshots.STATE_FORMAT; then re-record (module docstring).")


def test_a_directory_of_another_format_is_refused_before_any_worker_starts(drained):
    settings, env, recovery_dir = drained
    assert recovery_store.state_format_of(recovery_dir) == STATE_FORMAT
    marker = Path(recovery_dir) / recovery_store.MARKER
    kept = marker.read_text()

    def start():
        return runner.start(settings, None, tail=False, recovery_dir=str(recovery_dir),
                            env_extra=env, log=lambda m: None, metrics_port=0)
    try:
        marker.write_text(json.dumps({"state_format": STATE_FORMAT + 1}))
        with pytest.raises(ServiceError, match=f"holds worker state of format {STATE_FORMAT + 1}, "
                                               f"and this persona writes format {STATE_FORMAT}"):
            start()
        marker.write_text("{not json")
        with pytest.raises(ServiceError, match="is not a state format marker"):
            start()
    finally:
        marker.write_text(kept)
    marker.unlink()  # a directory made before the marker existed: resumed, and marked
    procs = start()
    assert all(p.wait(120) == 0 for p in procs)
    assert recovery_store.state_format_of(recovery_dir) == STATE_FORMAT
