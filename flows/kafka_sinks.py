"""The flow's Kafka sinks (dead letters, notification decisions, erasure commands): each batch goes
through a `flows.kafka_delivery.Delivery`, so it is acknowledged by the broker before Bytewax
moves on, and a broker that is briefly away is waited out (up to `kafka.delivery_timeout_s`)
instead of failing the worker; only then does the worker fail, loudly, for its supervisor to
restart it on its recovery directory.

At least once: a restart re-emits its last epoch, and a record reported failed may still have been
written. The notification topic's consumers deduplicate by notification_id; erasure commands are
idempotent; a dead letter can repeat.
"""

from __future__ import annotations

import logging
import time

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows import failures, metrics
from flows.kafka_delivery import Delivery, Record
from schemas import DeadLetter
from schemas.erasure import Command, encode_command
from schemas.notifications import encode_decision

log = logging.getLogger("persona.kafka")


class _ConfirmedPartition(StatelessSinkPartition):
    """Writes each batch through a `Delivery`: the worker moves on only once it is acknowledged."""

    what = "records"

    def __init__(self, delivery: Delivery):
        self.delivery = delivery

    def encode(self, item) -> Record:
        raise NotImplementedError

    @failures.reported
    def write_batch(self, items):
        self.delivery.send([self.encode(item) for item in items])
        self.delivered(items)

    def delivered(self, items) -> None:
        pass

    def close(self):
        self.delivery.close()


class _DeadLetterPartition(_ConfirmedPartition):
    what = "dead-letter"  # (never dropped silently: the worker fails if they cannot be written)
    LOG_EVERY_S = 60.0  # a bad producer can send thousands a second: one line a minute at most

    def __init__(self, delivery: Delivery):
        super().__init__(delivery)
        self._unlogged, self._next_log = 0, 0.0

    def encode(self, dead_letter: DeadLetter) -> Record:
        return None, dead_letter.encode()

    def delivered(self, items) -> None:
        self._unlogged += len(items)
        now = time.monotonic()
        if now >= self._next_log:
            log.info("dead-lettered %d events since the last such line (their reasons are in "
                     "the dead-letter topic; persona_dead_letters_total by reason kind)",
                     self._unlogged)
            self._unlogged, self._next_log = 0, now + self.LOG_EVERY_S


class _NotificationPartition(_ConfirmedPartition):
    what = "notification"

    def encode(self, record: dict) -> Record:
        return record["user_id"].encode(), encode_decision(record)

    def delivered(self, items) -> None:
        metrics.count_decisions(items)


class _CommandPartition(_ConfirmedPartition):
    what = "erasure command"

    def encode(self, command: Command) -> Record:
        return command.key.encode(), encode_command(command)


class _ConfirmedSink(DynamicSink):
    partition: type[_ConfirmedPartition]

    def __init__(self, bootstrap: str, topic: str, extra: dict, timeout_s: float):
        """`extra`: access settings (config.security.kafka_config); `timeout_s`:
        kafka.delivery_timeout_s."""
        self.bootstrap, self.topic, self.extra, self.timeout_s = bootstrap, topic, extra, timeout_s

    def build(self, step_id, worker_index, worker_count):
        return self.partition(Delivery({"bootstrap.servers": self.bootstrap, **self.extra},
                                       self.topic, self.partition.what, self.timeout_s))


class DeadLetterSink(_ConfirmedSink):
    """Invalid events (schemas.DeadLetter) to the dead-letter topic, delivery confirmed (Bytewax's
    KafkaSink does not wait for it)."""

    partition = _DeadLetterPartition


class NotificationSink(_ConfirmedSink):
    """Decision records to the notifications topic (key = recipient), delivery confirmed. At least
    once: a delivery service deduplicates by notification_id."""

    partition = _NotificationPartition


class ErasureCommandSink(_ConfirmedSink):
    """Erasure commands (schemas.erasure) to the flow's own command topic, keyed by the receiving
    state's key, delivery confirmed; the same flow reads them back (at least once: idempotent)."""

    partition = _CommandPartition


__all__ = ["DeadLetterSink", "ErasureCommandSink", "NotificationSink"]
