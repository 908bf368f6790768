"""The flow's Kafka input: Bytewax's KafkaSource over the events topic and the flow's own erasure
command topic, whose partitions a pass that does not read commands *holds*.

A drained run over a recovery directory reads in passes (`scripts.runner.drain`): the events
first, then the commands the events produced. A later run's first pass again reads only events,
but its snapshots already hold the command partitions' offsets, and Bytewax 0.21 panics on a
resumed partition its source did not list ("Key StateKey(\"0-….erasures\") is not in this worker's
routing map", seen as "Send thread panic" in a cluster). Such a run is what every second
`persona run --until-drained --recovery-dir D` on the same D is. So with recovery the command
topic is always listed, and where it is not to be read its partitions end at once, keeping
their offset for the pass that reads them (`HeldPartition`).
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSource, KafkaSourceMessage
from bytewax.connectors.kafka.operators import KafkaOpOut
from bytewax.dataflow import Dataflow, operator
from bytewax.inputs import StatefulSourcePartition


class HeldPartition(StatefulSourcePartition):
    """A Kafka partition listed but not read in this pass: it ends at once and snapshots the
    offset it resumed with (None: never read; its first reading pass starts at the beginning).

    >>> held = HeldPartition(42)
    >>> held.snapshot()
    42
    >>> held.next_batch()
    Traceback (most recent call last):
    StopIteration
    """

    def __init__(self, offset: int | None):
        self.offset = offset

    def next_batch(self) -> list:
        raise StopIteration

    def snapshot(self) -> int | None:
        return self.offset


class KafkaInput(KafkaSource):
    """KafkaSource whose partitions of `held_topics` (a subset of `topics`) are listed but held,
    and whose partitions' consumers also get `consumer_config` (settings that the AdminClient
    listing the partitions, a producer-type client, would warn about: `auto.offset.reset`)."""

    def __init__(self, *args, held_topics: frozenset[str] = frozenset(),
                 consumer_config: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.held_topics = held_topics
        self.consumer_config = consumer_config or {}

    def build_part(self, step_id: str, for_part: str, resume_state: int | None):
        if for_part.split("-", 1)[1] in self.held_topics:  # parts are "{partition}-{topic}"
            return HeldPartition(resume_state)
        shared = self._add_config  # what KafkaSource gives every client it makes
        self._add_config = {**shared, **self.consumer_config}
        try:
            return super().build_part(step_id, for_part, resume_state)
        finally:
            self._add_config = shared


@operator
def kafka_input(step_id: str, flow: Dataflow, source: KafkaSource) -> KafkaOpOut:
    """`source`'s messages and errors, apart. Bytewax's `kafka.operators.input` with a source of
    our own, under the same step ids (its state is `{step_id}.kafka_input`), so recovery
    directories written before keep their offsets."""
    read = op.branch("split_err", op.input("kafka_input", flow, source),
                     lambda m: isinstance(m, KafkaSourceMessage))
    oks: op.Stream[KafkaSourceMessage] = read.trues
    errs: op.Stream[KafkaError] = read.falses
    return KafkaOpOut(oks, errs)
