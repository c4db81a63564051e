"""The signing identity in the data directory (`darkroom credentials`), what `darkroom verify`
prints, and what `darkroom audit` makes of the identity's files."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from bot.cli import main
from bot.engine_config import signing_identity
from bot.settings import StartupError, from_environment
from bot.storage import credentials
from bot.storage.audit import audit
from inference.imageio import SOURCE_NEURAL, AILabel, encode_jpeg
from inference.provenance import ModelCredit, Signer, read_credentials

SECRET = "f" * 64


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    data = tmp_path / "data"
    for key in list(os.environ):
        if key.startswith(("DARKROOM_", "TELEGRAM_", "WECHAT_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DARKROOM_DATA_DIR", str(data))
    monkeypatch.setenv("DARKROOM_SECRET", SECRET)
    monkeypatch.setenv("DARKROOM_PROVIDER_NAME", "Example Studio")
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    return data


def result_jpeg(provider: str = "Example Studio") -> bytes:
    rgb = np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    return encode_jpeg(rgb, AILabel(SOURCE_NEURAL, "Ink wash", "Darkroom 0.1.0", provider, "ab" * 16))


def test_init_writes_a_chain_and_a_sealed_key_only_the_bot_can_open(env, capsys):
    assert main(["credentials", "init"]) == 0
    assert "Example Studio" in capsys.readouterr().out
    chain, key = env / credentials.CHAIN, env / credentials.KEY
    for path in (chain, key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(env.stat().st_mode) == 0o700
    sealed = key.read_bytes()
    assert sealed.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError):  # it needs a password: no plain key on disk
        serialization.load_pem_private_key(sealed, None)
    # The root's own key was never written: one private key in the directory, the sealed one.
    assert sorted(p.name for p in env.iterdir()) == sorted([credentials.CHAIN, credentials.KEY])
    assert b"PRIVATE KEY" not in chain.read_bytes()
    # The bot opens it with its secret, and a wrong secret does not.
    identity = credentials.load(env, SECRET.encode())
    assert identity is not None and identity.anchor in chain.read_bytes()
    with pytest.raises(StartupError):
        credentials.load(env, b"e" * 64)
    # A second init does not replace it by accident.
    assert main(["credentials", "init"]) == 1
    assert main(["credentials", "init", "--force"]) == 0
    assert credentials.load(env, SECRET.encode()) != identity


def test_signing_is_on_by_default_once_an_identity_exists_and_can_be_switched_off(env, monkeypatch):
    assert signing_identity(from_environment(dotenv=None)) is None  # no identity yet: nothing to sign with
    credentials.init(env, SECRET.encode(), "Example Studio")
    assert signing_identity(from_environment(dotenv=None)) is not None
    monkeypatch.setenv("DARKROOM_CONTENT_CREDENTIALS", "false")
    assert signing_identity(from_environment(dotenv=None)) is None


def test_verify_prints_what_the_credentials_and_labels_say(env, tmp_path, capsys):
    credentials.init(env, SECRET.encode(), "Example Studio")
    identity = credentials.load(env, SECRET.encode())
    assert identity is not None
    label = AILabel(SOURCE_NEURAL, "Ink wash", "Darkroom 0.1.0", "Example Studio", "ab" * 16)
    signed = Signer(identity).sign(result_jpeg(), label, (ModelCredit("multistyle26", "Apache-2.0"),))
    path = tmp_path / "result.jpg"
    path.write_bytes(signed)
    assert main(["verify", str(path)]) == 0
    out = capsys.readouterr().out
    for line in (
        "Content Credentials: Trusted",
        "signed by: Example Studio content credentials",
        "action: c2pa.created, source type: compositeWithTrainedAlgorithmicMedia",
        "style: Ink wash",
        "model: multistyle26 (Apache-2.0)",
        "ingredients: 0, thumbnail: no",
        "XMP digital source type: compositeWithTrainedAlgorithmicMedia",
        "GB 45438 implicit label (TC260:AIGC):",
        "Label: 1",
        "ContentProducer: Example Studio",
        f"ProduceID: {'ab' * 16}",
        "ContentPropagator: ",
    ):
        assert line in out, line

    unsigned = tmp_path / "plain.jpg"
    unsigned.write_bytes(result_jpeg())
    assert main(["verify", str(unsigned)]) == 1
    out = capsys.readouterr().out
    assert "Content Credentials: none" in out and "Label: 1" in out


def test_import_brings_the_operators_own_chain(env, tmp_path):
    chain, key = credentials.make_identity("Operator CA")
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    assert main(["credentials", "import", str(tmp_path / "chain.pem"), str(tmp_path / "key.pem")]) == 0
    identity = credentials.load(env, SECRET.encode())
    assert identity is not None and identity.chain_pem == chain
    signed = Signer(identity).sign(result_jpeg(), AILabel(SOURCE_NEURAL, "Ink", "Darkroom"), ())
    assert read_credentials(signed, identity.anchor).state == "Trusted"
    # A chain whose first certificate is not the key's is refused.
    _, other = credentials.make_identity("Other")
    (tmp_path / "other.pem").write_bytes(
        other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    assert main(["credentials", "import", str(tmp_path / "chain.pem"), str(tmp_path / "other.pem")]) == 1


def test_the_audit_accepts_the_identity_and_catches_a_plain_key_or_extra_content(env):
    credentials.init(env, SECRET.encode(), "Example Studio")
    out = io.StringIO()
    assert audit(env, out) == 0, out.getvalue()
    assert credentials.CHAIN in out.getvalue() and credentials.KEY in out.getvalue()

    identity = credentials.load(env, SECRET.encode())
    assert identity is not None
    key = env / credentials.KEY
    key.write_bytes(identity.key_pem)  # the key unsealed
    out = io.StringIO()
    assert audit(env, out) == 1
    assert "not a sealed" in out.getvalue()

    credentials.init(env, SECRET.encode(), "Example Studio", force=True)
    chain = env / credentials.CHAIN
    chain.write_bytes(chain.read_bytes() + b"\nsomething hidden after the certificates\n")
    out = io.StringIO()
    assert audit(env, out) == 1
    assert "more than certificates" in out.getvalue()

    credentials.init(env, SECRET.encode(), "Example Studio", force=True)
    os.chmod(key, 0o644)
    out = io.StringIO()
    assert audit(env, out) == 1
    assert "readable by others" in out.getvalue()
