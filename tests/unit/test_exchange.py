"""The values that cross Bytewax workers pickle as (class, field values): equal after a round
trip, smaller than the default, and snapshots pickled the default way still load."""

from __future__ import annotations

import pickle

import pytest

from operators.item_stats import ItemView
from operators.notifications.candidates import Candidate
from operators.user_state import Example
from schemas import Event
from schemas.erasure import Command

VALUES = [
    Event("e1", "like", 1_767_225_600_000, "u1", post_id="p1", topics=("t1", "t2"), position=3),
    Command("forget", "u2", "u1", ("p1", "p2")),
    ItemView("p1", "u1", ("t1",), None, 5, -3.5, 2.0, 7, False),
    Candidate("n1", "u2", "like", "u1", 5, "like:p1", post_id="p1"),
    Example({"a": 1.0}, True, 0.5, True),
]


def _pickled_the_default_way(value) -> bytes:
    """As before `pickled_by_fields`: the dataclass's own state by field names."""
    cls = type(value)
    saved = cls.__reduce__
    try:
        del cls.__reduce__
        return pickle.dumps(value, protocol=5)
    finally:
        cls.__reduce__ = saved


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_a_crossing_value_round_trips_by_its_fields(value):
    raw = pickle.dumps(value, protocol=5)
    assert pickle.loads(raw) == value
    assert len(raw) < len(_pickled_the_default_way(value))


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_a_value_pickled_the_default_way_still_loads(value):
    assert pickle.loads(_pickled_the_default_way(value)) == value
