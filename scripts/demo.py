"""`persona demo`: synthetic activity → Kafka → Bytewax workers → Redis → feeds printed with reasons."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import orjson
import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import config
from operators.redis_store import connect_to
from reader import PersonaClient
from scripts import kafka_io, runner, services
from scripts.generate import GeneratorConfig, generate, write_log

DEMO_ENV = {
    "PERSONA_KAFKA__EVENTS_TOPIC": "persona.demo.events",
    "PERSONA_KAFKA__DEAD_LETTER_TOPIC": "persona.demo.dead-letters",
    "PERSONA_REDIS__PREFIX": "persona-demo",
}


def clear_prefix(client: redis.Redis, prefix: str) -> int:
    n = 0
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        n += client.delete(key)
    return n


def planted_share(feed: dict, topics: set[str], post_topics: dict, k: int = 10) -> float:
    items = feed["items"][:k]
    if not items:
        return 0.0
    return sum(bool(topics & set(post_topics.get(i["post_id"], []))) for i in items) / len(items)


def main(users: int = 300, days: float = 3.0, seed: int = 7, show: int = 3,
         console: Console | None = None) -> None:
    console = console or Console()
    base = config.load()
    bootstrap, redis_url = services.up(base, log=lambda m: console.print(f"[dim]{m}[/]"))
    env = dict(DEMO_ENV, KAFKA_BOOTSTRAP=bootstrap, REDIS_URL=redis_url)
    settings = config.load(env=env)

    console.rule("1. synthetic social activity")
    t0 = time.time()
    events, truth = generate(GeneratorConfig(users=users, days=days, seed=seed))
    log_path = Path(base.services.cache_dir) / "demo" / "events.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    write_log(log_path, events, truth)
    console.print(f"{len(events):,} events for {users} users over {days} days → {log_path} "
                  f"({time.time() - t0:.1f}s)")

    console.rule("2. produce to Kafka")
    for topic in (settings.kafka.events_topic, settings.kafka.dead_letter_topic,
                  settings.kafka.erasures):  # an earlier demo's erasure commands must not apply
        kafka_io.recreate_topic(bootstrap, topic, settings.kafka.partitions)
    r = connect_to(settings.redis)
    clear_prefix(r, settings.redis.prefix)
    lines = [orjson.dumps(e) for e in events]
    with Progress(TextColumn("producing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("produce", total=len(lines))
        kafka_io.produce(bootstrap, settings.kafka.events_topic, lines,
                         progress=lambda n: bar.update(task, completed=n))

    console.rule("3. Bytewax workers consume until drained")
    t1 = time.time()
    # a recovery directory of its own: the run then also applies the erasure commands of the
    # log's deleted users (read back in a second pass over the same state: runner.drain)
    with tempfile.TemporaryDirectory(prefix="persona-demo-") as recovery:
        code = runner.run(settings, None, tail=False, env_extra=env, recovery_dir=recovery,
                          log=lambda m: console.print(f"[dim]{m}[/]"))
    elapsed = time.time() - t1
    if code != 0:
        raise SystemExit(f"workers failed with exit code {code}")
    console.print(f"processed {len(lines):,} events in {elapsed:.1f}s "
                  f"(including worker start-up) → {len(lines) / elapsed:,.0f} events/s")

    console.rule("4. feeds read back through the reader")
    client = PersonaClient(r, settings.redis.prefix)
    likes: dict[str, int] = {}
    for e in events:
        if e["type"] == "like":
            likes[e["user_id"]] = likes.get(e["user_id"], 0) + 1
    shown = sorted(likes, key=lambda u: (-likes[u], u))[:show]
    shares, base_rates = [], []
    for user in sorted(truth.user_topics):
        raw = client.raw_feed(user)
        if raw:
            shares.append(planted_share(orjson.loads(raw), set(truth.user_topics[user]),
                                        truth.post_topics))
    posts = list(truth.post_topics.values())
    for user in truth.user_topics:  # chance level: share of all posts in the user's planted topics
        planted = set(truth.user_topics[user])
        base_rates.append(sum(bool(planted & set(ts)) for ts in posts) / max(1, len(posts)))
    for user in shown:
        page = client.feed(user, limit=8)
        planted = ", ".join(truth.user_topics.get(user, []))
        table = Table(title=f"{user} — planted interests: {planted}", title_justify="left")
        for col in ("#", "post", "author", "topics", "score", "why"):
            table.add_column(col)
        for pos, item in enumerate(page.items, 1):
            table.add_row(str(pos), item["post_id"], item["author_id"] or "",
                          ",".join(truth.post_topics.get(item["post_id"], [])),
                          f"{item['score']:.3f}", "; ".join(item["explanations"]))
        console.print(table)
    console.rule("summary")
    mean_share = sum(shares) / max(1, len(shares))
    console.print(f"feeds written: {len(shares)} users; top-10 items in the user's planted topics: "
                  f"{mean_share:.0%} (chance: {sum(base_rates) / max(1, len(base_rates)):.0%})")
    console.print(f"read one yourself: `persona feed {shown[0] if shown else 'u0001'} "
                  f"--prefix {settings.redis.prefix}` or `persona serve` then GET /feed/<user>")
