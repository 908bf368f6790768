"""The foundation, end to end on the real broker and Redis: generated activity → Kafka → Bytewax
workers → Redis feeds that reflect the preferences planted in the generator."""

from __future__ import annotations

import random
import statistics

import orjson
import pytest

from reader import PersonaClient
from scripts.generate import GeneratorConfig, generate
from tests.integration.helpers import cleanup, feeds, isolated_env, run_pipeline


@pytest.fixture(scope="module")
def pipeline_run(live):
    import uuid

    import redis

    unique = uuid.uuid4().hex[:10]
    env = isolated_env(live, unique)
    events, truth = generate(GeneratorConfig(users=200, days=3, seed=11))
    settings = run_pipeline(env, [orjson.dumps(e) for e in events])
    client = redis.Redis.from_url(live[1])
    yield settings, client, events, truth
    cleanup(settings, client)


def planted_rank(feed: dict, planted: set[str], post_topics: dict) -> float | None:
    """Mean normalised position (0 = top, 1 = bottom) of the feed's planted-topic posts; None when
    the feed has no planted or no other posts (nothing to compare)."""
    items = feed["items"]
    hits = [i for i, it in enumerate(items) if planted & set(post_topics.get(it["post_id"], []))]
    if not hits or len(hits) == len(items):
        return None
    return sum(pos / (len(items) - 1) for pos in hits) / len(hits)


def test_feeds_reflect_planted_preferences(pipeline_run):
    settings, client, events, truth = pipeline_run
    written = feeds(settings, client)
    active = {e["user_id"] for e in events if e["type"] == "impression"}
    assert len(written) >= 0.9 * len(active), "every active user gets a feed"
    scored = [(f, set(truth.user_topics[u])) for u, f in written.items() if u in truth.user_topics]
    ranks = [r for f, planted in scored
             if (r := planted_rank(f, planted, truth.post_topics)) is not None]
    assert len(ranks) >= 50
    mean = sum(ranks) / len(ranks)
    # Chance: the same feeds in random order (a permutation test, seeded). The feeds must rank the
    # planted topics higher than every one of 200 shuffles, by 4 standard deviations.
    rng = random.Random(0)
    null = []
    for _ in range(200):
        shuffled = []
        for f, planted in scored:
            items = list(f["items"])
            rng.shuffle(items)
            r = planted_rank({"items": items}, planted, truth.post_topics)
            if r is not None:
                shuffled.append(r)
        null.append(sum(shuffled) / len(shuffled))
    chance, spread = statistics.fmean(null), statistics.stdev(null)
    print(f"planted-topic posts at mean normalised rank {mean:.3f} over {len(ranks)} feeds "
          f"(chance {chance:.3f} ± {spread:.3f})")
    assert mean < min(null) and mean < chance - 4 * spread, (
        f"planted-topic posts at mean normalised rank {mean:.3f}; chance {chance:.3f} ± {spread:.3f}")
    # and as well as the flow does: 0.267-0.308 over 13 runs in sessions 22-23 (mean 0.281, sd
    # 0.013); 0.35-0.40 when a 5 s reorder wait held whole users behind likes that overtook their
    # posts (docs/recovery.md "Item neighbours"), 0.35 with Kafka batches of 5,000
    assert mean < 0.32, f"planted-topic posts at mean normalised rank {mean:.3f} (expected < 0.32)"


def test_feeds_carry_scores_and_reasons(pipeline_run):
    settings, client, _, _ = pipeline_run
    written = feeds(settings, client)
    feed = next(f for f in written.values() if len(f["items"]) >= 5)
    scores = [it["score"] for it in feed["items"]]
    assert all(it["reasons"] for it in feed["items"]), "every served item says why"
    assert max(scores) > min(scores)
    assert len({it["post_id"] for it in feed["items"]}) == len(feed["items"])


def test_reader_pages_through_a_feed(pipeline_run):
    settings, client, _, _ = pipeline_run
    reader = PersonaClient(client, settings.redis.prefix)
    user, feed = next((u, f) for u, f in feeds(settings, client).items() if len(f["items"]) > 12)
    first = reader.feed(user, limit=5)
    second = reader.feed(user, limit=5, cursor=first.next_cursor)
    assert [i["post_id"] for i in first.items + second.items] == \
        [i["post_id"] for i in feed["items"][:10]]
    assert all(i["explanations"] for i in first.items)
    assert reader.feed("nobody-here").items == []
