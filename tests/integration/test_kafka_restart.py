"""The Kafka broker restarted while the worker consumes: a private single-node broker (free ports,
data in a tmp dir, started from the cached jars by scripts/services.py) is stopped mid-stream for
3 s and started again on the same data. The worker logs the outage, resumes from its position, and
ends with the contents of an uninterrupted run over the same topic: nothing lost (every key, exact
kinds byte for byte) and nothing doubled (the topic's first line, malformed, is dead-lettered once).
"""

from __future__ import annotations

import time
import uuid

import orjson
import redis

from scripts import kafka_io, runner
from scripts.generate import GeneratorConfig, generate
from tests.integration.helpers import (
    FIRST_LINE,
    PrivateKafka,
    assert_same_user_features,
    cleanup,
    compare_runs,
    create_run_topics,
    dead_letters_of_first_line,
    explain,
    key_digests,
    run_env,
    wait_first_write,
    wait_quiet,
)


def test_consumption_resumes_after_a_broker_restart(live, tmp_path, capfd):
    kafka = PrivateKafka(tmp_path / "kafka")
    kafka.start()
    unique = uuid.uuid4().hex[:10]
    client = redis.Redis.from_url(live[1])
    # seen-only events (impressions, dwell) re-rank within stream.seen_rerank_s (30 s): shortened
    # so that the tailing run's last ranks happen within the 8 s of quiet it waits for
    envs = {run: dict(run_env(live, unique, run), KAFKA_BOOTSTRAP=kafka.bootstrap,
                      # every timer shorter than the quiet window below: graph records are
                      # published by the suggestions timer, up to its interval after the input
                      PERSONA_STREAM__SEEN_RERANK_S="1", PERSONA_STREAM__SUGGEST_INTERVAL_S="1",
                      PERSONA_STREAM__BACKLOG_INTERVAL_S="0")  # no catch-up stretch
            for run in ("ref", "restart")}
    settings = {}
    try:
        settings = {run: create_run_topics(env) for run, env in envs.items()}
        topic = settings["ref"].kafka.events_topic
        kafka_io.recreate_topic(kafka.bootstrap, topic, 1)
        # enough work to outlast the outage (120 users could be drained within it)
        events, _ = generate(GeneratorConfig(users=200, days=1, seed=29))
        # without the generator's two deletions: the tailing worker reads its erasure commands
        # back and applies them, the drained reference does not (README "Erasure")
        events = [e for e in events if e["type"] != "user_deleted"]
        # the last event: a new user, whose feed shows that the end of the topic was processed
        last = {"event_id": "sentinel", "type": "user_created", "ts": events[-1]["ts"] + 1,
                "user_id": "zz-sentinel", "interests": ["t01"]}
        kafka_io.produce(kafka.bootstrap, topic,
                         [FIRST_LINE] + [orjson.dumps(e) for e in events + [last]])

        assert runner.run(settings["ref"], None, tail=False, env_extra=envs["ref"],
                          recovery_dir=str(tmp_path / "ref-recovery"), snapshot_s=1,
                          log=lambda m: None, metrics_port=0) == 0
        expected = key_digests(client, settings["ref"].redis.prefix)

        # tailing, as in production, until nothing changes for longer than the rank interval
        procs = runner.start(settings["restart"], None, tail=True, env_extra=envs["restart"],
                             recovery_dir=str(tmp_path / "recovery"), snapshot_s=1,
                             log=lambda m: None, metrics_port=0)
        wait_first_write(settings["restart"], procs[0])
        time.sleep(0.5)
        assert procs[0].poll() is None, "the worker finished before the broker was stopped"
        kafka.stop()
        time.sleep(3.0)
        assert procs[0].poll() is None, "the worker died while the broker was down"
        kafka.start()
        # the confirmed sinks wait for the broker (kafka.delivery_timeout_s) instead of failing
        # the worker: it rides the outage out and is never restarted
        try:
            # quiet for longer than the rank interval and stream.reorder_wait_s
            got = wait_quiet(client, settings["restart"].redis.prefix, procs[0], 8.0,
                             sentinel="v*:feed:{zz-sentinel}")
        finally:
            runner.stop(procs)

        diff = compare_runs(expected, got)
        assert diff == {"missing": [], "extra": [], "different": []}, (
            {k: (len(v), v[:5]) for k, v in diff.items()},
            explain(client, (settings["ref"].redis.prefix, settings["restart"].redis.prefix),
                    diff))
        assert_same_user_features(client, settings["ref"].redis.prefix,
                                  settings["restart"].redis.prefix)
        assert dead_letters_of_first_line(settings["restart"]) == 1
        err = capfd.readouterr().err
        assert "Kafka degraded" in err, err[-2000:]
    finally:
        for s in settings.values():
            cleanup(s, client)
        kafka.stop()
