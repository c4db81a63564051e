"""The offline CLI: `darkroom styles`, `stylize` and `sheet` (no bot, no network)."""

from __future__ import annotations

import io

from PIL import Image

from bot.cli import main
from bot.storage import credentials
from inference import load_catalogue
from inference.provenance import read_credentials, read_labels


def test_styles_prints_every_style_and_every_model_with_licence_and_checksum(capsys):
    assert main(["styles"]) == 0
    out = capsys.readouterr().out
    catalogue = load_catalogue()
    for style in catalogue.styles:
        assert style.key in out and style.name in out and style.name_zh in out and style.recipe in out
    for model in catalogue.models.values():
        assert model.sha256 in out and model.key in out
    assert "Apache-2.0" in out and "trained on" in out


def test_stylize_writes_a_labelled_jpeg(tmp_path, small_portrait, capsys):
    source = tmp_path / "me.jpg"
    source.write_bytes(small_portrait)
    assert main(["stylize", str(source), "-o", str(tmp_path / "out"), "--style", "Ink wash", "--strength", "0.7", "--keep-colours"]) == 0
    result = tmp_path / "out" / "me-ink.jpg"
    data = result.read_bytes()
    assert Image.open(io.BytesIO(data)).size == Image.open(io.BytesIO(small_portrait)).size
    assert b"compositeWithTrainedAlgorithmicMedia" in data
    assert "1 face(s)" in capsys.readouterr().out


def test_stylize_with_a_picture_as_style(tmp_path, small_portrait, astronaut_rgb):
    from tests.conftest import jpeg_bytes

    (tmp_path / "me.jpg").write_bytes(small_portrait)
    (tmp_path / "painting.jpg").write_bytes(jpeg_bytes(astronaut_rgb))
    code = main(["stylize", str(tmp_path / "me.jpg"), "-o", str(tmp_path / "out"), "--style", "x", "--style-image", str(tmp_path / "painting.jpg")])
    assert code == 0
    assert (tmp_path / "out" / "me-picture.jpg").exists()


def test_unknown_style_and_bad_strength_are_one_line_errors(tmp_path, small_portrait, capsys):
    (tmp_path / "me.jpg").write_bytes(small_portrait)
    assert main(["stylize", str(tmp_path / "me.jpg"), "-o", str(tmp_path), "--style", "vaporwave"]) == 2
    assert main(["stylize", str(tmp_path / "me.jpg"), "-o", str(tmp_path), "--style", "ink", "--strength", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Traceback" not in err
    assert "unknown style 'vaporwave'" in err


def test_sheet_shows_every_style_labelled(tmp_path, small_portrait, monkeypatch):
    # with a signing identity in the data dir: the sheet is a result like any other, signed
    data_dir = tmp_path / "data"
    monkeypatch.setenv("DARKROOM_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DARKROOM_SECRET", "a" * 64)
    credentials.init(data_dir, b"a" * 64, "Darkroom test")
    (tmp_path / "me.jpg").write_bytes(small_portrait)
    assert main(["sheet", str(tmp_path / "me.jpg"), "-o", str(tmp_path / "sheet.jpg")]) == 0
    data = (tmp_path / "sheet.jpg").read_bytes()
    sheet = Image.open(io.BytesIO(data))
    tiles = len(load_catalogue().styles) + 1
    rows = -(-tiles // 4)
    assert sheet.width > 4 * 200 and sheet.height > rows * 200
    assert read_labels(data).aigc is not None
    chain = (data_dir / credentials.CHAIN).read_bytes()
    assert read_credentials(data, chain[chain.rfind(b"-----BEGIN CERTIFICATE-----") :]).state == "Trusted"


def test_stylize_reports_the_time_of_the_whole_run_decoding_included(tmp_path, small_portrait, capsys, monkeypatch, engine):
    """The seconds printed cover decoding too (a slow decode once showed as "0.62s" for 41 s)."""
    import re
    import time

    from bot import cli
    from inference import imageio

    real = imageio.decode_here

    def slow_decode(data, limits):
        time.sleep(1.5)  # in the decode child: the time a hostile file could cost
        return real(data, limits)

    monkeypatch.setattr(cli, "_engine", lambda *args, **kwargs: engine)
    monkeypatch.setattr(imageio, "decode_here", slow_decode)
    (tmp_path / "me.jpg").write_bytes(small_portrait)
    started = time.perf_counter()
    assert main(["stylize", str(tmp_path / "me.jpg"), "-o", str(tmp_path / "out"), "--style", "film"]) == 0
    took = time.perf_counter() - started
    [reported] = re.findall(r"([0-9.]+)s\)$", capsys.readouterr().out.strip())
    assert 1.5 <= float(reported) <= took + 0.01  # printed to 2 decimals
    assert engine.stylize(small_portrait, __import__("inference").StyleRequest("film")).seconds >= 1.5


def test_stylize_without_a_style_uses_the_default_style(tmp_path, small_portrait, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env from the working directory
    monkeypatch.delenv("DARKROOM_DEFAULT_STYLE", raising=False)
    (tmp_path / "me.jpg").write_bytes(small_portrait)
    assert main(["stylize", str(tmp_path / "me.jpg"), "-o", str(tmp_path / "out")]) == 0
    default = load_catalogue().default.key
    assert (tmp_path / "out" / f"me-{default}.jpg").exists()
    monkeypatch.setenv("DARKROOM_DEFAULT_STYLE", "ink")
    assert main(["stylize", str(tmp_path / "me.jpg"), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "me-ink.jpg").exists()


def test_styles_engine_shows_the_backend_chosen_here(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DARKROOM_ENGINE", "onnxruntime")
    assert main(["styles", "--engine"]) == 0
    out = capsys.readouterr().out
    assert "styling network: onnxruntime fp32 (forced)" in out and "ms on the probe" in out
    monkeypatch.setenv("DARKROOM_PRECISION", "int8")
    assert main(["styles", "--engine"]) == 2
    assert "DARKROOM_PRECISION=int8 is not offered" in capsys.readouterr().err
