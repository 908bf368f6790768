"""Offline evaluation: fair-tie metrics, readers, baselines, the prequential loop (and its leakage guard)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from operators.evaluation import (
    ExposureAccumulator,
    GlobalPopularity,
    ItemKNN,
    OnlineBPR,
    RankingAccumulator,
    ReadStats,
    Report,
    TiedRank,
    WindowedSeries,
    catalog_coverage,
    detect_format,
    evaluate,
    fold_exposures,
    gini,
    hit_at_k,
    ndcg_at_k,
    plot,
    print_table,
    rank_in,
    read_events,
    reciprocal_rank,
    tied_rank,
    top_k,
)
from operators.evaluation.metrics import harmonic
from schemas.codec import encode_event
from schemas.events import Event

ML100K = Path("/work/shared/datasets/movielens-100k")
LOG2_3 = math.log2(3)


def ev(
    n: int, type_: str, user: str, post: str | None = None, ts: int | None = None, **kw
) -> Event:
    return Event(
        event_id=f"e{n}",
        type=type_,
        ts=ts if ts is not None else 1_700_000_000_000 + n,
        user_id=user,
        post_id=post,
        **kw,
    )


def log(*specs: tuple[str, str, str | None]) -> list[Event]:
    return [ev(i, t, u, p) for i, (t, u, p) in enumerate(specs)]


# ----------------------------------------------------------------------------- metrics


def test_target_tied_with_three_others_at_the_top():
    rank = tied_rank(5.0, [5.0, 5.0, 5.0, 1.0, 0.0])
    assert (rank.greater, rank.ties) == (0, 3)
    assert rank == 2.5  # 1 + 0 + 3/2
    # uniform over positions 1..4; k=2 -> positions 1, 2 are hits
    assert hit_at_k(rank, 2) == pytest.approx(0.5)
    assert ndcg_at_k(rank, 2) == pytest.approx((1 + 1 / LOG2_3) / 4)
    assert reciprocal_rank(rank) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert hit_at_k(rank, 10) == 1.0
    assert ndcg_at_k(rank, 10) == pytest.approx((1 + 1 / LOG2_3 + 1 / 2 + 1 / math.log2(5)) / 4)


def test_ties_below_other_items():
    rank = TiedRank(greater=1, ties=2)  # uniform over positions 2, 3, 4
    assert rank == 3.0
    assert hit_at_k(rank, 1) == 0.0
    assert hit_at_k(rank, 2) == pytest.approx(1 / 3)
    assert hit_at_k(rank, 3) == pytest.approx(2 / 3)
    assert ndcg_at_k(rank, 2) == pytest.approx((1 / LOG2_3) / 3)
    assert reciprocal_rank(rank) == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)


def test_untied_and_deterministic_and_unserved_ranks():
    rank = tied_rank(3.0, [9.0, 4.0, 1.0])
    assert (rank.greater, rank.ties) == (2, 0)
    assert hit_at_k(rank, 3) == 1.0 and hit_at_k(rank, 2) == 0.0
    assert ndcg_at_k(rank, 3) == pytest.approx(0.5)  # 1/log2(4)
    assert reciprocal_rank(rank) == pytest.approx(1 / 3)
    # a plain float is a deterministic position
    assert hit_at_k(3.0, 3) == 1.0 and ndcg_at_k(3.0, 3) == pytest.approx(0.5)
    assert reciprocal_rank(4.0) == 0.25
    # not served: a miss everywhere
    for fn in (lambda r: hit_at_k(r, 10), lambda r: ndcg_at_k(r, 10), reciprocal_rank):
        assert fn(math.inf) == 0.0


def test_harmonic_numbers_and_large_tie_groups():
    for n in (1, 2, 63, 64, 65, 1000, 12345):
        assert harmonic(n) == pytest.approx(math.fsum(1 / i for i in range(1, n + 1)), rel=1e-13)
    rank = TiedRank(greater=10, ties=5000)
    expected = np.mean(1.0 / np.arange(11, 5012))
    assert reciprocal_rank(rank) == pytest.approx(expected, rel=1e-10)
    assert hit_at_k(rank, 10) == 0.0 and hit_at_k(rank, 20) == pytest.approx(10 / 5001)


def test_rank_in_and_top_k_over_candidate_masks():
    scores = np.array([3.0, 5.0, 5.0, 1.0, 5.0, 0.0])
    mask = np.array([True, True, False, True, True, True])
    rank = rank_in(scores, mask, 4)
    assert (rank.greater, rank.ties) == (0, 1)  # item 2 is not a candidate
    assert rank_in(scores, mask, 2) == math.inf
    assert top_k(scores, mask, 3).tolist() == [1, 4, 0]  # ties broken by index
    assert top_k(scores, None, 2).tolist() == [1, 2]
    assert top_k(scores, mask, 10).tolist() == [1, 4, 0, 3, 5]
    assert top_k(scores, np.zeros(6, dtype=bool), 3).tolist() == []


def test_gini_and_coverage():
    assert gini([1, 1, 1, 1]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 4]) == pytest.approx(0.75)  # (n-1)/n for one item taking everything
    assert gini([4], catalog_size=4) == pytest.approx(0.75)
    assert gini([]) == 0.0
    assert gini([1, 3]) == pytest.approx(0.25)
    assert catalog_coverage([["a", "b"], ["b", "c"]], 10) == pytest.approx(0.3)


def test_accumulators():
    acc = RankingAccumulator(k=2)
    acc.update(TiedRank(0, 3))
    acc.update(1.0)
    acc.update(math.inf)
    r = acc.result()
    assert r.n == 3 and r.not_served == 1
    assert r.hr == pytest.approx((0.5 + 1 + 0) / 3)
    assert r.mrr == pytest.approx(((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4 + 1) / 3)
    exp = ExposureAccumulator()
    exp.update(["a", "b"])
    exp.update(["a", "c"])
    e = exp.result(catalog_size=4)
    assert e.coverage == pytest.approx(0.75) and e.gini == pytest.approx(gini([2, 1, 1, 0]))


def test_windowed_series_slides():
    series = WindowedSeries(k=1, window=2, step=1)
    series.update((1.0, 1.0, 1.0), ["a"], ts=10, catalog_size=4)
    series.update((0.0, 0.0, 0.5), ["b"], ts=20, catalog_size=4)
    series.update((0.0, 0.0, 0.0), ["b"], ts=30, catalog_size=4)
    assert [v for _, _, v in series.points["hr"]] == [1.0, 0.5, 0.0]
    assert [ts for _, ts, _ in series.points["mrr"]] == [10, 20, 30]
    assert [v for _, _, v in series.points["coverage"]] == [0.25, 0.5, 0.25]  # "a" left the window


# ----------------------------------------------------------------------------- readers


def test_read_udata_with_genres(tmp_path: Path):
    (tmp_path / "u.data").write_text("1\t10\t5\t100\n2\t20\t3\t50\n3\t10\t4\t50\n1\t20\t2\t100\n")
    (tmp_path / "u.genre").write_text("unknown|0\nAction|1\nComedy|2\n\n")
    (tmp_path / "u.item").write_text(
        "10|Heat (1995)|01-Jan-1995||http://x|0|1|1\n20|Clueless (1995)|01-Jan-1995||http://y|0|0|1\n",
        encoding="latin-1",
    )
    stats = ReadStats()
    events = list(read_events(tmp_path / "u.data", stats))
    got = [(e.type, e.user_id, e.post_id, e.ts) for e in events]
    assert got == [  # stable time order; post_created right before the item's first rating
        ("post_created", "studio:m20", "m20", 50_000),
        ("impression", "u2", "m20", 50_000),
        ("post_created", "studio:m10", "m10", 50_000),
        ("like", "u3", "m10", 50_000),
        ("like", "u1", "m10", 100_000),
        ("impression", "u1", "m20", 100_000),
    ]
    assert events[2].topics == ("Action", "Comedy") and events[0].topics == ("Comedy",)
    assert stats.format == "ml-udata" and stats.events == 6 and stats.invalid == 0
    assert [e.event_id for e in read_events(tmp_path)] == [e.event_id for e in events]  # dir + ids
    assert len({e.event_id for e in events}) == len(events)


def test_read_udata_without_item_file_and_with_bad_lines(tmp_path: Path):
    (tmp_path / "u1.base").write_text("1\t10\t5\t100\ngarbage\n")
    stats = ReadStats()
    events = list(read_events(tmp_path / "u1.base", stats))
    assert [e.type for e in events] == ["post_created", "like"]
    assert events[0].topics is None and events[0].user_id == "studio:m10"
    assert stats.invalid == 1


def test_read_ratings_csv_with_movies(tmp_path: Path):
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n7,1,3.5,200\n8,2,4.0,100\n7,2,4.5,300\n"
    )
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,"Toy Story, The (1995)",Adventure|Animation|Children\n'
        "2,Jumanji (1995),(no genres listed)\n"
    )
    events = list(read_events(tmp_path))
    assert [(e.type, e.user_id, e.post_id, e.ts) for e in events] == [
        ("post_created", "studio:m2", "m2", 100_000),
        ("like", "u8", "m2", 100_000),
        ("post_created", "studio:m1", "m1", 200_000),
        ("impression", "u7", "m1", 200_000),  # 3.5 < 4
        ("like", "u7", "m2", 300_000),
    ]
    assert events[2].topics == ("Adventure", "Animation", "Children") and events[0].topics == ()
    assert detect_format(tmp_path / "ratings.csv")[0] == "ml-csv"


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_read_jsonl_skips_and_counts_invalid_lines(tmp_path: Path, name: str):
    good = log(("post_created", "a", "p1"), ("like", "b", "p1"), ("follow", "b", None))
    good[2].target_id = "a"
    lines = [
        encode_event(good[0]),
        b"{not json",
        encode_event(good[1]),
        b"",
        b'{"event_id":"x","type":"teleport","ts":1700000000000,"user_id":"u"}',
        encode_event(good[2]),
    ]
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    stats = ReadStats()
    events = list(read_events(path, stats))
    assert events == good
    assert stats.format == "jsonl" and stats.invalid == 2 and stats.events == 3
    assert any("teleport" in r for r in stats.reasons)


# ----------------------------------------------------------------------------- baselines

TINY = log(
    ("post_created", "studio", "a"),
    ("post_created", "studio", "b"),
    ("post_created", "studio", "c"),
    ("post_created", "studio", "d"),
    ("like", "u1", "a"),
    ("like", "u1", "b"),
    ("like", "u2", "a"),
    ("like", "u2", "c"),
    ("like", "u3", "b"),
)


def learned(model, events):
    for e in events:
        model.learn_one(e)
    return model


def test_global_popularity_ranks_untouched_items_by_likes():
    pop = learned(GlobalPopularity(), TINY)  # likes: a=2, b=2, c=1, d=0
    rank, served = pop.score_target("u3", "a", 0, k=3)
    assert (rank.greater, rank.ties) == (0, 0)  # b is touched by u3: not a candidate
    assert served == ["a", "c", "d"]
    rank, _ = pop.score_target("u3", "b", 0, k=3)
    assert rank == math.inf  # touched items are never served
    rank, served = pop.score_target("new-user", "a", 0, k=2)
    assert (rank.greater, rank.ties) == (0, 1) and served == ["a", "b"]
    learned(pop, log(("impression", "u3", "c"), ("post_deleted", "studio", "d")))
    assert pop.score_target("u3", "a", 0, k=3)[1] == ["a"]


def test_item_knn_cosine_scores():
    knn = learned(ItemKNN(initial_capacity=2), TINY)  # also exercises growth of the dense matrix
    # co(a,b)=1 (u1), co(a,c)=1 (u2); pop a=2, b=2, c=1. u3 liked b:
    # score(a) = 1/sqrt(2*2) = 0.5, score(c) = score(d) = 0
    assert knn.scores("u3").tolist() == pytest.approx([0.5, 0.0, 0.0, 0.0])
    rank, served = knn.score_target("u3", "a", 0, k=2)
    assert rank == 1.0 and served == ["a", "c"]
    rank, _ = knn.score_target("u3", "c", 0, k=2)
    assert (rank.greater, rank.ties) == (1, 1)  # tied with d
    # u1 liked a, b: score(c) = co(c,a)/sqrt(1*2) + co(c,b)/sqrt(1*2) = 1/sqrt(2)
    assert knn.scores("u1")[2] == pytest.approx(1 / math.sqrt(2))
    assert knn.scores("nobody").tolist() == [0.0] * 4


def test_online_bpr_learns_two_tastes_and_is_deterministic():
    """Two groups of 30 users like random items of disjoint halves of 20 items: every user's own
    half scores higher, and a newcomer's single like puts the rest of that half on top."""
    import random

    rnd = random.Random(3)
    events = [("post_created", "studio", f"p{i}") for i in range(20)]
    for _ in range(20):
        for u in range(60):
            events.append(("like", f"u{u}", f"p{rnd.randrange(10) + (0 if u < 30 else 10)}"))
    events += [("like", "newA", "p3"), ("like", "newB", "p13")]

    def trained() -> OnlineBPR:
        return learned(OnlineBPR(dim=16, lr=0.05, negatives=16, seed=3), log(*events))

    bpr = trained()
    for u in range(60):
        s = bpr.scores(f"u{u}")
        assert (s[:10].mean() > s[10:].mean()) == (u < 30), u
    assert all(int(p[1:]) < 10 for p in bpr.recommend("newA", k=5))
    assert all(int(p[1:]) >= 10 for p in bpr.recommend("newB", k=5))
    assert bpr.scores("u0").tolist() == trained().scores("u0").tolist()  # seeded
    assert bpr.scores("nobody").tolist() == bpr._b[:20].tolist()  # no positive yet: the biases


def test_repeated_positive_counts_once():
    pop = learned(GlobalPopularity(), TINY + log(("comment", "u1", "a"), ("share", "u1", "a")))
    assert pop.scores("x")[0] == 2.0


# ----------------------------------------------------------------------------- prequential loop


class Cheater:
    """Scores perfectly any (user, item) it has already been shown."""

    name = "cheater"

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def learn_one(self, event: Event) -> None:
        if event.post_id is not None:
            self.seen.add((event.user_id, event.post_id))

    def score_target(self, user_id, target, now_ms, k):
        if (user_id, target) in self.seen:
            return TiedRank(0, 0), [target]
        return math.inf, []


class Recorder:
    def __init__(self, name: str, calls: list) -> None:
        self.name, self.calls = name, calls

    def learn_one(self, event: Event) -> None:
        self.calls.append(("learn", self.name, event.event_id))

    def score_target(self, user_id, target, now_ms, k):
        self.calls.append(("score", self.name, target))
        return math.inf, []


LOOP_LOG = TINY + log(
    ("impression", "u3", "c"),
    ("like", "u3", "c"),  # touched before (impression): not a target
    ("like", "u3", "a"),  # target
    ("like", "u4", "a"),  # u4 has no history: not a target
)


def test_no_leakage_score_strictly_before_learn():
    cheater = Cheater()
    report = evaluate(TINY, [cheater], k=1)
    r = report.result("cheater")
    assert r.n_targets == 2 and r.hr == 0.0 and r.not_served == 2  # u1->b, u2->c
    # the cheater really would be perfect had it learnt the event first
    assert all(cheater.score_target(e.user_id, e.post_id, 0, 1)[0] == 1.0 for e in TINY[5:])


def test_every_recommender_scores_before_any_learns_the_event():
    calls: list = []
    evaluate(TINY, [Recorder("r1", calls), Recorder("r2", calls)], k=3)
    i = calls.index(("learn", "r1", TINY[5].event_id))
    assert calls[i - 2 : i] == [("score", "r1", "b"), ("score", "r2", "b")]
    assert calls[i + 1] == ("learn", "r2", TINY[5].event_id)


def test_targets_and_skips():
    report = evaluate(LOOP_LOG, [GlobalPopularity(), ItemKNN()], k=2, window=2, step=1)
    # u1->b, u2->c, u3->a are targets (u1->a, u2->a, u3->b, u4->a: no earlier history)
    assert report.n_targets == 3 and report.n_positives == 8
    assert report.skipped_no_history == 4 and report.skipped_touched == 1
    assert report.catalog_size == 4
    for name in ("baseline:popularity", "baseline:item-knn"):
        r = report.result(name)
        # u1->b: nothing co-occurs yet / a is touched; b, c, d tie -> hit 2/3
        # u2->c: b scores above (pop 1 / co(a,b)), c ties with d -> hit 1/2
        # u3->a: a is the best untouched item (pop 2 / co with b and c) -> hit 1
        assert r.n_targets == 3 and r.hr == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
        assert [v for _, _, v in r.series["hr"]] == pytest.approx(
            [2 / 3, (2 / 3 + 1 / 2) / 2, 0.75]
        )


def test_fold_exposures_turns_a_served_post_into_a_target():
    served = TINY + log(
        ("impression", "u3", "c"),  # led to the like below: folded into it
        ("dwell", "u3", "c"),  # also before the first engagement: folded
        ("impression", "u3", "d"),  # never engaged: stays an impression
        ("like", "u3", "c"),  # now a target
        ("impression", "u3", "c"),  # after the engagement: stays
        ("comment", "u3", "c"),  # a repeat, not a target
    )
    folded = fold_exposures(served)
    kept = [(e.type, e.post_id) for e in folded[len(TINY):]]
    assert kept == [("impression", "d"), ("like", "c"), ("impression", "c"), ("comment", "c")]
    assert fold_exposures(TINY) == TINY  # a ratings log (no impression before a like) is unchanged
    before = evaluate(served, [GlobalPopularity()], k=2)
    after = evaluate(folded, [GlobalPopularity()], k=2)
    assert after.n_targets == before.n_targets + 1
    assert after.skipped_touched == before.skipped_touched - 1  # the comment stays a repeat


def test_report_json_table_and_plot(tmp_path: Path):
    report = evaluate(LOOP_LOG, [GlobalPopularity(), ItemKNN(), Cheater()], k=2, window=2, step=1)
    again = Report.from_json(report.to_json())
    assert again == report
    assert report.ratio_to_best_baseline("baseline:popularity", "hr") <= 1.0
    assert report.ratio_to_best_baseline("cheater", "hr") == 0.0
    console = Console(record=True, width=160)
    print_table(report, console)
    text = console.export_text()
    assert "HR@2" in text and "Gini" in text and "÷bl" in text and "cheater" in text
    out = plot(report, tmp_path / "plots" / "eval.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not (ML100K / "u.data").is_file(), reason="MovieLens 100K not available")
def test_reference_numbers_on_movielens_100k():
    report = evaluate(read_events(ML100K), [GlobalPopularity(), ItemKNN(), OnlineBPR()], k=10)
    assert report.n_targets == 54_802
    assert report.result("baseline:popularity").hr == pytest.approx(0.098, abs=0.02)
    assert report.result("baseline:item-knn").hr == pytest.approx(0.156, abs=0.02)
    assert report.result("baseline:bpr-mf").hr == pytest.approx(0.16, abs=0.02)
