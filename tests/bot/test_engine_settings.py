"""DARKROOM_ENGINE and DARKROOM_PRECISION: read once in bot/settings/__init__.py, handed to the engine."""

from __future__ import annotations

import pytest

from bot.app import engine_config
from bot.settings import SettingsError, from_environment


def settings(**env: str):
    return from_environment({"TELEGRAM_BOT_TOKEN": "123:abc", **env}, dotenv=None)


def test_empty_or_auto_lets_the_machine_choose():
    for value in ("", "auto", " AUTO "):
        s = settings(DARKROOM_ENGINE=value, DARKROOM_PRECISION=value)
        assert (s.engine, s.precision) == ("", "")


def test_a_forced_backend_and_precision_reach_the_engine():
    config = engine_config(settings(DARKROOM_ENGINE="OpenVINO", DARKROOM_PRECISION="bf16"))
    assert (config.backend, config.precision) == ("openvino", "bf16")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("DARKROOM_ENGINE", "tensorrt", "DARKROOM_ENGINE must be onnxruntime or openvino"),
        ("DARKROOM_PRECISION", "fp16", "DARKROOM_PRECISION must be fp32 or bf16"),
        ("DARKROOM_PRECISION", "int8", "DARKROOM_PRECISION=int8 is not offered"),
    ],
)
def test_unknown_values_are_refused_by_name(key, value, message):
    with pytest.raises(SettingsError, match=message):
        settings(**{key: value})
