"""Seeded synthetic social activity with planted preferences (schema v1 events + ground truth).

Every user gets 2-3 liked topics, 1-2 disliked topics and a few favourite authors (the planted
`Truth`); the simulated activity is drawn so that these preferences are learnable from the stream:
posts in a user's topics are liked several times more often than others, favourite authors more still.

    cfg = GeneratorConfig(users=500, days=7, seed=7)
    events, truth = generate(cfg)              # wire dicts sorted by (ts, sequence), all valid v1
    write_log("data/events.jsonl.gz", events, truth)   # + data/events.jsonl.gz.truth.json
    for raw in read_log("data/events.jsonl.gz"): ...   # raw lines, e.g. to produce to Kafka

For large configurations (`users=100_000`), stream instead of materialising the list:

    stream, truth = generate_stream(cfg)       # same events as `generate`, constant memory
    write_log(path, stream, truth)              # or generate_log(cfg, path) -> counts per type

How the world is built (all randomness from one `numpy.random.Generator(seed)`; no wall clock, no
Python `hash()`; the output is byte-identical for a given config):

* users `u0001..` are created at t=0 (`user_created` with a noisy subset of their topics as declared
  interests, sometimes empty, and an IANA timezone); activity level is lognormal, with a diurnal
  profile in local time;
* creators: a power-law subset of users writes most posts; each creator has 1-3 specialty topics and
  posts with 1-3 topics, mostly specialties, some in a group;
* follow graph (5-30 follows per user): batched preferential attachment weighted by creator fitness
  (a few accounts get most followers); 40% of the follows go to creators of the follower's topics,
  25% to uniformly picked "friends" (often followed back); favourite authors are followed early;
  later follows, unfollows and a few blocks/mutes are spread over the timeline;
* sessions: a feed of `feed_size` posts mixing followed authors' recent posts and globally
  recent/popular ones, never showing a user the same post twice → `impression` (surface "feed",
  position); engagement probability
  sigmoid(base + topic bonus + favourite-author bonus + popularity + quality - position) gives
  `like` (most common), `click` (+`dwell`), `comment`, `share`; disliked topics give `hide`/`report`;
* also notifications, direct messages to followees, group joins/leaves, topic searches (with
  search-surface impressions and clicks), a few `post_deleted`, and a couple of `user_deleted` at the
  end (nothing is emitted for a deleted user or post afterwards).
* `notification_opened`/`dismissed` name the newest notification candidate the decision code made
  for the user (ids derived by `operators.notifications.candidates` itself, so the flow learns
  from them; `n…` ids only before any). The planted notification behaviour is in the truth only
  (`plant_notification_behaviour`, its own RNG stream): the kinds each user opens and their active
  local hours, for closed-loop evaluation.

`malformed_lines(n, seed)` returns invalid payloads (with their kind) for dead-letter tests;
`write_log(..., malformed_fraction=f)` interleaves them into a log.
"""

from __future__ import annotations

import gzip
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson

from operators.notifications.candidates import notification_messages
from schemas.events import SCHEMA_VERSION, Event

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
_INF = np.iinfo(np.int64).max // 4  # "never" for deletion / unfollow times

# (IANA name, UTC offset in hours in January) — a small, realistic spread.
TIMEZONES: tuple[tuple[str, float], ...] = (
    ("America/Los_Angeles", -8.0),
    ("America/New_York", -5.0),
    ("America/Sao_Paulo", -3.0),
    ("Europe/London", 0.0),
    ("Europe/Paris", 1.0),
    ("Africa/Lagos", 1.0),
    ("Asia/Kolkata", 5.5),
    ("Asia/Tokyo", 9.0),
    ("Australia/Sydney", 11.0),
)
_TZ_WEIGHTS = np.array([0.14, 0.2, 0.08, 0.12, 0.14, 0.06, 0.1, 0.08, 0.08])

TOPIC_NAMES: tuple[str, ...] = (
    "music", "sports", "cooking", "travel", "technology", "gaming", "fashion", "fitness",
    "photography", "movies", "books", "science", "politics", "finance", "art", "pets",
    "gardening", "cars", "comedy", "education", "health", "history", "anime", "crypto",
    "parenting", "diy", "space", "football", "basketball", "wine",
)  # fmt: skip

# Relative activity by local hour (mean 1 after normalisation): quiet nights, evening peak.
_HOURLY = np.array(
    [0.35, 0.2, 0.12, 0.1, 0.1, 0.15, 0.35, 0.7, 0.95, 1.0, 1.0, 1.1,
     1.25, 1.15, 1.0, 1.0, 1.1, 1.3, 1.5, 1.75, 1.9, 1.8, 1.4, 0.8]
)  # fmt: skip
_HOURLY = _HOURLY / _HOURLY.mean()

# Engagement model (logit scale). Tuned so that ~8-9% of feed impressions are liked, posts in a user's
# planted topics ~25% and other posts ~3% (about 9x), favourite authors' posts ~4x the others.
BASE_LOGIT = -3.7
TOPIC_BONUS = 2.3
AUTHOR_BONUS = 1.1
POPULARITY_BONUS = 0.35
QUALITY_SCALE = 0.45
POSITION_DECAY = 0.015

FOLLOW_RECENT_MS = 72 * HOUR_MS  # followed authors' posts shown if younger than this
GLOBAL_RECENT_MS = 48 * HOUR_MS  # global pool: posts younger than this
CHUNK_MS = HOUR_MS  # simulation step (state such as popularity is updated between steps)

# Event kinds (internal, columnar) -> wire type.
K_USER_CREATED, K_USER_DELETED, K_POST_CREATED, K_POST_DELETED = 0, 1, 2, 3
K_FOLLOW, K_UNFOLLOW, K_BLOCK, K_MUTE = 4, 5, 6, 7
K_IMP_FEED, K_IMP_SEARCH, K_CLICK, K_LIKE, K_COMMENT, K_SHARE, K_HIDE, K_REPORT, K_DWELL = range(
    8, 17
)
K_MESSAGE, K_GROUP_JOINED, K_GROUP_LEFT, K_SEARCH, K_NOTIF_OPENED, K_NOTIF_DISMISSED = range(17, 23)
_NOTIFYING_KINDS = frozenset({K_LIKE, K_COMMENT, K_SHARE, K_FOLLOW, K_MESSAGE})  # make candidates
KIND_TYPES: tuple[str, ...] = (
    "user_created", "user_deleted", "post_created", "post_deleted",
    "follow", "unfollow", "block", "mute",
    "impression", "impression", "click", "like", "comment", "share", "hide", "report", "dwell",
    "message_sent", "group_joined", "group_left", "search",
    "notification_opened", "notification_dismissed",
)  # fmt: skip
_POST_ACTION_LO, _POST_ACTION_HI = K_IMP_FEED, K_DWELL  # inclusive range of post-action kinds
_USER_TARGET_KINDS = (K_FOLLOW, K_UNFOLLOW, K_BLOCK, K_MUTE)


@dataclass(frozen=True)
class GeneratorConfig:
    users: int = 500
    topics: int = 20
    days: float = 7.0
    posts_per_user_per_day: float = 0.5  # only "creators" post much; power-law activity
    sessions_per_user_per_day: float = 3.0
    feed_size: int = 20  # impressions per session
    seed: int = 7
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    malformed_fraction: float = 0.0  # fraction of extra raw lines that are invalid (for DLQ tests)
    # Plant one experiment arm as better: (config.experiments.Experiment, arm name, logit lift).
    # Users that `operators.experiments.assign` puts in that arm get `lift` added to their engagement
    # logit, so `persona experiments report` must find the arm better. None: nothing planted.
    planted_arm: tuple | None = None

    def validate(self) -> None:
        if self.users < 1:
            raise ValueError(f"users must be >= 1, got {self.users}")
        if self.topics < 1:
            raise ValueError(f"topics must be >= 1, got {self.topics}")
        if not self.days > 0:
            raise ValueError(f"days must be > 0, got {self.days}")
        if self.posts_per_user_per_day < 0 or self.sessions_per_user_per_day < 0:
            raise ValueError("posts_per_user_per_day and sessions_per_user_per_day must be >= 0")
        if self.feed_size < 0:
            raise ValueError(f"feed_size must be >= 0, got {self.feed_size}")
        if not 0.0 <= self.malformed_fraction < 1.0:
            raise ValueError(f"malformed_fraction must be in [0, 1), got {self.malformed_fraction}")
        if self.start_ms < 946_684_800_000:
            raise ValueError("start_ms must be epoch milliseconds after 2000-01-01")
        if self.planted_arm is not None:
            experiment, arm, lift = self.planted_arm
            if arm not in [a.name for a in experiment.arms]:
                raise ValueError(f"planted arm {arm!r} is not an arm of experiment "
                                 f"{experiment.name!r} ({[a.name for a in experiment.arms]})")
            if not -5.0 <= lift <= 5.0:
                raise ValueError(f"planted lift must be in [-5, 5] (logit), got {lift}")


@dataclass
class Truth:
    """The planted ground truth, saved next to the log (`<log>.truth.json`) for tests and evaluation."""

    user_topics: dict[str, list[str]]  # each user's 2-3 liked topics
    user_authors: dict[str, list[str]]  # authors each user especially likes (a few)
    post_topics: dict[str, list[str]]
    post_author: dict[str, str]
    user_disliked: dict[str, list[str]] = field(default_factory=dict)  # hide/report these topics
    topic_names: dict[str, str] = field(default_factory=dict)  # topic id -> search query text
    config: dict = field(default_factory=dict)  # the GeneratorConfig that produced the log
    # Planted notification behaviour (plant_notification_behaviour): P(open) per notification kind,
    # and the [start, end) local hours when the user reads notifications (P(open) x 0.25 outside).
    notif_open: dict[str, dict[str, float]] = field(default_factory=dict)
    notif_hours: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes | str) -> Truth:
        obj = orjson.loads(data)
        return cls(
            user_topics=obj["user_topics"],
            user_authors=obj["user_authors"],
            post_topics=obj["post_topics"],
            post_author=obj["post_author"],
            user_disliked=obj.get("user_disliked", {}),
            topic_names=obj.get("topic_names", {}),
            config=obj.get("config", {}),
            notif_open=obj.get("notif_open", {}),
            notif_hours=obj.get("notif_hours", {}),
        )


# ------------------------------------------------------------------------------------------- helpers


def _width(n: int, minimum: int) -> int:
    return max(minimum, len(str(n)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _sample_rows_without_replacement(
    rng: np.random.Generator, n_rows: int, weights: np.ndarray, k: np.ndarray
) -> np.ndarray:
    """Per row, k[row] distinct columns drawn ∝ weights (Gumbel top-k). Returns (n_rows, max k), -1 pad."""
    n_cols = weights.shape[0]
    kmax = int(k.max()) if n_rows else 0
    if n_rows == 0 or kmax == 0:
        return np.full((n_rows, max(kmax, 0)), -1, dtype=np.int64)
    keys = np.log(weights)[None, :] + rng.gumbel(size=(n_rows, n_cols))
    order = np.argsort(-keys, axis=1, kind="stable")[:, :kmax]
    cols = np.arange(kmax)[None, :]
    return np.where(cols < k[:, None], order, -1)


def _pad3(a: np.ndarray) -> np.ndarray:
    return np.pad(a, ((0, 0), (0, 3 - a.shape[1])), constant_values=-1)


def _csr(rows: np.ndarray, n: int) -> np.ndarray:
    """Row pointer for an array already sorted by `rows`."""
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=ptr[1:])
    return ptr


def _search(haystack: np.ndarray, needles: np.ndarray, side: str = "left") -> np.ndarray:
    """np.searchsorted for many random needles: searching them in sorted order is several times
    faster on large arrays (cache-friendly), so sort, search and scatter back."""
    flat = needles.ravel()
    if len(flat) < 4096:
        return np.searchsorted(haystack, needles, side=side)
    order = np.argsort(flat)
    out = np.empty(flat.shape, dtype=np.int64)
    out[order] = np.searchsorted(haystack, flat[order], side=side)
    return out.reshape(needles.shape)


def _pick_weighted(rng: np.random.Generator, cum: np.ndarray, size: int) -> np.ndarray:
    """Indices drawn ∝ weights given cum = cumsum(weights) (total > 0)."""
    r = rng.random(size) * cum[-1]
    return np.minimum(_search(cum, r, side="right"), len(cum) - 1)


# --------------------------------------------------------------------------------------------- world


class _World:
    """Static structure of the simulated network (users, posts, follow graph, groups, schedule)."""

    def __init__(self, cfg: GeneratorConfig, rng: np.random.Generator) -> None:
        cfg.validate()
        self.cfg = cfg
        n, t_count = cfg.users, cfg.topics
        self.n, self.t_count = n, t_count
        self.span = max(1, round(cfg.days * DAY_MS))
        self.user_ids = [f"u{i + 1:0{_width(n, 4)}d}" for i in range(n)]
        self.topic_ids = [f"t{i:0{_width(t_count - 1, 2)}d}" for i in range(t_count)]
        self.topic_names = [
            TOPIC_NAMES[i] if i < len(TOPIC_NAMES) else f"topic {i}" for i in range(t_count)
        ]
        self._users(rng)
        self._plant_arm()
        self._posts(rng)
        self._favourites(rng)
        self._graph(rng)
        self._groups(rng)
        self._deletions(rng)
        self._schedule()

    # -- users: topics, timezones, activity ---------------------------------------------------------
    def _users(self, rng: np.random.Generator) -> None:
        n, t_count = self.n, self.t_count
        # Topic popularity is Zipf-like: some topics are liked by many users.
        self.topic_weight = 1.0 / np.arange(1, t_count + 1) ** 0.6
        self.topic_weight = rng.permutation(self.topic_weight)
        k_like = np.minimum(rng.choice([2, 3], size=n, p=[0.55, 0.45]), t_count)
        liked = _sample_rows_without_replacement(rng, n, self.topic_weight, k_like)
        self.ut = np.zeros((n, t_count), dtype=bool)  # planted liked topics
        rows = np.repeat(np.arange(n), liked.shape[1])
        ok = liked.ravel() >= 0
        self.ut[rows[ok], liked.ravel()[ok]] = True
        # Disliked: 1-2 topics among the others (none when there is no other topic).
        n_other = t_count - self.ut.sum(axis=1)
        k_dis = np.minimum(rng.choice([1, 2], size=n, p=[0.6, 0.4]), n_other)
        w_dis = np.where(self.ut, 1e-300, 1.0)  # never pick a liked topic (Gumbel on -690 log)
        keys = np.log(w_dis) + rng.gumbel(size=(n, t_count))
        order = np.argsort(-keys, axis=1, kind="stable")
        self.ud = np.zeros((n, t_count), dtype=bool)
        for j in range(int(k_dis.max()) if n else 0):
            sel = k_dis > j
            self.ud[np.nonzero(sel)[0], order[sel, j]] = True
        # Declared interests: each planted topic kept w.p. 0.6, a random extra w.p. 0.15; 20% skip.
        keep = self.ut & (rng.random((n, t_count)) < 0.6)
        extra = rng.integers(0, t_count, size=n)
        add_extra = rng.random(n) < 0.15
        keep[np.nonzero(add_extra)[0], extra[add_extra]] = True
        keep[rng.random(n) < 0.2] = False
        self.interests = keep
        self.tz = rng.choice(len(TIMEZONES), size=n, p=_TZ_WEIGHTS / _TZ_WEIGHTS.sum())
        self.tz_offset_h = np.array([TIMEZONES[i][1] for i in range(len(TIMEZONES))])[self.tz]
        act = rng.lognormal(0.0, 0.9, size=n)
        self.activity = np.minimum(act / act.mean(), 15.0)
        # Posting propensity: ~15% creators with Pareto weights; the rest post rarely.
        n_creators = max(1, round(0.15 * n))
        creator_idx = rng.choice(n, size=n_creators, replace=False)
        post_w = np.full(n, 0.02)
        post_w[creator_idx] = np.minimum(rng.pareto(1.4, size=n_creators) + 1.0, 15.0)
        self.is_creator = np.zeros(n, dtype=bool)
        self.is_creator[creator_idx] = True
        self.post_rate = post_w / post_w.mean() * self.cfg.posts_per_user_per_day  # per day
        # Specialties: creators 1-3 topics (first often one of their own liked topics);
        # occasional posters write about their liked topics.
        k_spec = rng.choice([1, 2, 3], size=n, p=[0.35, 0.4, 0.25])
        k_spec = np.minimum(k_spec, t_count)
        spec = _sample_rows_without_replacement(rng, n, self.topic_weight, k_spec)
        own = liked[:, 0]
        use_own = rng.random(n) < 0.5
        # Put an own liked topic first when chosen (and not already a specialty).
        spec_first = np.where(use_own, own, spec[:, 0])
        dup = (spec == spec_first[:, None]).any(axis=1) & (spec[:, 0] != spec_first)
        spec[:, 0] = np.where(dup, spec[:, 0], spec_first)
        spec = np.where(self.is_creator[:, None], _pad3(spec), _pad3(liked))
        self.spec = spec  # (n, w) topic ids, -1 padded, first column always valid
        self.spec_count = (spec >= 0).sum(axis=1)
        self.spec_bool = np.zeros((n, t_count), dtype=bool)
        r = np.repeat(np.arange(n), spec.shape[1])
        ok = spec.ravel() >= 0
        self.spec_bool[r[ok], spec.ravel()[ok]] = True

    # -- posts ----------------------------------------------------------------------------------------
    def _plant_arm(self) -> None:
        """Engagement logit lift of the users in the planted experiment arm (no extra random draws:
        the world and the sessions are the same as without the plant; the reactions differ)."""
        self.arm_lift = np.zeros(self.n)
        if self.cfg.planted_arm is not None:
            from operators.experiments import assign
            experiment, arm, lift = self.cfg.planted_arm
            members = [i for i, u in enumerate(self.user_ids) if assign(experiment, u) == arm]
            self.arm_lift[members] = lift

    def _posts(self, rng: np.random.Generator) -> None:
        n, span, t_count = self.n, self.span, self.t_count
        total_rate = float(self.post_rate.sum()) * (span / DAY_MS)
        n_posts = int(rng.poisson(total_rate)) if total_rate > 0 else 0
        if n_posts:
            authors = rng.choice(n, size=n_posts, p=self.post_rate / self.post_rate.sum())
        else:
            authors = np.zeros(0, dtype=np.int64)
        ts = self._diurnal_times(rng, authors, 0, span)
        order = np.argsort(ts, kind="stable")  # ids are assigned in creation order
        self.p_author = authors[order].astype(np.int64)
        self.p_ts = ts[order]
        self.n_posts = n_posts
        self.post_ids = [f"p{i + 1:0{_width(n_posts, 6)}d}" for i in range(n_posts)]
        # Topics: 1-3, from the author's specialties (first w.p. 0.9, others 0.7), else by popularity.
        k = np.minimum(rng.choice([1, 2, 3], size=n_posts, p=[0.55, 0.33, 0.12]), t_count)
        pt = np.zeros((n_posts, t_count), dtype=bool)
        cum_topic = np.cumsum(self.topic_weight)
        sc = self.spec_count[self.p_author]
        for j in range(3):
            sel = np.nonzero(k > j)[0]
            if not len(sel):
                continue
            from_spec = rng.random(len(sel)) < (0.9 if j == 0 else 0.7)
            pick = np.floor(rng.random(len(sel)) * sc[sel]).astype(np.int64)
            spec_topic = self.spec[self.p_author[sel], pick]
            rand_topic = _pick_weighted(rng, cum_topic, len(sel))
            pt[sel, np.where(from_spec, spec_topic, rand_topic)] = True
        self.pt = pt
        # Latent quality (drives popularity) and optional group.
        self.p_quality = rng.normal(0.0, 1.0, size=n_posts)
        self.n_groups = max(t_count, n // 40)
        first_topic = np.argmax(pt, axis=1) if n_posts else np.zeros(0, dtype=np.int64)
        in_group = rng.random(n_posts) < 0.15
        per_topic = (self.n_groups - first_topic + t_count - 1) // t_count  # groups of that topic
        g = first_topic + t_count * np.floor(rng.random(n_posts) * per_topic).astype(np.int64)
        self.p_group = np.where(in_group, g, -1)
        self.group_ids = [f"g{i + 1:0{_width(self.n_groups, 3)}d}" for i in range(self.n_groups)]
        # Author-sorted view for "recent posts of author a before t" lookups.
        self.by_author = np.lexsort((self.p_ts, self.p_author))
        self.author_key = self.p_author[self.by_author] * (span + 1) + self.p_ts[self.by_author]
        # Topic -> post indices (creation order) for searches.
        rows, cols = np.nonzero(pt.T)
        self.topic_ptr = _csr(rows, t_count)
        self.topic_posts = cols.astype(np.int64)
        self.post_topic_lists = [[] for _ in range(n_posts)]
        prow, pcol = np.nonzero(pt)
        tids = self.topic_ids
        for p, t in zip(prow.tolist(), pcol.tolist(), strict=True):
            self.post_topic_lists[p].append(tids[t])

    def _diurnal_times(
        self, rng: np.random.Generator, users: np.ndarray, lo: int, hi: int
    ) -> np.ndarray:
        """Times in [lo, hi) for each user, thinned by the user's local-hour activity profile."""
        out = np.zeros(len(users), dtype=np.int64)
        todo = np.arange(len(users))
        peak = _HOURLY.max()
        while len(todo):
            ts = rng.integers(lo, hi, size=len(todo))
            hour = self._local_hour(ts, users[todo])
            ok = rng.random(len(todo)) * peak < _HOURLY[hour]
            out[todo[ok]] = ts[ok]
            todo = todo[~ok]
        return out

    def _local_hour(self, rel_ts: np.ndarray | int, users: np.ndarray | slice) -> np.ndarray:
        utc_h = ((self.cfg.start_ms + np.asarray(rel_ts)) // HOUR_MS) % 24
        return ((utc_h + np.floor(self.tz_offset_h[users]).astype(np.int64)) % 24).astype(np.int64)

    # -- favourite authors ----------------------------------------------------------------------------
    def _favourites(self, rng: np.random.Generator) -> None:
        """2-4 favourite authors per user: creators of the user's liked topics, ∝ creator weight."""
        n, t_count = self.n, self.t_count
        fit = self.post_rate / max(self.post_rate.mean(), 1e-12)
        self.fitness = 0.2 + np.minimum(fit, 10.0)
        creators = np.nonzero(self.is_creator)[0]
        # Per topic: creators with that specialty and cumulative weights.
        self.topic_creators: list[np.ndarray] = []
        self.topic_creator_cum: list[np.ndarray] = []
        for t in range(t_count):
            cs = creators[self.spec_bool[creators, t]]
            self.topic_creators.append(cs)
            self.topic_creator_cum.append(np.cumsum(self.fitness[cs]))
        k = rng.choice([2, 3, 4], size=n, p=[0.4, 0.4, 0.2])
        liked_ptr_rows, liked_cols = np.nonzero(self.ut)
        liked_ptr = _csr(liked_ptr_rows, n)
        slots_u = np.repeat(np.arange(n), k)
        n_liked = liked_ptr[slots_u + 1] - liked_ptr[slots_u]
        topic = liked_cols[liked_ptr[slots_u] + np.floor(rng.random(len(slots_u)) * n_liked)
                           .astype(np.int64)]  # fmt: skip
        fav = np.full(len(slots_u), -1, dtype=np.int64)
        for t in range(t_count):
            sel = np.nonzero(topic == t)[0]
            cs = self.topic_creators[t]
            if len(sel) and len(cs):
                fav[sel] = cs[_pick_weighted(rng, self.topic_creator_cum[t], len(sel))]
        missing = np.nonzero(fav < 0)[0]
        if len(missing) and len(creators):
            fav[missing] = creators[_pick_weighted(rng, np.cumsum(self.fitness[creators]),
                                                   len(missing))]  # fmt: skip
        ok = (fav >= 0) & (fav != slots_u)
        key = np.unique(slots_u[ok] * n + fav[ok])  # dedupe, sorted by (user, author)
        self.fav_key = key
        self.fav_u, self.fav_a = key // n, key % n

    # -- follow graph ---------------------------------------------------------------------------------
    def _graph(self, rng: np.random.Generator) -> None:
        n, span = self.n, self.span
        # Out-degree ~5-30 (heavier for active users), capped by the population.
        deg = np.clip(
            np.round(5.0 + rng.pareto(1.5, size=n) * 8.0 * self.activity**0.3), 5, 30
        ).astype(np.int64)
        deg = np.minimum(deg, n - 1)
        liked_rows, liked_cols = np.nonzero(self.ut)
        liked_ptr = _csr(liked_rows, n)
        indeg = np.zeros(n, dtype=np.float64)
        np.add.at(indeg, self.fav_a, 1.0)
        arrival = rng.permutation(n)
        batch = max(32, -(-n // 40))
        src_parts, dst_parts, friend_parts = [], [], []
        for b0 in range(0, n, batch):
            # Batched preferential attachment: 40% of the follows go to creators of one of the
            # follower's topics, 35% to anyone ∝ (followers + 1) × creator fitness, 25% are
            # "friends" picked uniformly. Twice the slots are drawn, duplicates dropped.
            users = arrival[b0 : b0 + batch]
            slots_u = np.repeat(users, 2 * deg[users])
            ns = len(slots_u)
            if not ns:
                continue
            weight = (indeg + 1.0) * self.fitness
            dst = _pick_weighted(rng, np.cumsum(weight), ns)
            kind = rng.random(ns)
            topical, friend = kind < 0.4, kind >= 0.75
            dst[friend] = rng.integers(0, n, size=int(friend.sum()))
            n_liked = liked_ptr[slots_u + 1] - liked_ptr[slots_u]
            topic = liked_cols[np.minimum(
                liked_ptr[slots_u] + np.floor(rng.random(ns) * n_liked).astype(np.int64),
                len(liked_cols) - 1)]  # fmt: skip
            for t in range(self.t_count):
                sel = np.nonzero(topical & (topic == t))[0]
                cs = self.topic_creators[t]
                if len(sel) and len(cs):
                    dst[sel] = cs[_pick_weighted(rng, np.cumsum(weight[cs]), len(sel))]
            key = np.where(dst != slots_u, slots_u * n + dst, -1)
            _, first = np.unique(key, return_index=True)
            first = np.sort(first[key[first] >= 0])  # first occurrences, in slot order
            src_k, dst_k, fr_k = slots_u[first], dst[first], friend[first]
            _, grp_first, grp = np.unique(src_k, return_index=True, return_inverse=True)
            rank = np.arange(len(src_k)) - grp_first[grp]
            keep = rank < deg[src_k]
            src_parts.append(src_k[keep])
            dst_parts.append(dst_k[keep])
            friend_parts.append(fr_k[keep])
            np.add.at(indeg, dst_k[keep], 1.0)
        src = np.concatenate(src_parts) if src_parts else np.zeros(0, dtype=np.int64)
        dst = np.concatenate(dst_parts) if dst_parts else np.zeros(0, dtype=np.int64)
        friend = np.concatenate(friend_parts) if friend_parts else np.zeros(0, dtype=bool)
        # Friends often follow back.
        back = friend & (rng.random(len(src)) < 0.4)
        src, dst = np.concatenate([src, dst[back]]), np.concatenate([dst, src[back]])
        # Favourite authors: 85% are followed early (the rest are found through the global feed).
        fav_followed = rng.random(len(self.fav_key)) < 0.85
        fav_src, fav_dst = self.fav_u[fav_followed], self.fav_a[fav_followed]
        key_all = np.concatenate([fav_src * n + fav_dst, src * n + dst])
        is_fav = np.concatenate([np.ones(len(fav_src), bool), np.zeros(len(src), bool)])
        key, first = np.unique(key_all, return_index=True)  # sorted by (follower, followee)
        is_fav = is_fav[first]
        self.e_src, self.e_dst = key // n, key % n
        m = len(key)
        # Follow times: most in the first 30% of the timeline (favourites in the first 15%),
        # 12% of the others later; 3% of the non-favourite follows are undone later.
        early = rng.beta(1.0, 2.0, size=m) * 0.3 * span
        late = rng.random(m) < 0.12
        later = rng.random(m) * span
        fts = np.where(late & ~is_fav, later, np.where(is_fav, early * 0.5, early))
        self.e_follow = np.minimum(fts.astype(np.int64), span - 1)
        unf = (rng.random(m) < 0.03) & ~is_fav & (self.e_follow < span - HOUR_MS)
        gap = rng.random(m) * (span - self.e_follow)
        self.e_unfollow = np.where(unf, self.e_follow + np.maximum(gap.astype(np.int64), 1), _INF)
        self.out_ptr = _csr(self.e_src, n)
        # Blocks and mutes: a few random pairs (never a favourite author).
        n_bm = max(1, n // 100) * 3 if n > 1 else 0
        bu = rng.integers(0, n, size=n_bm)
        bv = (bu + rng.integers(1, max(n, 2), size=n_bm)) % n
        bkey = bu * n + bv
        ok = (bu != bv) & ~np.isin(bkey, self.fav_key)
        bkey, first = np.unique(bkey[ok], return_index=True)
        self.bm_key = bkey
        self.bm_ts = rng.integers(0, span, size=len(bkey))
        self.bm_kind = np.where(rng.random(len(bkey)) < 0.35, K_BLOCK, K_MUTE)

    # -- groups ---------------------------------------------------------------------------------------
    def _groups(self, rng: np.random.Generator) -> None:
        n, span, t_count = self.n, self.span, self.t_count
        k = np.minimum(rng.poisson(1.1, size=n), 4)
        u = np.repeat(np.arange(n), k)
        liked_rows, liked_cols = np.nonzero(self.ut)
        liked_ptr = _csr(liked_rows, n)
        n_liked = liked_ptr[u + 1] - liked_ptr[u]
        own = liked_cols[liked_ptr[u] + np.floor(rng.random(len(u)) * n_liked).astype(np.int64)]
        topic = np.where(rng.random(len(u)) < 0.8, own, rng.integers(0, t_count, size=len(u)))
        per_topic = (self.n_groups - topic + t_count - 1) // t_count
        g = topic + t_count * np.floor(rng.random(len(u)) * per_topic).astype(np.int64)
        key = np.unique(u * self.n_groups + g)
        self.m_user, self.m_group = key // self.n_groups, key % self.n_groups
        m = len(key)
        early = rng.random(m) < 0.5
        self.m_join = np.where(early, rng.random(m) * 0.1 * span, rng.random(m) * span).astype(
            np.int64
        )
        leave = (rng.random(m) < 0.06) & (self.m_join < span - HOUR_MS)
        self.m_leave = np.where(
            leave,
            self.m_join + 1 + (rng.random(m) * (span - self.m_join - 1)).astype(np.int64),
            _INF,
        )

    # -- deletions ------------------------------------------------------------------------------------
    def _deletions(self, rng: np.random.Generator) -> None:
        n, span = self.n, self.span
        # ~1% of posts deleted by their author 10 min .. 2 days after creation (if inside the span).
        delay = (10 * MINUTE_MS + rng.random(self.n_posts) * 2 * DAY_MS).astype(np.int64)
        dts = self.p_ts + delay
        deleted = (rng.random(self.n_posts) < 0.01) & (dts < span)
        self.p_deleted = np.where(deleted, dts, _INF)
        # A couple of accounts deleted near the end.
        self.u_deleted = np.full(n, _INF, dtype=np.int64)
        n_del = 2 if n >= 10 else 0
        if n_del:
            who = rng.choice(n, size=n_del, replace=False)
            when = span - 1 - rng.integers(0, min(30 * MINUTE_MS, span), size=n_del)
            self.u_deleted[who] = np.maximum(when, 1)
        # A post is gone when it or its author is deleted.
        self.p_gone = np.minimum(self.p_deleted, self.u_deleted[self.p_author])

    # -- scheduled (precomputed) events ---------------------------------------------------------------
    def _schedule(self) -> None:
        n = self.n
        e_unf = self.e_unfollow < _INF
        m_left = self.m_leave < _INF
        p_del = self.p_deleted < _INF
        u_del = self.u_deleted < _INF
        parts = [  # (ts, kind, user, a)
            (np.zeros(n, np.int64), K_USER_CREATED, np.arange(n), np.zeros(n, np.int64)),
            (self.p_ts, K_POST_CREATED, self.p_author, np.arange(self.n_posts)),
            (self.e_follow, K_FOLLOW, self.e_src, self.e_dst),
            (self.e_unfollow[e_unf], K_UNFOLLOW, self.e_src[e_unf], self.e_dst[e_unf]),
            (self.bm_ts, self.bm_kind, self.bm_key // n, self.bm_key % n),
            (self.m_join, K_GROUP_JOINED, self.m_user, self.m_group),
            (self.m_leave[m_left], K_GROUP_LEFT, self.m_user[m_left], self.m_group[m_left]),
            (self.p_deleted[p_del], K_POST_DELETED, self.p_author[p_del], np.nonzero(p_del)[0]),
            (self.u_deleted[u_del], K_USER_DELETED, np.nonzero(u_del)[0], np.zeros(u_del.sum())),
        ]
        ts = np.concatenate([p[0] for p in parts]).astype(np.int64)
        kind = np.concatenate([np.broadcast_to(p[1], len(p[0])) for p in parts]).astype(np.int8)
        user = np.concatenate([p[2] for p in parts]).astype(np.int64)
        a = np.concatenate([p[3] for p in parts]).astype(np.int64)
        order = np.argsort(ts, kind="stable")
        self.s_ts, self.s_kind, self.s_user, self.s_a = (
            ts[order],
            kind[order],
            user[order],
            a[order],
        )
        self.s_b = np.zeros(len(ts), dtype=np.int64)


# ---------------------------------------------------------------------------------------- simulation


class _Batch:
    """Columnar events: ts, kind, user, a (post/target/group/conversation/notification/topic), b."""

    __slots__ = ("a", "b", "kind", "ts", "user")

    def __init__(self) -> None:
        self.ts: list[np.ndarray] = []
        self.kind: list[np.ndarray] = []
        self.user: list[np.ndarray] = []
        self.a: list[np.ndarray] = []
        self.b: list[np.ndarray] = []

    def add(self, ts, kind, user, a, b=None) -> None:
        ts = np.asarray(ts, dtype=np.int64)
        m = len(ts)
        if not m:
            return
        self.ts.append(ts)
        self.kind.append(np.broadcast_to(np.asarray(kind, dtype=np.int8), (m,)))
        self.user.append(np.broadcast_to(np.asarray(user, dtype=np.int64), (m,)))
        self.a.append(np.broadcast_to(np.asarray(a, dtype=np.int64), (m,)))
        self.b.append(np.broadcast_to(np.asarray(0 if b is None else b, dtype=np.int64), (m,)))

    def arrays(self) -> tuple[np.ndarray, ...]:
        if not self.ts:
            z = np.zeros(0, dtype=np.int64)
            return z, z.astype(np.int8), z, z, z
        return tuple(np.concatenate(c) for c in (self.ts, self.kind, self.user, self.a, self.b))


class _Simulator:
    def __init__(self, world: _World, rng: np.random.Generator) -> None:
        self.w = world
        self.rng = rng
        self.likes = np.zeros(world.n_posts, dtype=np.float64)
        self.extras: dict[int, list[str]] = {}  # key -> recipients / result ids (popped on emit)
        self.next_extra = 0
        self.next_notification = 0
        self.conversations: dict[tuple[int, ...], int] = {}
        self.last_notification: dict[int, str] = {}  # user -> newest candidate id for them
        self.user_index = {uid: i for i, uid in enumerate(world.user_ids)}
        # (post, user) keys of feed impressions of still-recent posts, sorted: feeds never repeat.
        self.seen = np.zeros(0, dtype=np.int64)
        self.n_emitted = 0

    # -- shared lookups -------------------------------------------------------------------------------
    def _followees_at(self, users: np.ndarray, ts: np.ndarray, k: int) -> np.ndarray:
        """k random followee edges per user valid at ts (followee ids, -1 when none/invalid)."""
        w, rng = self.w, self.rng
        lo = w.out_ptr[users]
        deg = w.out_ptr[users + 1] - lo
        e = lo[:, None] + np.floor(rng.random((len(users), k)) * deg[:, None]).astype(np.int64)
        has = (deg > 0)[:, None]
        e = np.where(has, np.minimum(e, max(len(w.e_dst) - 1, 0)), 0)
        if not len(w.e_dst):
            return np.full((len(users), k), -1, dtype=np.int64)
        t = ts[:, None]
        valid = has & (w.e_follow[e] < t) & (w.e_unfollow[e] > t)
        return np.where(valid, w.e_dst[e], -1)

    def _blocked(self, users: np.ndarray, authors: np.ndarray, ts: np.ndarray) -> np.ndarray:
        w = self.w
        if not len(w.bm_key):
            return np.zeros(users.shape, dtype=bool)
        key = users * w.n + authors
        i = np.minimum(_search(w.bm_key, key), len(w.bm_key) - 1)
        return (w.bm_key[i] == key) & (w.bm_ts[i] <= ts)

    # -- one step -------------------------------------------------------------------------------------
    def step(self, w0: int, w1: int, out: _Batch) -> None:
        self._sessions(w0, w1, out)
        self._messages(w0, w1, out)
        self._searches(w0, w1, out)

    def _rates(self, w0: int, w1: int, per_day: float) -> np.ndarray:
        w = self.w
        hour = w._local_hour((w0 + w1) // 2, slice(None))
        alive = w.u_deleted > w0
        return per_day * (w1 - w0) / DAY_MS * _HOURLY[hour] * alive

    def _sessions(self, w0: int, w1: int, out: _Batch) -> None:
        w, rng, cfg = self.w, self.rng, self.w.cfg
        lam = self._rates(w0, w1, cfg.sessions_per_user_per_day) * w.activity
        counts = rng.poisson(lam)
        su = np.repeat(np.arange(w.n), counts)
        ns = len(su)
        if not ns:
            return
        t0 = rng.integers(w0, w1, size=ns)
        # Opening a notification often starts a session.
        notif = rng.random(ns) < 0.2
        n_notif = int(notif.sum())
        nid = self.next_notification + np.arange(n_notif)
        self.next_notification += n_notif
        opened = rng.random(n_notif) < 0.65
        out.add(t0[notif], np.where(opened, K_NOTIF_OPENED, K_NOTIF_DISMISSED), su[notif], nid)
        f = cfg.feed_size
        if f == 0 or w.n_posts == 0:
            return
        m = 3 * f
        # Candidates from followed authors: a random followee, then a random recent post of theirs.
        fa = self._followees_at(su, t0, m)
        span1 = w.span + 1
        tt = np.broadcast_to(t0[:, None], fa.shape)
        base = np.where(fa >= 0, fa, 0) * span1
        lo = _search(w.author_key, base + np.maximum(tt - FOLLOW_RECENT_MS, 0))
        hi = _search(w.author_key, base + tt)
        cnt = hi - lo
        pick = lo + np.floor(rng.random(fa.shape) * cnt).astype(np.int64)
        fc = np.where((fa >= 0) & (cnt > 0), w.by_author[np.minimum(pick, w.n_posts - 1)], -1)
        # Candidates from the global pool: recent posts ∝ (1 + likes)^0.8 × freshness, created
        # before the session starts.
        plo = int(np.searchsorted(w.p_ts, max(w0 - GLOBAL_RECENT_MS, 0)))
        phi = int(np.searchsorted(w.p_ts, w1))
        pool = np.arange(plo, phi)
        age = np.maximum(w0 - w.p_ts[pool], 0)
        weight = (1.0 + self.likes[pool]) ** 0.8 * np.exp(-age / (18 * HOUR_MS))
        weight *= np.exp(0.3 * w.p_quality[pool]) * (w.p_gone[pool] > w0)
        cum = np.concatenate([[0.0], np.cumsum(weight)])
        avail = np.searchsorted(w.p_ts[plo:phi], t0)  # pool posts created before each session
        total = cum[avail]
        r = rng.random((ns, m)) * total[:, None]
        gi = _search(cum, r, side="right") - 1
        gc = np.where((total > 0)[:, None], plo + np.clip(gi, 0, max(len(pool) - 1, 0)), -1)
        use_follow = rng.random((ns, m)) < 0.6
        cand = np.where(use_follow & (fc >= 0), fc, np.where(gc >= 0, gc, fc))
        # Filters: own posts, deleted posts, blocked/muted authors, duplicates; keep first f.
        safe = np.where(cand >= 0, cand, 0)
        author = w.p_author[safe]
        ok = (cand >= 0) & (author != su[:, None]) & (w.p_gone[safe] > tt)
        ok &= ~self._blocked(np.broadcast_to(su[:, None], cand.shape), author, tt)
        # Never show a user the same post twice (earlier hours, or another session this hour).
        key = np.where(ok, safe * w.n + su[:, None], -1)
        if len(self.seen):
            i = np.minimum(_search(self.seen, key), len(self.seen) - 1)
            ok &= self.seen[i] != key
            key = np.where(ok, key, -1)
        flat = key.ravel()
        keep = np.zeros(flat.shape, dtype=bool)
        _, first = np.unique(flat, return_index=True)
        keep[first] = True
        ok &= keep.reshape(cand.shape)
        pos = np.cumsum(ok, axis=1) - 1
        ok &= pos < f
        s_idx, col = np.nonzero(ok)
        post, position = cand[s_idx, col], pos[s_idx, col]
        user = su[s_idx]
        self._engage(user, post, position, t0[s_idx], out, K_IMP_FEED)
        # Remember what was shown; forget posts too old to be candidates again.
        horizon = int(np.searchsorted(w.p_ts, w1 - max(FOLLOW_RECENT_MS, GLOBAL_RECENT_MS)))
        seen = self.seen[np.searchsorted(self.seen, horizon * w.n) :]
        new = np.sort(post * w.n + user)
        self.seen = np.insert(seen, np.searchsorted(seen, new), new)

    def _engage(
        self,
        user: np.ndarray,
        post: np.ndarray,
        position: np.ndarray,
        session_ts: np.ndarray,
        out: _Batch,
        imp_kind: int,
        engage_boost: float = 0.0,
        feed: bool = True,
    ) -> None:
        """Impressions and the reactions they cause (vectorised). Outside the feed (search results,
        possibly seen before) only clicks, dwell and hides follow, so a post is liked at most once."""
        w, rng = self.w, self.rng
        k = len(post)
        if not k:
            return
        imp_ts = session_ts + position * 2500 + rng.integers(0, 2000, size=k)
        out.add(imp_ts, imp_kind, user, post, position)
        topic_match = (w.ut[user] & w.pt[post]).any(axis=1)
        disliked = (w.ud[user] & w.pt[post]).any(axis=1)
        fkey = user * w.n + w.p_author[post]
        fi = np.minimum(_search(w.fav_key, fkey), max(len(w.fav_key) - 1, 0))
        fav = (w.fav_key[fi] == fkey) if len(w.fav_key) else np.zeros(k, dtype=bool)
        logit = (
            BASE_LOGIT
            + engage_boost
            + w.arm_lift[user]
            + TOPIC_BONUS * topic_match
            + AUTHOR_BONUS * fav
            + POPULARITY_BONUS * np.tanh(np.log1p(self.likes[post]) - 1.5)
            + QUALITY_SCALE * w.p_quality[post]
            - POSITION_DECAY * position
            - 0.8 * disliked
        )
        p = _sigmoid(logit)
        r = rng.random((6, k))
        hide = r[0] < np.where(disliked, 0.05, 0.002)
        report = hide & (r[1] < np.where(disliked, 0.2, 0.05))
        report &= feed
        like = ~hide & (r[2] < p) & feed
        click = ~hide & (r[3] < 0.55 * p + 0.01)
        comment = like & (r[4] < 0.14)
        share = like & (r[5] < 0.07)
        d = rng.random((6, k))
        t_click = imp_ts + 500 + (d[0] * 3000).astype(np.int64)
        out.add(imp_ts[hide] + 800 + (d[1][hide] * 3000).astype(np.int64), K_HIDE, user[hide],
                post[hide])  # fmt: skip
        out.add(imp_ts[report] + 4000 + (d[2][report] * 8000).astype(np.int64), K_REPORT,
                user[report], post[report])  # fmt: skip
        out.add(t_click[click], K_CLICK, user[click], post[click])
        out.add(imp_ts[like] + 1000 + (d[3][like] * 7000).astype(np.int64), K_LIKE, user[like],
                post[like])  # fmt: skip
        out.add(imp_ts[comment] + 10_000 + (d[4][comment] * 80_000).astype(np.int64), K_COMMENT,
                user[comment], post[comment])  # fmt: skip
        out.add(imp_ts[share] + 3000 + (d[5][share] * 20_000).astype(np.int64), K_SHARE,
                user[share], post[share])  # fmt: skip
        # Dwell: after a click (long, longer when interested) or on a liked post read in-feed.
        dw = click | like
        mu = np.where(topic_match, 9.9, 9.1) + np.where(click, 0.5, -0.6)
        dwell_ms = np.maximum(rng.lognormal(mu[dw], 0.7), 300).astype(np.int64)
        start = np.where(click, t_click, imp_ts)[dw]
        out.add(start + dwell_ms, K_DWELL, user[dw], post[dw], dwell_ms)
        if len(like):
            np.add.at(self.likes, post[like], 1.0)

    def _messages(self, w0: int, w1: int, out: _Batch) -> None:
        w, rng = self.w, self.rng
        lam = self._rates(w0, w1, 0.7) * np.sqrt(w.activity)
        counts = rng.poisson(lam)
        mu = np.repeat(np.arange(w.n), counts)
        if not len(mu):
            return
        ts = rng.integers(w0, w1, size=len(mu))
        fol = self._followees_at(mu, ts, 3)
        n_rec = rng.choice([1, 2, 3], size=len(mu), p=[0.7, 0.2, 0.1])
        keep_ts, keep_u, keep_c, keep_x = [], [], [], []
        uids = w.user_ids
        for u, t, row, k in zip(
            mu.tolist(), ts.tolist(), fol.tolist(), n_rec.tolist(), strict=True
        ):
            rec = sorted({v for v in row[:k] if v >= 0 and w.u_deleted[v] > t})
            if not rec:
                continue
            members = tuple(sorted([u, *rec]))
            conv = self.conversations.setdefault(members, len(self.conversations))
            key = self.next_extra
            self.next_extra += 1
            self.extras[key] = [uids[v] for v in rec]
            keep_ts.append(t)
            keep_u.append(u)
            keep_c.append(conv)
            keep_x.append(key)
        out.add(keep_ts, K_MESSAGE, keep_u, keep_c, keep_x)

    def _searches(self, w0: int, w1: int, out: _Batch) -> None:
        w, rng = self.w, self.rng
        lam = self._rates(w0, w1, 0.35) * np.sqrt(w.activity)
        counts = rng.poisson(lam)
        su = np.repeat(np.arange(w.n), counts)
        if not len(su):
            return
        ns = len(su)
        ts = rng.integers(w0, w1, size=ns)
        # Query: one of the user's liked topics (75%), else a popular topic.
        liked_rows, liked_cols = np.nonzero(w.ut[su])
        ptr = _csr(liked_rows, ns)
        nl = ptr[1:] - ptr[:-1]
        own = liked_cols[np.minimum(ptr[:-1] + np.floor(rng.random(ns) * nl).astype(np.int64),
                                    len(liked_cols) - 1)]  # fmt: skip
        other = _pick_weighted(rng, np.cumsum(w.topic_weight), ns)
        topic = np.where((rng.random(ns) < 0.75) & (nl > 0), own, other)
        s_ts, s_u, s_t, s_x = [], [], [], []
        imp_u, imp_p, imp_pos, imp_t = [], [], [], []
        pids = w.post_ids
        for u, t, tp in zip(su.tolist(), ts.tolist(), topic.tolist(), strict=True):
            lo, hi = int(w.topic_ptr[tp]), int(w.topic_ptr[tp + 1])
            posts = w.topic_posts[lo:hi]
            end = int(np.searchsorted(w.p_ts[posts], t))
            recent = posts[max(0, end - 30) : end][::-1]
            recent = recent[(w.p_gone[recent] > t) & (w.p_author[recent] != u)][:10]
            key = self.next_extra
            self.next_extra += 1
            self.extras[key] = [pids[p] for p in recent.tolist()]
            s_ts.append(t)
            s_u.append(u)
            s_t.append(tp)
            s_x.append(key)
            shown = recent[:5].tolist()
            imp_u.extend([u] * len(shown))
            imp_p.extend(shown)
            imp_pos.extend(range(len(shown)))
            imp_t.extend([t + 700] * len(shown))
        out.add(s_ts, K_SEARCH, s_u, s_t, s_x)
        if imp_p:
            # Search results are wanted: engagement is likelier than in the feed.
            self._engage(np.array(imp_u), np.array(imp_p), np.array(imp_pos), np.array(imp_t),
                         out, K_IMP_SEARCH, engage_boost=1.0, feed=False)  # fmt: skip

    # -- driving the simulation in time order ---------------------------------------------------------
    def run(self) -> Iterator[dict]:
        w = self.w
        carry = tuple(
            np.zeros(0, dtype=dt) for dt in (np.int64, np.int8, np.int64, np.int64, np.int64)
        )
        for w0 in range(0, w.span, CHUNK_MS):
            w1 = min(w0 + CHUNK_MS, w.span)
            last = w1 >= w.span
            batch = _Batch()
            s0, s1 = np.searchsorted(w.s_ts, [w0, w1])
            batch.add(w.s_ts[s0:s1], w.s_kind[s0:s1], w.s_user[s0:s1], w.s_a[s0:s1], w.s_b[s0:s1])
            self.step(w0, w1, batch)
            new = batch.arrays()
            cols = [np.concatenate([c, nc]) for c, nc in zip(carry, new, strict=True)]
            ts = cols[0]
            order = np.argsort(ts, kind="stable")
            ts_sorted = ts[order]
            cut = len(ts) if last else int(np.searchsorted(ts_sorted, w1))
            emit, rest = order[:cut], order[cut:]
            carry = tuple(c[rest] for c in cols)
            yield from self._emit(*(c[emit] for c in cols))

    def _note_notification(self, head: dict, author: str | None) -> None:
        """Remember, per recipient, the id of the newest notification candidate this event makes,
        derived by the decision code itself (operators.notifications.candidates)."""
        event = Event(head["event_id"], head["type"], head["ts"], head["user_id"],
                      post_id=head.get("post_id"), target_id=head.get("target_id"),
                      conversation_id=head.get("conversation_id"),
                      recipients=tuple(head.get("recipients") or ()) or None)
        for recipient, msg in notification_messages(event, author):
            if msg[0] == "cand" and recipient in self.user_index:
                self.last_notification[self.user_index[recipient]] = msg[1].notification_id

    def _emit(self, ts, kind, user, a, b) -> Iterator[dict]:
        w = self.w
        # Drop anything after its actor's deletion, post actions after the post is gone, and
        # follows/blocks aimed at an account after its deletion; and anything past the end.
        keep = ts < w.span
        keep &= (ts < w.u_deleted[user]) | (kind == K_USER_DELETED)
        pa = (kind >= _POST_ACTION_LO) & (kind <= _POST_ACTION_HI)
        if w.n_posts:
            keep &= ~pa | (ts < w.p_gone[np.where(pa, a, 0)])
        ut = np.isin(kind, _USER_TARGET_KINDS)
        keep &= ~ut | (ts < w.u_deleted[np.where(ut, a, 0)])
        for col_kind, col_b in zip(kind[~keep].tolist(), b[~keep].tolist(), strict=True):
            if col_kind in (K_MESSAGE, K_SEARCH):
                self.extras.pop(col_b, None)
        start = w.cfg.start_ms
        uids, pids, gids, tids = w.user_ids, w.post_ids, w.group_ids, w.topic_ids
        interests, topic_lists = w.interests, w.post_topic_lists
        tz_names = [name for name, _ in TIMEZONES]
        extras = self.extras
        v = SCHEMA_VERSION
        n = self.n_emitted
        for t, k, u, x, y in zip(
            (ts[keep] + start).tolist(),
            kind[keep].tolist(),
            user[keep].tolist(),
            a[keep].tolist(),
            b[keep].tolist(),
            strict=True,
        ):
            n += 1
            head = {"v": v, "event_id": f"e{n:09d}", "type": KIND_TYPES[k], "ts": t,
                    "user_id": uids[u]}  # fmt: skip
            if k == K_IMP_FEED:
                head["post_id"] = pids[x]
                head["surface"] = "feed"
                head["position"] = y
            elif k == K_DWELL:
                head["post_id"] = pids[x]
                head["dwell_ms"] = y
            elif K_CLICK <= k <= K_REPORT or k == K_POST_DELETED:
                head["post_id"] = pids[x]
            elif k == K_IMP_SEARCH:
                head["post_id"] = pids[x]
                head["surface"] = "search"
                head["position"] = y
            elif k == K_POST_CREATED:
                head["post_id"] = pids[x]
                g = int(w.p_group[x])
                if g >= 0:
                    head["group_id"] = gids[g]
                head["topics"] = topic_lists[x]
            elif K_FOLLOW <= k <= K_MUTE:
                head["target_id"] = uids[x]
            elif k == K_MESSAGE:
                head["conversation_id"] = f"c{x + 1:08d}"
                head["recipients"] = extras.pop(y)
            elif k in (K_GROUP_JOINED, K_GROUP_LEFT):
                head["group_id"] = gids[x]
            elif k == K_SEARCH:
                head["result_ids"] = extras.pop(y)
                head["query"] = w.topic_names[x]
            elif k in (K_NOTIF_OPENED, K_NOTIF_DISMISSED):
                # the newest notification the decision code made for this user (same ids)
                head["notification_id"] = self.last_notification.get(u, f"n{x + 1:09d}")
            elif k == K_USER_CREATED:
                head["interests"] = [tids[i] for i in np.nonzero(interests[u])[0].tolist()]
                head["timezone"] = tz_names[w.tz[u]]
            if k in _NOTIFYING_KINDS:
                self._note_notification(head, uids[int(w.p_author[x])] if
                                        K_CLICK <= k <= K_REPORT else None)
            yield head
        self.n_emitted = n


# ----------------------------------------------------------------------------------------------- API


def _truth(world: _World) -> Truth:
    w = world
    tids, uids, pids = w.topic_ids, w.user_ids, w.post_ids
    ut_rows, ut_cols = np.nonzero(w.ut)
    ud_rows, ud_cols = np.nonzero(w.ud)
    user_topics: dict[str, list[str]] = {u: [] for u in uids}
    for r, c in zip(ut_rows.tolist(), ut_cols.tolist(), strict=True):
        user_topics[uids[r]].append(tids[c])
    user_disliked: dict[str, list[str]] = {u: [] for u in uids}
    for r, c in zip(ud_rows.tolist(), ud_cols.tolist(), strict=True):
        user_disliked[uids[r]].append(tids[c])
    user_authors: dict[str, list[str]] = {u: [] for u in uids}
    for r, c in zip(w.fav_u.tolist(), w.fav_a.tolist(), strict=True):
        user_authors[uids[r]].append(uids[c])
    return Truth(
        user_topics=user_topics,
        user_authors=user_authors,
        post_topics={pids[i]: list(w.post_topic_lists[i]) for i in range(w.n_posts)},
        post_author={pids[i]: uids[a] for i, a in enumerate(w.p_author.tolist())},
        user_disliked=user_disliked,
        topic_names=dict(zip(tids, w.topic_names, strict=True)),
        config=asdict(w.cfg),
    )


NOTIFICATION_KINDS = ("like", "comment", "share", "follow", "reply", "new_post")
NOTIF_OFF_HOURS_FACTOR = 0.25  # P(open) multiplier outside a user's active notification hours


def plant_notification_behaviour(
    cfg: GeneratorConfig, user_ids: list[str]
) -> tuple[dict[str, dict[str, float]], dict[str, list[int]]]:
    """Per user: 2 notification kinds they usually open (P 0.5-0.8; the others 0.02-0.1; "trending"
    0.05-0.3) and a 6-hour local window when they read notifications (peak 08:00-21:00). Its own
    RNG stream, so the
    activity log is unchanged; deterministic for a seed. Evaluations draw opens from it."""
    rng = np.random.default_rng([cfg.seed, 0x4E07])
    n, k = len(user_ids), len(NOTIFICATION_KINDS)
    p = rng.uniform(0.02, 0.1, size=(n, k))
    loved = np.argsort(rng.random((n, k)), axis=1)[:, :2]
    rows = np.repeat(np.arange(n), 2)
    p[rows, loved.ravel()] = rng.uniform(0.5, 0.8, size=2 * n)
    peak = rng.integers(8, 22, size=n)
    opens = {u: {kind: round(float(p[i, j]), 3) for j, kind in enumerate(NOTIFICATION_KINDS)}
             for i, u in enumerate(user_ids)}
    # "Trending in your interests": moderately liked by everyone (its own stream: the kinds
    # above keep the values they had before it existed).
    trending = np.random.default_rng([cfg.seed, 0x4E08]).uniform(0.05, 0.3, size=n)
    for i, u in enumerate(user_ids):
        opens[u]["trending"] = round(float(trending[i]), 3)
    hours = {u: [int(peak[i] - 3), int(peak[i] + 3)] for i, u in enumerate(user_ids)}
    return opens, hours


def generate_stream(cfg: GeneratorConfig) -> tuple[Iterator[dict], Truth]:
    """Like `generate`, but events are produced lazily (memory stays bounded for any `users`).

    The world (users, posts, graph) is built eagerly so the Truth is complete on return; the activity
    is simulated hour by hour as the iterator is consumed. Consume the iterator once."""
    rng = np.random.default_rng(cfg.seed)
    world = _World(cfg, rng)
    truth = _truth(world)
    truth.notif_open, truth.notif_hours = plant_notification_behaviour(cfg, world.user_ids)
    return _Simulator(world, rng).run(), truth


def generate(cfg: GeneratorConfig) -> tuple[list[dict], Truth]:
    """Events as v1 wire dicts sorted by (ts, sequence), and the planted truth. Deterministic."""
    stream, truth = generate_stream(cfg)
    return list(stream), truth


# -------------------------------------------------------------------------------------- invalid input

MALFORMED_KINDS: tuple[str, ...] = (
    "bad_json", "missing_field", "wrong_type", "unknown_type", "oversized", "absurd_ts",
)  # fmt: skip


def _malformed(kind: str, i: int, rng: np.random.Generator, start_ms: int) -> bytes:
    variant = int(rng.integers(0, 4))
    ts = start_ms + int(rng.integers(0, DAY_MS))
    user = f"u{int(rng.integers(1, 10_000)):04d}"
    post = f"p{int(rng.integers(1, 1_000_000)):06d}"
    base = {"v": 1, "event_id": f"bad{i:09d}", "type": "like", "ts": ts, "user_id": user,
            "post_id": post}  # fmt: skip
    if kind == "bad_json":
        full = orjson.dumps(base)
        return (
            full[: max(1, len(full) // 2)],  # truncated
            b"not json: " + full,
            b"\xff\xfe" + full[1:],  # invalid UTF-8
            full[:-1] + b",}",  # trailing comma
        )[variant]
    if kind == "missing_field":
        drop = ("post_id", "user_id", "ts", "event_id")[variant]
        return orjson.dumps({k: val for k, val in base.items() if k != drop})
    if kind == "wrong_type":
        if variant == 0:
            base["ts"] = str(ts)
        elif variant == 1:
            base.update(type="impression", surface="feed", position="3")
        elif variant == 2:
            base["user_id"] = int(rng.integers(1, 10_000))
        else:
            base.update(type="post_created", topics="t01")
        return orjson.dumps(base)
    if kind == "unknown_type":
        base["type"] = ("poke", "superlike", "", "LIKE")[variant]
        return orjson.dumps(base)
    if kind == "oversized":
        base.update(type="comment", text="x" * (65_536 + int(rng.integers(1, 2048))))
        return orjson.dumps(base)
    if kind == "absurd_ts":
        base["ts"] = (
            ts // 1000,  # epoch seconds instead of milliseconds
            ts * 1000,  # microseconds
            32_503_680_000_000,  # year 3000
            -ts,
        )[variant]
        return orjson.dumps(base)
    raise ValueError(f"unknown malformed kind {kind!r}")


def malformed_lines(
    n: int, seed: int = 0, start_ms: int = 1_767_225_600_000
) -> list[tuple[bytes, str]]:
    """n invalid raw payloads with their kind, cycling through MALFORMED_KINDS (deterministic).

    Each is rejected by `schemas.codec.decode_event` (default limits) with a reason."""
    rng = np.random.default_rng([seed, 0xBAD])
    return [
        (_malformed(MALFORMED_KINDS[i % len(MALFORMED_KINDS)], i, rng, start_ms),
         MALFORMED_KINDS[i % len(MALFORMED_KINDS)])
        for i in range(n)
    ]  # fmt: skip


def encode_lines(
    events: Iterable[dict], malformed_fraction: float = 0.0, seed: int = 0
) -> Iterator[bytes]:
    """One orjson line per event; with malformed_fraction f, after each event an invalid line is
    inserted with probability f (so about f × len(events) extra lines; deterministic for a seed)."""
    if malformed_fraction <= 0:
        for event in events:
            yield orjson.dumps(event)
        return
    rng = np.random.default_rng([seed, 0x11E])
    bad_rng = np.random.default_rng([seed, 0xBAD])
    start_ms = 1_767_225_600_000
    i = 0
    buf = rng.random(4096)
    j = 0
    for event in events:
        yield orjson.dumps(event)
        if j == len(buf):
            buf, j = rng.random(4096), 0
        draw = buf[j]
        j += 1
        if i == 0:
            start_ms = event.get("ts", start_ms)
        if draw < malformed_fraction:
            yield _malformed(MALFORMED_KINDS[i % len(MALFORMED_KINDS)], i, bad_rng, start_ms)
            i += 1


def _open_write(path: Path):
    if path.suffix == ".gz":
        raw = open(path, "wb")  # noqa: SIM115 - write_log closes it after the GzipFile wrapper
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6), raw
    return open(path, "wb"), None


def write_log(
    path: str | os.PathLike,
    events: Iterable[dict],
    truth: Truth,
    *,
    malformed_fraction: float = 0.0,
    seed: int = 0,
) -> Counter:
    """Write events as JSONL (one orjson line each; gzip when the path ends in .gz, reproducible
    bytes) and the truth to `<path>.truth.json`. `events` may be a list or a `generate_stream`
    iterator. Returns line counts per event type ("malformed" for injected invalid lines).
    Files are written to a temporary name and renamed, so readers never see a partial log."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp" + path.suffix)
    counts: Counter = Counter()

    def counted(it: Iterable[dict]) -> Iterator[dict]:
        for event in it:
            counts[event["type"]] += 1
            yield event

    fh, raw = _open_write(tmp)
    n_lines = 0
    try:
        try:
            buf: list[bytes] = []
            for line in encode_lines(counted(events), malformed_fraction, seed):
                buf.append(line)
                n_lines += 1
                if len(buf) >= 8192:
                    fh.write(b"\n".join(buf) + b"\n")
                    buf.clear()
            if buf:
                fh.write(b"\n".join(buf) + b"\n")
        finally:
            fh.close()
            if raw is not None:
                raw.close()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    truth_path = Path(str(path) + ".truth.json")
    truth_tmp = truth_path.with_name(truth_path.name + ".tmp")
    truth_tmp.write_bytes(truth.to_json())
    os.replace(truth_tmp, truth_path)
    malformed = n_lines - sum(counts.values())
    if malformed:
        counts["malformed"] = malformed
    return counts


def read_log(path: str | os.PathLike) -> Iterator[bytes]:
    """Raw lines of a log written by `write_log` (no trailing newline; blank lines skipped)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line:
                yield line


def read_truth(path: str | os.PathLike) -> Truth:
    """The truth saved next to a log (`path` is the log path or the .truth.json path itself)."""
    p = Path(path)
    if not p.name.endswith(".truth.json"):
        p = Path(str(p) + ".truth.json")
    return Truth.from_json(p.read_bytes())


def generate_log(cfg: GeneratorConfig, path: str | os.PathLike) -> Counter:
    """Generate and write a log in bounded memory (streaming), injecting cfg.malformed_fraction
    invalid lines. Returns line counts per event type."""
    stream, truth = generate_stream(cfg)
    return write_log(path, stream, truth, malformed_fraction=cfg.malformed_fraction, seed=cfg.seed)


def like_rates(events: Iterable[dict], truth: Truth) -> tuple[float, float]:
    """(likes per feed impression on posts in the user's planted topics, the same on other posts):
    the planted signal a personalizer should recover. (Likes only follow feed impressions, and a
    feed never shows a user the same post twice, so this is the per-impression like probability.)"""
    n = [0, 0]
    likes = [0, 0]
    user_topics = {u: frozenset(ts) for u, ts in truth.user_topics.items()}
    for e in events:
        kind = e["type"]
        if kind == "like" or (kind == "impression" and e.get("surface") == "feed"):
            planted = (
                0 if user_topics[e["user_id"]].isdisjoint(truth.post_topics[e["post_id"]]) else 1
            )
            if kind == "like":
                likes[planted] += 1
            else:
                n[planted] += 1
    return (likes[1] / n[1] if n[1] else 0.0, likes[0] / n[0] if n[0] else 0.0)
