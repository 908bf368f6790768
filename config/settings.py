"""Typed, bounded settings loaded from the commented default file, an optional override file, and env.

Every tunable is declared once here with its type and allowed range; `load()` fails fast with the key's
name and the allowed range, so a bad deployment never starts.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from config.experiments import Experiment, ExperimentError
from config.experiments import parse as parse_experiments

DEFAULT_FILE = Path(__file__).with_name("default.toml")


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


def bounded(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"lo": lo, "hi": hi}


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str
    events_topic: str
    dead_letter_topic: str
    notifications_topic: str
    erasure_topic: str
    partitions: int
    connect_timeout_s: float
    delivery_timeout_s: float
    progress_group: str
    progress_commit_s: float
    security_protocol: str
    sasl_mechanism: str
    username: str
    password: str = field(repr=False)
    ca_file: str

    BOUNDS = {"partitions": bounded(1, 1024), "connect_timeout_s": bounded(0.5, 600),
              "delivery_timeout_s": bounded(1, 86400), "progress_commit_s": bounded(0.5, 3600)}

    @property
    def erasures(self) -> str:
        """The flow's own erasure command topic (schemas.erasure): `erasure_topic`, or by default
        the events topic's name + ".erasures", so every events topic has its own."""
        return self.erasure_topic or f"{self.events_topic}.erasures"
    CHOICES = {"security_protocol": ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
               "sasl_mechanism": ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")}


@dataclass(frozen=True)
class RedisSettings:
    url: str
    prefix: str
    outage_timeout_s: float
    username: str
    password: str = field(repr=False)
    tls: bool
    ca_file: str
    cluster: bool
    sentinel_username: str
    sentinel_password: str = field(repr=False)
    wait_replicas: int
    write_version: str

    BOUNDS = {"outage_timeout_s": bounded(0, 86400), "wait_replicas": bounded(0, 16)}


@dataclass(frozen=True)
class LogSettings:
    level: str
    format: str

    BOUNDS = {}
    CHOICES = {"level": ("DEBUG", "INFO", "WARNING", "ERROR"), "format": ("text", "json")}


@dataclass(frozen=True)
class ReaderSettings:
    token: str = field(repr=False)
    redis_timeout_s: float

    BOUNDS = {"redis_timeout_s": bounded(0.01, 60)}


@dataclass(frozen=True)
class ServiceSettings:
    cache_dir: str
    kafka_version: str
    kafka_port: int
    kafka_controller_port: int
    redis_port: int

    BOUNDS = {
        "kafka_port": bounded(1, 65535),
        "kafka_controller_port": bounded(1, 65535),
        "redis_port": bounded(1, 65535),
    }


@dataclass(frozen=True)
class StreamSettings:
    max_event_bytes: int
    max_list_items: int
    min_ts_ms: int
    max_future_skew_ms: int
    dedup_capacity: int
    dedup_shards: int
    rank_interval_s: float
    reorder_wait_s: float
    reorder_lag_s: float
    suggest_interval_s: float
    graph_cache_ttl_s: float
    backlog_interval_s: float
    timer_budget_s: float
    timer_budget_per_message_us: float
    neighbours_interval_s: float
    seen_rerank_s: float
    user_idle_evict_s: float
    tombstone_idle_evict_s: float
    item_idle_evict_s: float
    parked_ttl_s: int
    erasure_resident_owners: int
    erasure_posts_per_author: int
    erasure_reported_per_owner: int
    kafka_batch_size: int
    freshness_sample: int
    gc_threshold: int
    gc_freeze: bool

    BOUNDS = {
        "max_event_bytes": bounded(256, 16 * 1024 * 1024),
        "max_list_items": bounded(1, 100_000),
        "max_future_skew_ms": bounded(0, None),
        "dedup_capacity": bounded(1, 100_000_000),
        "dedup_shards": bounded(1, 65536),
        "rank_interval_s": bounded(0.01, 3600),
        "reorder_wait_s": bounded(0.0, 3600),
        "reorder_lag_s": bounded(0.0, 365 * 86400),
        "suggest_interval_s": bounded(0.01, 86400),
        "graph_cache_ttl_s": bounded(0.0, 3600),
        "backlog_interval_s": bounded(0.0, 3600),
        "timer_budget_s": bounded(0.0, 3600),
        "timer_budget_per_message_us": bounded(0.0, 1_000_000),
        "neighbours_interval_s": bounded(0.0, 3600),
        "seen_rerank_s": bounded(0.01, 86400),
        "user_idle_evict_s": bounded(0.0, 365 * 86400),
        "tombstone_idle_evict_s": bounded(0.0, 10 * 365 * 86400),
        "item_idle_evict_s": bounded(0.0, 365 * 86400),
        "parked_ttl_s": bounded(60, 10 * 365 * 86400),
        "erasure_resident_owners": bounded(2, 10_000_000),
        "erasure_posts_per_author": bounded(1, 10_000),  # schemas.erasure.MAX_IDS per command
        "erasure_reported_per_owner": bounded(1, 100_000_000),
        "kafka_batch_size": bounded(1, 100_000),
        "freshness_sample": bounded(0, 1_000_000),
        "gc_threshold": bounded(0, 10_000_000),
    }


@dataclass(frozen=True)
class FeatureSettings:
    affinity_half_life_h: float
    popularity_half_life_h: float
    history_size: int
    seen_size: int
    pool_size: int
    neighbours: int
    cooccurrence_window: int
    cooccurrence_decay: float
    impression_weight: float
    knn_recency: float
    max_followers_fanout: int
    followers_recent_posts: int

    BOUNDS = {
        "affinity_half_life_h": bounded(0.01, 100_000),
        "popularity_half_life_h": bounded(0.01, 100_000),
        "history_size": bounded(1, 10_000),
        "seen_size": bounded(1, 100_000),
        "pool_size": bounded(1, 100_000),
        "neighbours": bounded(1, 10_000),
        "cooccurrence_window": bounded(1, 1000),
        "cooccurrence_decay": bounded(0.0, 1.0),
        "impression_weight": bounded(0.0, 1.0),
        "knn_recency": bounded(0.0, 1.0),
        "max_followers_fanout": bounded(0, 100_000_000),
        "followers_recent_posts": bounded(0, 10_000),
    }


@dataclass(frozen=True)
class FeedSettings:
    size: int
    sources: str
    candidates_per_source: int
    author_cap: int
    mmr_lambda: float
    exploration_slots: int
    exploration_start: int
    exploration_max_impressions: int
    learning_rate: float
    user_learning_rate: float
    impression_negative_weight: float

    BOUNDS = {
        "size": bounded(1, 1000),
        "candidates_per_source": bounded(1, 100_000),
        "author_cap": bounded(1, 1000),
        "mmr_lambda": bounded(0.0, 1.0),
        "exploration_slots": bounded(0, 100),
        "exploration_start": bounded(1, 1000),
        "exploration_max_impressions": bounded(0, None),
        "learning_rate": bounded(1e-6, 10.0),
        "user_learning_rate": bounded(0.0, 10.0),
        "impression_negative_weight": bounded(0.0, 10.0),
    }


@dataclass(frozen=True)
class NotificationSettings:
    daily_budget: int
    quiet_start_h: int
    quiet_end_h: int
    aggregate_window_s: int
    min_p_open: float
    delay_margin: float
    max_delay_h: int
    feedback_timeout_s: int
    min_author_engagements: int
    history: int
    decided_ids: int
    learning_rate: float
    user_learning_rate: float
    budget_like: int
    budget_comment: int
    budget_share: int
    budget_follow: int
    budget_reply: int
    budget_new_post: int
    budget_trending: int
    trending_min_affinity: float
    trending_max_recipients: int
    trending_min_engagement: float
    trending_audience_size: int

    BOUNDS = {
        **{f"budget_{k}": bounded(0, 1000) for k in (
            "like", "comment", "share", "follow", "reply", "new_post", "trending")},
        "trending_min_affinity": bounded(0.0, None),
        "trending_max_recipients": bounded(0, 100_000),
        "trending_min_engagement": bounded(0.0, None),
        "trending_audience_size": bounded(1, 100_000_000),
        "decided_ids": bounded(1, 100_000_000),
        "daily_budget": bounded(0, 1000),
        "quiet_start_h": bounded(0, 23),
        "quiet_end_h": bounded(0, 23),
        "aggregate_window_s": bounded(0, 7 * 86400),
        "min_p_open": bounded(0.0, 1.0),
        "delay_margin": bounded(0.0, 1.0),
        "max_delay_h": bounded(1, 72),
        "feedback_timeout_s": bounded(60, 7 * 86400),
        "min_author_engagements": bounded(1, 10_000),
        "history": bounded(1, 1000),
        "learning_rate": bounded(1e-6, 10.0),
        "user_learning_rate": bounded(0.0, 10.0),
    }


@dataclass(frozen=True)
class ControlSettings:
    filter_h: float
    fade_h: float
    discount: float
    post_discount: float
    see_more_boost: float
    max_entries: int

    BOUNDS = {
        "filter_h": bounded(0.0, 24 * 365),
        "fade_h": bounded(0.0, 24 * 365),
        "discount": bounded(0.0, 1.0),
        "post_discount": bounded(0.0, 1.0),
        "see_more_boost": bounded(0.0, 10.0),
        "max_entries": bounded(1, 10_000),
    }


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings
    redis: RedisSettings
    log: LogSettings
    reader: ReaderSettings
    services: ServiceSettings
    stream: StreamSettings
    features: FeatureSettings
    feed: FeedSettings
    notifications: NotificationSettings
    controls: ControlSettings
    experiments: tuple[Experiment, ...] = ()  # config/experiments.py; arms resolved per user

    @property
    def progress_group(self) -> str:
        """The consumer group the workers commit their read positions to ("" = none): a rebuild
        writing its own keyspace version commits to its own, so the live workers' lag stays
        theirs (flows.resources.ProgressCommits)."""
        group, version = self.kafka.progress_group, self.redis.write_version
        return f"{group}.v{version}" if group and version else group


_SECTION_TYPES = {
    "kafka": KafkaSettings,
    "redis": RedisSettings,
    "log": LogSettings,
    "reader": ReaderSettings,
    "services": ServiceSettings,
    "stream": StreamSettings,
    "features": FeatureSettings,
    "feed": FeedSettings,
    "notifications": NotificationSettings,
    "controls": ControlSettings,
}
_SHORTCUTS = {"KAFKA_BOOTSTRAP": ("kafka", "bootstrap"), "REDIS_URL": ("redis", "url")}
# masked by `public_dict` (`persona config show`)
SECRET_KEYS = frozenset({"password", "sentinel_password", "token"})
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}
# keys that were renamed: an old config file names what replaced them instead of failing bare
_REPLACED = {"redis.write_retries": "redis.outage_timeout_s (seconds to wait, not a count)"}


def _unknown_key(origin: str, name: str, known: list[str]) -> ConfigError:
    if name in _REPLACED:
        return ConfigError(f"{origin}: {name} was replaced by {_REPLACED[name]}")
    return ConfigError(f"{origin}: unknown key {name}; known: {known}")


def _merge(base: dict, over: dict, origin: str) -> None:
    for section, values in over.items():
        if section == "experiments":  # whole experiments, by name: a layer replaces or adds one
            base.setdefault("experiments", {}).update(values)
            continue
        if section not in base:
            raise ConfigError(f"{origin}: unknown section [{section}]; known: {sorted(base)}")
        for key, value in values.items():
            if key not in base[section]:
                raise _unknown_key(origin, f"{section}.{key}", sorted(base[section]))
            base[section][key] = value


def _coerce(section: str, key: str, raw: Any, kind: type, origin: str) -> Any:
    name = f"{section}.{key}"
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            word = str(raw).strip().lower()
            if word not in _TRUE | _FALSE:
                raise ValueError
            return word in _TRUE
        if kind is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{origin}: {name} must be {kind.__name__}, got {raw!r}") from None


def _env_overrides(env: dict[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for var, (section, key) in _SHORTCUTS.items():
        if env.get(var):
            out.setdefault(section, {})[key] = env[var]
    for var, value in env.items():
        if var.startswith("PERSONA_") and "__" in var:
            section, key = var[len("PERSONA_") :].lower().split("__", 1)
            out.setdefault(section, {})[key] = value
    return out


def _typed(section: str, key: str, raw: Any, origin: str) -> Any:
    """One value of a declared key, coerced to its type and checked against its bounds/choices."""
    cls = _SECTION_TYPES.get(section)
    types = {f.name: f.type for f in fields(cls)} if cls else {}
    if key not in types:
        raise _unknown_key(origin, f"{section}.{key}", sorted(types))
    kind = {"int": int, "float": float, "str": str, "bool": bool}[str(types[key])]
    value = _coerce(section, key, raw, kind, origin)
    lim = cls.BOUNDS.get(key)
    if lim is not None:
        lo, hi = lim["lo"], lim["hi"]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            raise ConfigError(f"{section}.{key}={value!r} is out of range; allowed {rng}")
    choices = getattr(cls, "CHOICES", {}).get(key)
    if choices is not None and value not in choices:
        raise ConfigError(f"{section}.{key}={value!r} is not one of {list(choices)}")
    if key == "ca_file" and value and not Path(value).is_file():
        raise ConfigError(f"{section}.ca_file={value!r}: no such file")
    return value


def _enable_from_env(experiments: dict, over: dict[str, str]) -> None:
    """PERSONA_EXPERIMENTS__<NAME>__ENABLED=false stops a declared experiment (arms live in files)."""
    for key, value in over.items():
        name, _, leaf = key.rpartition("__")
        if leaf != "enabled" or name not in experiments:
            raise ConfigError(f"environment: PERSONA_EXPERIMENTS__{key.upper()} is not supported; "
                              f"declare experiments in a config file, and use "
                              f"PERSONA_EXPERIMENTS__<NAME>__ENABLED to stop or start a declared one "
                              f"(declared: {sorted(experiments)})")
        experiments[name]["enabled"] = value


def load(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Default file, then `path` (if any), then environment; validated against the declared bounds."""
    env = dict(os.environ) if env is None else env
    with DEFAULT_FILE.open("rb") as f:
        raw: dict[str, dict[str, Any]] = tomllib.load(f)
    if path is not None:
        try:
            with Path(path).open("rb") as f:
                _merge(raw, tomllib.load(f), str(path))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    env_over = _env_overrides(env)
    _enable_from_env(raw.setdefault("experiments", {}), env_over.pop("experiments", {}))
    _merge(raw, env_over, "environment")
    built: dict[str, Any] = {}
    for section, cls in _SECTION_TYPES.items():
        kwargs = {}
        for key in (f.name for f in fields(cls)):
            if key not in raw[section]:
                raise ConfigError(f"{section}.{key} is missing from the configuration")
            kwargs[key] = _typed(section, key, raw[section][key], "config")
        built[section] = cls(**kwargs)
    try:
        built["experiments"] = parse_experiments(raw["experiments"], _coerce, _typed)
    except ExperimentError as exc:
        raise ConfigError(str(exc)) from None
    settings = Settings(**built)
    _check_access(settings)
    _check_notifications(settings)
    return settings


def _check_notifications(settings: Settings) -> None:
    """A notification due at the start of quiet hours must be able to wait until their end: in
    the settings, and in every experiment arm's (its overrides over them)."""
    checked = [("", settings.notifications)]
    for exp in settings.experiments:
        for arm in exp.arms:
            over = {key: value for section, key, value in arm.overrides
                    if section == "notifications"}
            if over:
                checked.append((f" in experiment {exp.name!r}, arm {arm.name!r}",
                                replace(settings.notifications, **over)))
    for where, n in checked:
        quiet = (n.quiet_end_h - n.quiet_start_h) % 24
        if n.max_delay_h < quiet:
            raise ConfigError(
                f"notifications.max_delay_h={n.max_delay_h}{where} is shorter than the quiet "
                f"hours ({n.quiet_start_h}:00 to {n.quiet_end_h}:00, {quiet} h): a notification "
                f"due at their start could only be sent in them; raise it to at least {quiet}")


def _check_access(settings: Settings) -> None:
    """Cross-key rules of the [kafka]/[redis] access settings."""
    k = settings.kafka
    if k.security_protocol.startswith("SASL_") and not (k.username and k.password):
        raise ConfigError(f"kafka.username and kafka.password are required by "
                          f"kafka.security_protocol={k.security_protocol!r}")
    r = settings.redis
    if r.username and not r.password:
        raise ConfigError("redis.password is required when redis.username is set")
    from config.security import sentinel_target  # it imports this module

    try:
        sentinel = sentinel_target(r.url)
    except ValueError as exc:
        raise ConfigError(f"redis.url: {exc}") from None
    if sentinel and r.cluster:
        raise ConfigError("redis.cluster = true and a redis+sentinel:// url exclude each other: "
                          "Sentinel watches one primary, a cluster fails over by itself")
    token = settings.reader.token
    if token and not any(t.strip() for t in token.split(",")):
        raise ConfigError("reader.token holds no token, only commas and spaces: give one, or "
                          "leave it empty for no token")


def as_dict(settings: Settings) -> dict[str, dict[str, Any]]:
    """Effective settings as plain data (for `persona config show` and for hashing a config)."""
    out: dict[str, dict[str, Any]] = {
        name: {f.name: getattr(getattr(settings, name), f.name) for f in fields(cls)}
        for name, cls in _SECTION_TYPES.items()
    }
    out["experiments"] = {e.name: e.to_dict() for e in settings.experiments}
    return out


def public_dict(settings: Settings) -> dict[str, dict[str, Any]]:
    """`as_dict` safe to print or log: secrets (and credentials inside URLs) are masked."""
    data = as_dict(settings)
    for section in data.values():
        for key, value in section.items():
            if key in SECRET_KEYS and value:
                section[key] = "***"
            elif isinstance(value, str):
                section[key] = mask_url(value)
    return data


def mask_url(value: str) -> str:
    """redis://user:pw@host/0 → redis://***@host/0 (anything else unchanged)."""
    if "://" in value and "@" in value.split("://", 1)[1]:
        scheme, rest = value.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return value
