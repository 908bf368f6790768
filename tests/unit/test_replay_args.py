"""`persona replay --topic` arguments: partition:offset lists and times (property tests)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scripts.replay import parse_offsets, parse_timestamp_ms


@given(st.dictionaries(st.integers(0, 999), st.integers(0, 2**62), min_size=1, max_size=20))
def test_offsets_round_trip(offsets):
    assert parse_offsets(",".join(f"{p}:{o}" for p, o in offsets.items())) == offsets


@pytest.mark.parametrize("text", ["", ",", "0", "0:", ":5", "a:1", "0:-1", "0:1,0:2", "0:1;1:2"])
def test_bad_offsets_say_what_is_expected(text):
    with pytest.raises(ValueError, match="partition"):
        parse_offsets(text)


@given(st.integers(0, 4102444800000))
def test_epoch_ms_and_iso_agree(ms):
    from datetime import UTC, datetime
    iso = datetime.fromtimestamp(ms // 1000, UTC).isoformat().replace("+00:00", "Z")
    assert parse_timestamp_ms(str(ms)) == ms
    assert parse_timestamp_ms(iso) == ms // 1000 * 1000


def test_a_time_without_zone_is_utc_and_garbage_is_refused():
    assert parse_timestamp_ms("1970-01-02T00:00:00") == 86_400_000
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_timestamp_ms("yesterday")
