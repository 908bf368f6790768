"""What Redis persistence costs the workers' writes: `python -m scripts.bench_persistence`.

The workers' write pattern (`RedisWriter.write_batch`, pipelines of `--batch` feed records of
`--value-bytes`) against a private redis-server per setting (none, AOF `appendfsync everysec`,
AOF `appendfsync always`), best of `--rounds`; prints records/s and the time per pipeline. The
choice it informs: README "Redis durability".
"""

from __future__ import annotations

import argparse
import tempfile
import time

from operators.redis_store import RedisWriter, connect
from schemas.keyspace import Keyspace
from scripts.runner import free_ports
from scripts.services import private_redis

SETTINGS = {"none": ("--appendonly", "no"),
            "appendfsync everysec": ("--appendonly", "yes", "--appendfsync", "everysec"),
            "appendfsync always": ("--appendonly", "yes", "--appendfsync", "always")}


def measure(args: tuple[str, ...], records: int, batch: int, value: bytes, rounds: int) -> float:
    """The best of `rounds` times to write `records` records (new keys each round), in seconds."""
    with tempfile.TemporaryDirectory() as data:
        port = free_ports(1)[0]
        server = private_redis(port, data, args)
        try:
            writer = RedisWriter(connect(f"redis://127.0.0.1:{port}/0"), Keyspace("bench", "1"))
            times = []
            for r in range(rounds):
                start = time.perf_counter()
                for i in range(0, records, batch):
                    writer.write_batch([("feed", f"u{r}-{j}", value)
                                        for j in range(i, min(i + batch, records))])
                times.append(time.perf_counter() - start)
            return min(times)
        finally:
            server.kill()
            server.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--value-bytes", type=int, default=1600, help="about a stored feed's size")
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args(argv)
    print(f"{a.records:,} records of {a.value_bytes:,} B in pipelines of {a.batch}, "
          f"best of {a.rounds}:")
    for name, args in SETTINGS.items():
        seconds = measure(args, a.records, a.batch, b"x" * a.value_bytes, a.rounds)
        pipelines = -(-a.records // a.batch)
        print(f"  {name:22s} {a.records / seconds:9,.0f} records/s  "
              f"{seconds * 1e3 / pipelines:6.1f} ms per pipeline")


if __name__ == "__main__":
    main()
