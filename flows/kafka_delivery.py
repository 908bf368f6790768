"""Producing records to Kafka and returning once the broker has acknowledged every one, waiting
out a broker that is briefly away: the flow's confirmed sinks (`flows/kafka_sinks.py`) and
`persona produce` / the demo / the tests (`scripts.kafka_io.produce`) send through `Delivery`.

A broker that restarts, is fenced by its controller (a starved single-node broker misses its
heartbeats) or moves a partition's leader makes deliveries fail or hang for seconds. librdkafka
retries them itself until `message.timeout.ms`; what it then reports failed — a timeout, or a fatal
idempotence error after an unclean leader election, which ends the producer — `Delivery` produces
again (on a new producer after a fatal error), with backoff and a "Kafka degraded" line per round,
until its timeout (`kafka.delivery_timeout_s` in the workers) has passed; only then does it raise,
saying what to do. Before session 27 one 30 s flush decided: a two-process drain failed whenever
the broker was fenced in the middle of a batch.

At least once: a record reported failed may still have been written (a lost acknowledgement).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Producer
from prometheus_client import Counter

log = logging.getLogger("persona.kafka")

Record = tuple[bytes | None, bytes]  # (key, value)
WAIT_SLICE_S = 5.0  # a flush waits this long at a time, so a long wait says what it waits on
MAX_BACKOFF_S = 5.0


class DeliveryFailed(RuntimeError):
    pass


class _Failures:
    """A round's delivery callback: the records librdkafka reported failed, and why."""

    __slots__ = ("errors", "records")

    def __init__(self):
        self.records: list[Record] = []
        self.errors: list[KafkaError] = []

    def __call__(self, err, msg) -> None:
        if err is not None:
            self.errors.append(err)
            self.records.append((msg.key(), msg.value()))


# metrics (served by a worker's /metrics; a CLI producer registers them unseen)
REPRODUCED = Counter("persona_kafka_reproduced", "Records produced again because the broker did "
                     "not acknowledge them (a restart, a fenced broker, a leader election), by "
                     "topic", ["topic"])
DELIVERY_FAILURES = Counter("persona_kafka_delivery_failures", "Sends that failed after "
                            "kafka.delivery_timeout_s of retries (each stops the worker), by topic",
                            ["topic"])


class Delivery:
    """Produces records to one topic and returns once the broker has acknowledged every one
    (`send`), retrying as the module docstring says. `producer_of` builds a producer from the
    config (a new one after a fatal error)."""

    def __init__(self, config: dict, topic: str, what: str, timeout_s: float,
                 producer_of: Callable[[dict], Producer] = Producer, first_backoff_s: float = 0.5):
        self.config = {"acks": "all", "enable.idempotence": True, "linger.ms": 5, **config}
        self.topic, self.what, self.timeout_s = topic, what, timeout_s
        self.producer_of, self.first_backoff_s = producer_of, first_backoff_s
        self.producer = producer_of(self.config)

    def send(self, records: list[Record]) -> None:
        deadline = time.monotonic() + self.timeout_s
        pending, delay, rounds = records, self.first_backoff_s, 0
        while pending:
            reports = _Failures()
            for key, value in pending:
                self._produce(key, value, reports, deadline)
            self._wait(deadline, len(pending))
            failed, errors = reports.records, reports.errors
            if not failed:
                break
            if time.monotonic() + delay >= deadline:
                raise self._failure(f"{len(failed)} record(s) not acknowledged (last error: "
                                    f"{errors[-1]})")
            fatal = any(e.fatal() for e in errors)
            rounds += 1
            REPRODUCED.labels(self.topic).inc(len(failed))
            log.warning("Kafka degraded: %d of %d %s record(s) to %s not acknowledged (%s); "
                        "producing them again%s in %.1fs", len(failed), len(pending), self.what,
                        self.topic, errors[-1], " on a new producer" if fatal else "", delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
            if fatal:  # a fatal error ends the producer: nothing more can be sent through it
                self._replace_producer(deadline)
            pending = failed
        if rounds:
            log.warning("Kafka delivery to %s resumed: every %s record acknowledged after %d "
                        "round(s) of retries", self.topic, self.what, rounds)

    def _produce(self, key: bytes | None, value: bytes, on_delivery, deadline: float) -> None:
        while True:
            try:
                # (no poll per record: the flush that follows serves the batch's callbacks)
                self.producer.produce(self.topic, value, key=key, on_delivery=on_delivery)
                return
            except BufferError:  # the local queue is full (a long outage): let it drain
                self._check_deadline(deadline, "the producer's queue stayed full")
                self.producer.poll(0.5)
            except KafkaException as exc:  # the producer itself failed (fatal): a new one
                error = exc.args[0] if exc.args else None
                if not (isinstance(error, KafkaError) and error.fatal()):
                    raise
                self._check_deadline(deadline, f"the producer failed ({error})")
                log.warning("Kafka degraded: the %s producer failed (%s); a new one takes over",
                            self.what, error)
                self._replace_producer(deadline)

    def _wait(self, deadline: float, n: int) -> None:
        """Until librdkafka has reported every record in flight (acknowledged or failed)."""
        started = time.monotonic()
        while (in_flight := self.producer.flush(
                max(0.0, min(WAIT_SLICE_S, deadline - time.monotonic())))) > 0:
            self._check_deadline(deadline, f"{in_flight} record(s) still in flight")
            log.warning("Kafka degraded: %d of %d %s record(s) to %s not acknowledged after "
                        "%.0fs; still waiting", in_flight, n, self.what, self.topic,
                        time.monotonic() - started)

    def _replace_producer(self, deadline: float) -> None:
        """A new producer. The old one's records still queued are reported first (failed, after
        a fatal error), so this round produces them again: none is left behind unreported. Waited
        for until the deadline, not one flush slice: records dropped with an old producer that
        had not reported them were lost while `send` returned as if acknowledged."""
        while (left := self.producer.flush(
                max(0.0, min(WAIT_SLICE_S, deadline - time.monotonic())))) > 0:
            self._check_deadline(deadline, f"{left} record(s) of a failed producer were never "
                                           "reported")
        self.producer = self.producer_of(self.config)

    def _check_deadline(self, deadline: float, why: str) -> None:
        if time.monotonic() >= deadline:
            raise self._failure(why)

    def _failure(self, why: str) -> DeliveryFailed:
        DELIVERY_FAILURES.labels(self.topic).inc()
        return DeliveryFailed(
            f"{self.what} delivery to {self.topic} gave up after kafka.delivery_timeout_s "
            f"({self.timeout_s:.0f} s): {why}; is the broker up? Check KAFKA_BOOTSTRAP, or start "
            "it with `persona up`")

    def close(self) -> None:
        self.producer.flush(WAIT_SLICE_S)


__all__ = ["Delivery", "DeliveryFailed", "Record"]
