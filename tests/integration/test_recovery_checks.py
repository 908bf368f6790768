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
