"""`persona run --recovery-dir D` checks the Kafka offsets D would resume from before it starts a
worker (`scripts.runner.check_recovery_dir`): a recovery directory made for another events topic,
or for a topic deleted and created again since, is refused with what to do, instead of a Bytewax
panic or a silent skip to the end of the new topic."""

from __future__ import annotations

import uuid

import orjson
import pytest
import redis

from scripts import kafka_io, runner
from scripts.generate import GeneratorConfig, generate
from scripts.recovery_store import resume_offsets
from scripts.services import ServiceError
from tests.integration.helpers import (
    cleanup,
    create_run_topics,
    produce_log,
    run_env,
    run_to_end,
)


def test_a_recovery_directory_that_does_not_fit_the_topic_is_refused(live, tmp_path):
    unique = uuid.uuid4().hex[:10]
    env = run_env(live, unique, "checks")
    settings = create_run_topics(env)
    client = redis.Redis.from_url(live[1])
    events, _ = generate(GeneratorConfig(users=40, days=0.5, seed=9))
    topic = settings.kafka.events_topic
    try:
        produce_log(settings, events, 1)
        assert run_to_end(settings, env, tmp_path) == 0
        resumed = resume_offsets(tmp_path)
        assert resumed[(topic, 0)] == len(events) + 1  # the whole log (and its malformed line)

        other = create_run_topics({**env, "PERSONA_KAFKA__EVENTS_TOPIC": f"{topic}-renamed"})
        kafka_io.recreate_topic(other.kafka.bootstrap, other.kafka.events_topic, 1)
        with pytest.raises(ServiceError, match=f"resumes Kafka topic.s. {topic}, which this run "
                                               "does not read"):
            runner.start(other, None, tail=False, recovery_dir=str(tmp_path), env_extra=env,
                         log=lambda m: None, metrics_port=0)

        kafka_io.recreate_topic(settings.kafka.bootstrap, topic, 1)  # fewer messages than read
        kafka_io.produce(settings.kafka.bootstrap, topic, [orjson.dumps(e) for e in events[:5]])
        with pytest.raises(ServiceError, match=rf"resumes partition 0 of {topic} at offset "
                                               rf"{len(events) + 1}, past its end \(5\)"):
            runner.start(settings, None, tail=False, recovery_dir=str(tmp_path), env_extra=env,
                         log=lambda m: None, metrics_port=0)
    finally:
        cleanup(settings, client)


def test_offsets_deleted_by_retention_resume_at_the_oldest_message_kept(live, tmp_path):
    """Workers down for longer than the topic's retention: the messages their recovery directory
    would resume at are gone. librdkafka's default would then jump to the end of the partition and
    skip every retained message unread; the flow resumes at the oldest one kept instead, and the
    runner says how many were lost. Retention is played by Kafka's DeleteRecords."""
    from confluent_kafka import TopicPartition

    from scripts import services

    unique = uuid.uuid4().hex[:10]
    env = run_env(live, unique, "retention")
    settings = create_run_topics(env)
    client = redis.Redis.from_url(live[1])
    events, _ = generate(GeneratorConfig(users=40, days=0.5, seed=9))
    half = len(events) // 2
    later = events[half:] + [{"v": 1, "event_id": "sentinel", "type": "user_created",
                              "ts": events[-1]["ts"] + 1, "user_id": "zz-sentinel",
                              "interests": ["t01"]}]
    bootstrap, topic = settings.kafka.bootstrap, settings.kafka.events_topic
    try:
        produce_log(settings, events[:half], 1)
        assert run_to_end(settings, env, tmp_path) == 0
        resumed = resume_offsets(tmp_path)[(topic, 0)]
        kafka_io.produce(bootstrap, topic, [orjson.dumps(e) for e in later])
        gone = len(later) // 2
        admin = services.admin_client(bootstrap, 30.0)
        for future in admin.delete_records([TopicPartition(topic, 0, resumed + gone)]).values():
            future.result()

        logs: list[str] = []
        assert runner.run(settings, None, tail=False, recovery_dir=str(tmp_path), snapshot_s=1,
                          env_extra=env, log=logs.append, metrics_port=0) == 0
        assert any(f"partition 0 of {topic} resumes at offset {resumed}" in m
                   and f"{gone:,} were never read" in m for m in logs), logs
        sentinel = list(client.scan_iter(f"{settings.redis.prefix}:v*:feed:{{zz-sentinel}}"))
        assert sentinel, "the kept messages after the deleted ones were skipped"
    finally:
        cleanup(settings, client)
