"""Sealing what goes through the broker (bot/scale/protocol.py): no Redis needed."""

from __future__ import annotations

import json

import pytest

from bot.scale.protocol import BrokerSeal, job_id
from handlers.events import Address, PhotoRef
from handlers.pipeline import StyleJob
from inference import StyleRequest
from tests.conftest import SECRET


def test_sealed_task_blob_opens_only_for_its_task():
    secret = SECRET.encode()
    seal = BrokerSeal(secret)
    one, two = job_id(secret, "a"), job_id(secret, "b")
    blob = seal.seal(one, {"work": {"chat": "12345"}})
    assert "12345" not in blob
    assert seal.open(one, blob) == {"work": {"chat": "12345"}}
    with pytest.raises(Exception):
        seal.open(two, blob)
    with pytest.raises(Exception):
        BrokerSeal(b"another instance's secret 000000").open(one, blob)


def test_job_ids_are_keyed_hashes_of_the_random_key():
    secret = SECRET.encode()
    assert job_id(secret, "a") == job_id(secret, "a") != job_id(secret, "b")
    assert job_id(secret, "a") != job_id(b"x" * 32, "a")
    assert "a" not in job_id(secret, "a")[:1] or len(job_id(secret, "a")) == 40


def test_a_sealed_style_work_carries_no_reference_in_clear():
    secret = SECRET.encode()
    work = StyleJob(key="k", chat=Address("telegram", "555000111"), photos=(PhotoRef("AgACAgFILEID"),), request=StyleRequest("ink"), caption="Ink")
    job = job_id(secret, work.key)
    blob = BrokerSeal(secret).seal(job, {"work": work.to_dict()})
    message = json.dumps({"args": [blob], "id": job})
    assert "555000111" not in message and "AgACAgFILEID" not in message
    assert StyleJob.from_dict(BrokerSeal(secret).open(job, blob)["work"]) == work


def test_scaling_settings():
    from bot.settings import SettingsError, from_environment

    plain = from_environment({}, dotenv=None)
    assert not plain.scaled_out and plain.broker_url == ""
    scaled = from_environment({"DARKROOM_BROKER_URL": "redis://:pw-secret-123@127.0.0.1:6379/0"}, dotenv=None)
    assert scaled.scaled_out and scaled.redis_url == scaled.broker_url
    assert scaled.broker_url in scaled.secrets()  # the password never reaches a log line
    assert "pw-secret" not in repr(scaled)
    with pytest.raises(SettingsError, match="DARKROOM_INPUT_TTL"):
        from_environment({"DARKROOM_BROKER_URL": "redis://127.0.0.1/0", "DARKROOM_INPUT_TTL": "60"}, dotenv=None)
    with pytest.raises(SettingsError, match="DARKROOM_REDIS_URL"):
        from_environment({"DARKROOM_BROKER_URL": "amqp://127.0.0.1//"}, dotenv=None)
    other = from_environment({"DARKROOM_BROKER_URL": "amqp://127.0.0.1//", "DARKROOM_REDIS_URL": "redis://r/1"}, dotenv=None)
    assert other.redis_url == "redis://r/1"
