"""`[stream] gc_freeze`: after a full collection the survivors are frozen (never scanned again).

That is safe only if what a worker keeps makes no reference cycles: a frozen object that becomes
garbage is freed by reference counting, but a frozen cycle would never be collected. So: the
objects that sit *in* cycles after a whole in-process flow run must not grow with the events.
"""

from __future__ import annotations

import gc
import itertools

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

import config
from flows.feeds import build_flow, freeze_after_full_collection
from operators.feature_store import MemoryFeatureStore
from scripts.bench import workload
from tests.unit.test_flow import _Apply


class _Discard(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        class Partition(StatelessSinkPartition):
            def write_batch(self, items):
                pass
        return Partition()


class _Writes(DynamicSink):
    def __init__(self):
        self.store, self.feeds = MemoryFeatureStore(), {}

    def build(self, step_id, worker_index, worker_count):
        return _Apply(self.store, {})  # feeds are dropped, as the Redis sink does


def in_cycles(objects: list) -> list:
    """The objects of `objects` that lie on a reference cycle among them (Tarjan's strongly
    connected components, iterative; a component of one counts if it refers to itself)."""
    at = {id(o): i for i, o in enumerate(objects)}
    edges = [[at[id(r)] for r in gc.get_referents(o) if id(r) in at] for o in objects]
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    cyclic: list = []
    for root in range(len(objects)):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            for j in range(i, len(edges[v])):
                w = edges[v][j]
                if w not in index:
                    work += [(v, j + 1), (w, 0)]
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                if low[v] == index[v]:
                    component = []
                    while not component or component[-1] != v:
                        component.append(stack.pop())
                        on_stack.discard(component[-1])
                    if len(component) > 1 or v in edges[v]:
                        cyclic += [objects[k] for k in component]
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[v])
    return cyclic


def test_in_cycles_finds_cycles_and_only_them():
    a, b, c = [], [], {"x": []}
    a.append(b)
    b.append(a)
    me: list = []
    me.append(me)
    found = in_cycles([a, b, c, c["x"], me])
    assert [id(o) for o in found] and {id(o) for o in found} == {id(a), id(b), id(me)}


def _run_flow(events: int) -> None:
    payloads = [orjson.dumps(e) for e in itertools.islice(workload(events, events // 10, 7), events)]
    writes = _Writes()
    run_main(build_flow(config.load(env={}), source=TestingSource(payloads),
                        dead_letters=_Discard(), writes=writes, store_of=lambda: writes.store,
                        notifications=_Discard()))


def _cyclic_after_a_flow_run(events: int) -> int:
    """Objects on reference cycles among the garbage the run leaves once everything is dropped."""
    gc.collect()
    gc.disable()
    try:
        _run_flow(events)  # its flow, states and stores are garbage on return
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
    finally:
        gc.set_debug(0)
        gc.enable()
    garbage = list(gc.garbage)
    gc.garbage.clear()
    return len(in_cycles(garbage))


def test_the_flows_states_make_no_reference_cycles():
    small, large = _cyclic_after_a_flow_run(600), _cyclic_after_a_flow_run(3000)
    assert large == small, (
        f"{large} objects on reference cycles after 3,000 events vs {small} after 600: some "
        "state the workers keep makes cycles, which [stream] gc_freeze would leak once frozen")


def test_a_full_collection_freezes_its_survivors():
    survivor = [{"state": i} for i in range(1000)]
    gc.callbacks.append(freeze_after_full_collection)
    try:
        gc.collect()
        assert gc.get_freeze_count() >= len(survivor)
    finally:
        gc.callbacks.remove(freeze_after_full_collection)
        gc.unfreeze()
