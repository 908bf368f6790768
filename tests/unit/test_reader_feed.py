"""The reader's feed rendering and request checks, without services: the page renderer shared by
the Python client and the HTTP endpoint, the pointer cache, and the endpoint's hand-written bounds
(the same as the OpenAPI route declares)."""

from __future__ import annotations

import base64
import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reader.client import (
    SERVED_MAX,
    ActivePointer,
    InvalidCursor,
    decode_cursor,
    encode_cursor,
    feed_page,
)
from reader.feed_endpoint import LIMIT_MAX, MAX_CURSOR, FeedEndpoint, _check
from schemas import Feed, FeedItem, Reason


def stored(n: int) -> bytes:
    return Feed("u1", 42, tuple(FeedItem(f"p{i}", "a1", 1.0 - i / 100,
                                         (Reason("in_network", "a1"), Reason("trending")))
                                for i in range(n)), arms={"ranking": "b"}).encode()


def test_pages_follow_the_cursor_to_the_end_with_explanations():
    raw = stored(45)
    seen, cursor = [], None
    while True:
        page = feed_page("u1", "3", raw, 20, cursor)
        seen += [i["post_id"] for i in page.items]
        assert all(i["explanations"] == ["Because you follow a1", "Trending now"]
                   for i in page.items)
        assert page.version == "3" and page.generated_at == 42 and page.arms == {"ranking": "b"}
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"p{i}" for i in range(45)]


def test_a_missing_feed_is_an_empty_page_and_a_bad_cursor_is_refused():
    assert feed_page("nobody", "1", None, 20, None).to_dict() == {
        "user_id": "nobody", "version": "1", "generated_at": None, "arms": {}, "items": [],
        "next_cursor": None}
    with pytest.raises(InvalidCursor):
        feed_page("u1", "1", stored(3), 20, "garbage")


def test_the_pointer_is_read_again_once_its_ttl_has_passed():
    pointer = ActivePointer(ttl_s=0.05)
    assert pointer.due()
    assert pointer.update(b"7") == "7" and not pointer.due()
    time.sleep(0.06)
    assert pointer.due() and pointer.update(None) == "7"  # lost with Redis's data: kept
    assert ActivePointer().update(None) == "1"  # no pointer yet: version 1


@settings(deadline=None)  # a shared, busy machine stalls single examples
@given(st.text(max_size=10))
def test_limit_values_outside_the_bounds_are_refused(text):
    problem = _check("u1", {"limit": text})
    try:
        ok = 1 <= int(text) <= LIMIT_MAX
    except ValueError:
        ok = False
    assert (problem is None) == ok
    if problem:
        assert problem["loc"] == ["query", "limit"]


def test_user_id_and_cursor_lengths_are_bounded():
    assert _check("u" * 128, {"cursor": "c" * MAX_CURSOR}) is None
    assert _check("u" * 129, {})["loc"] == ["path", "user_id"]
    assert _check("u1", {"cursor": "c" * (MAX_CURSOR + 1)})["loc"] == ["query", "cursor"]
    deepest = encode_cursor(b"f" * 8, 10**6, tuple(range(SERVED_MAX + 50)))
    assert len(deepest) <= MAX_CURSOR and len(decode_cursor(deepest).served) == SERVED_MAX


def _value(ids: list[str], generated_at: int = 42) -> bytes:
    return Feed("u1", generated_at, tuple(FeedItem(p, "a1", 1.0, (Reason("trending"),))
                                          for p in ids)).encode()


def _ids(page) -> list[str]:
    return [i["post_id"] for i in page.items]


def test_a_rank_between_pages_neither_skips_nor_repeats_posts():
    first = feed_page("u1", "1", _value([f"p{i}" for i in range(60)]), 20, None)
    assert _ids(first) == [f"p{i}" for i in range(20)]
    # ranked again without the 20 shown (impressions): the next page is the new top, not p40..
    dropped = feed_page("u1", "1", _value([f"p{i}" for i in range(20, 60)]), 20,
                        first.next_cursor)
    assert _ids(dropped) == [f"p{i}" for i in range(20, 40)]
    # five new posts ranked in on top: shown next, and none of the 20 shown again
    topped = feed_page("u1", "1", _value([f"n{i}" for i in range(5)]
                                         + [f"p{i}" for i in range(60)]), 20, first.next_cursor)
    assert _ids(topped) == [f"n{i}" for i in range(5)] + [f"p{i}" for i in range(20, 35)]
    # a version switch between pages: the new version's feed, less what was shown
    switched = feed_page("u1", "2", _value([f"p{i}" for i in range(60)], 7), 20,
                         first.next_cursor)
    assert _ids(switched) == [f"p{i}" for i in range(20, 40)] and switched.version == "2"


def test_a_cursor_of_the_format_before_still_pages():
    legacy = base64.urlsafe_b64encode(orjson.dumps([42, 20])).decode().rstrip("=")
    raw = _value([f"p{i}" for i in range(30)])
    assert _ids(feed_page("u1", "1", raw, 5, legacy)) == [f"p{i}" for i in range(20, 25)]
    newer = _value([f"p{i}" for i in range(30)], generated_at=43)  # ranked since: from the top
    assert _ids(feed_page("u1", "1", newer, 5, legacy)) == [f"p{i}" for i in range(5)]


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="limit must be at least 1"):
        feed_page("u1", "1", _value(["p0"]), 0, None)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.lists(st.integers(0, 40), max_size=40, unique=True), min_size=1, max_size=6),
       st.integers(1, 12))
def test_paging_over_changing_feeds_never_repeats_and_ends_with_all_of_the_last(values, limit):
    """Whatever the stored feed becomes between the pages of one scroll (`values`, one per page,
    the last one kept), no post is shown twice, and when the scroll ends every post of the value
    its last page was cut from has been shown."""
    shown: list[str] = []
    cursor, page_no = None, 0
    while True:
        ids = values[min(page_no, len(values) - 1)]
        page = feed_page("u1", "1", _value([f"p{i}" for i in ids]), limit, cursor)
        shown += _ids(page)
        page_no += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(shown) == len(set(shown)), shown
    assert {f"p{i}" for i in ids} <= set(shown)


def test_the_endpoint_takes_only_get_of_one_feed_path_segment():
    endpoint = FeedEndpoint("redis://127.0.0.1:1/0", {}, "p", metrics=None)

    def takes(method, path):
        return endpoint.handles({"method": method, "path": path})
    assert takes("GET", "/feed/u1") and takes("GET", "/feed/a b")
    assert not takes("POST", "/feed/u1") and not takes("GET", "/feed/")
    assert not takes("GET", "/feed/u1/x") and not takes("GET", "/feeds/u1")
