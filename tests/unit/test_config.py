from __future__ import annotations

import pytest

import config
from config import ConfigError


def test_defaults_load_and_are_in_range():
    s = config.load(env={})
    assert s.feed.size == 50 and s.kafka.partitions >= 1


def test_env_overrides_and_shortcuts():
    s = config.load(env={"PERSONA_FEED__SIZE": "30", "KAFKA_BOOTSTRAP": "h:1", "REDIS_URL": "redis://x"})
    assert s.feed.size == 30 and s.kafka.bootstrap == "h:1" and s.redis.url == "redis://x"


@pytest.mark.parametrize("var,value,message", [
    ("PERSONA_FEED__SIZE", "0", "feed.size=0 is out of range"),
    ("PERSONA_FEED__MMR_LAMBDA", "1.5", "feed.mmr_lambda"),
    ("PERSONA_KAFKA__PARTITIONS", "two", "kafka.partitions must be int"),
    ("PERSONA_FEED__NOPE", "1", "unknown key feed.nope"),
    ("PERSONA_REDIS__WRITE_RETRIES", "8", "redis.write_retries was replaced by redis.outage_timeout_s"),
])
def test_bad_values_fail_fast_naming_the_key(var, value, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("=", "=")):
        config.load(env={var: value})


def test_override_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[feed]\nauthor_cap = 5\n")
    assert config.load(path, env={}).feed.author_cap == 5
    path.write_text("[feed]\nauthor_cap = 0\n")
    with pytest.raises(ConfigError, match="feed.author_cap"):
        config.load(path, env={})


def test_a_renamed_key_in_a_file_names_its_replacement(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("[redis]\nwrite_retries = 8\n")
    with pytest.raises(ConfigError, match=r"redis\.write_retries was replaced by redis\.outage_timeout_s"):
        config.load(path, env={})


def test_a_rebuild_commits_its_progress_to_a_group_of_its_own():
    base = {"PERSONA_KAFKA__PROGRESS_GROUP": "workers"}
    assert config.load(env=base).progress_group == "workers"
    rebuild = config.load(env={**base, "PERSONA_REDIS__WRITE_VERSION": "7"})
    assert rebuild.progress_group == "workers.v7"
    assert config.load(env={"PERSONA_KAFKA__PROGRESS_GROUP": "",
                            "PERSONA_REDIS__WRITE_VERSION": "7"}).progress_group == ""


def test_a_delay_window_shorter_than_the_quiet_hours_is_refused():
    with pytest.raises(ConfigError, match="max_delay_h=6 is shorter than the quiet hours"):
        config.load(env={"PERSONA_NOTIFICATIONS__MAX_DELAY_H": "6"})
    config.load(env={"PERSONA_NOTIFICATIONS__MAX_DELAY_H": "6",  # no quiet hours: fine
                     "PERSONA_NOTIFICATIONS__QUIET_START_H": "0",
                     "PERSONA_NOTIFICATIONS__QUIET_END_H": "0"})
