"""The reader's feed rendering and request checks, without services: the page renderer shared by
the Python client and the HTTP endpoint, the pointer cache, and the endpoint's hand-written bounds
(the same as the OpenAPI route declares)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reader.client import ActivePointer, InvalidCursor, feed_page
from reader.feed_endpoint import LIMIT_MAX, FeedEndpoint, _check
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
    assert _check("u" * 128, {"cursor": "c" * 200}) is None
    assert _check("u" * 129, {})["loc"] == ["path", "user_id"]
    assert _check("u1", {"cursor": "c" * 201})["loc"] == ["query", "cursor"]


def test_the_endpoint_takes_only_get_of_one_feed_path_segment():
    endpoint = FeedEndpoint("redis://127.0.0.1:1/0", {}, "p", metrics=None)

    def takes(method, path):
        return endpoint.handles({"method": method, "path": path})
    assert takes("GET", "/feed/u1") and takes("GET", "/feed/a b")
    assert not takes("POST", "/feed/u1") and not takes("GET", "/feed/")
    assert not takes("GET", "/feed/u1/x") and not takes("GET", "/feeds/u1")
