"""The style catalogue: what it promises about every style and model, the SHA-256 checks, and
that every style actually does what it says on both test portraits."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import textwrap

import numpy as np
import pytest
from PIL import Image

from inference import Engine, EngineConfig, ModelIntegrityError, StyleRequest, load_catalogue
from inference.catalogue import Catalogue
from inference.engine import Picture
from inference.imageio import SOURCE_NEURAL
from inference.models import ModelFile

CATALOGUE = load_catalogue()
STYLE_KEYS = [s.key for s in CATALOGUE.styles]
NEURAL_KEYS = [s.key for s in CATALOGUE.styles if s.neural]
CJK = re.compile(r"[\u4e00-\u9fff]")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "PNG")
    return out.getvalue()


def decoded(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def small(rgb: np.ndarray, side: int = 200) -> np.ndarray:
    image = Image.fromarray(rgb)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.array(image)


@pytest.fixture(scope="module")
def portraits(grace_rgb, astronaut_rgb) -> dict[str, np.ndarray]:
    return {"grace": small(grace_rgb), "astronaut": small(astronaut_rgb)}


@pytest.fixture(scope="module")
def pictures(engine, portraits) -> dict[str, Picture]:
    """The portraits as the engine loads them, faces found."""
    loaded = {name: engine.load(png(rgb)) for name, rgb in portraits.items()}
    for name, picture in loaded.items():
        assert picture.faces, f"no face found in the {name} portrait"
    return loaded


# -- what the catalogue promises --------------------------------------------------------------


def test_at_least_eight_neural_and_three_faithful_styles():
    neural = [s for s in CATALOGUE.styles if s.neural]
    faithful = [s for s in CATALOGUE.styles if not s.neural]
    assert len(neural) >= 8, [s.key for s in neural]
    assert len(faithful) >= 3, [s.key for s in faithful]
    assert len(set(STYLE_KEYS)) == len(STYLE_KEYS)


@pytest.mark.parametrize("key", STYLE_KEYS)
def test_every_style_is_named_and_described_in_english_and_chinese(key):
    style = CATALOGUE.get(key)
    assert style.name.strip() and style.description.strip()
    assert not CJK.search(style.name) and not CJK.search(style.description)
    assert CJK.search(style.name_zh), style.name_zh
    assert CJK.search(style.description_zh), style.description_zh
    assert style.display_name("zh") == style.name_zh and style.display_name("en") == style.name
    # every name leads back to this style
    assert CATALOGUE.get(style.name) is style
    assert CATALOGUE.get(style.name_zh) is style


@pytest.mark.parametrize("key", STYLE_KEYS)
def test_every_style_states_licence_source_and_checksum(key):
    style = CATALOGUE.get(key)
    assert style.licence.strip() and style.source.strip() and style.trained_on.strip()
    assert 0.0 <= style.face_strength <= 1.0
    if style.neural:
        assert style.model is not None
        assert HEX64.match(style.sha256), style.sha256
        assert style.sha256 == style.model.sha256
        assert style.model.path.is_file()
    else:
        assert style.model is None, "a faithful style must not use weights"
        assert style.sha256 == "-"
        assert "no weights" in style.licence
        assert style.recipe.startswith("filter:")


@pytest.mark.parametrize("key", sorted(CATALOGUE.models))
def test_every_model_is_pinned_by_sha256_and_matches_its_installed_file(key):
    model = CATALOGUE.models[key]
    assert HEX64.match(model.sha256)
    assert model.licence.strip() and model.source.strip() and model.trained_on.strip()
    assert sha256_of(model.path) == model.sha256
    assert hashlib.sha256(model.read_verified()).hexdigest() == model.sha256


# -- integrity --------------------------------------------------------------------------------


def tampered_copy(model: ModelFile, tmp_path) -> tuple[ModelFile, str]:
    """A copy of ``model`` under tmp_path with one byte flipped (the package is not touched)."""
    copy = tmp_path / model.path.name
    shutil.copyfile(model.path, copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    return ModelFile(model.key, copy, model.sha256, model.licence, model.source, model.trained_on), hashlib.sha256(data).hexdigest()


def test_tampered_model_is_refused_naming_the_model_and_both_checksums(tmp_path):
    original = CATALOGUE.models["multistyle26"]
    tampered, actual = tampered_copy(original, tmp_path)
    with pytest.raises(ModelIntegrityError) as caught:
        tampered.read_verified()
    message = str(caught.value)
    assert "multistyle26" in message
    assert original.sha256 in message
    assert actual in message and actual != original.sha256
    assert sha256_of(original.path) == original.sha256, "the installed model must be untouched"


def test_engine_with_a_tampered_model_refuses_to_start(tmp_path):
    tampered, actual = tampered_copy(CATALOGUE.models["multistyle26"], tmp_path)
    catalogue = load_catalogue()
    models = dict(catalogue.models, multistyle26=tampered)
    engine = Engine(EngineConfig(threads=1), catalogue=Catalogue(models=models, styles=catalogue.styles))
    with pytest.raises(ModelIntegrityError, match=actual):
        engine.verify()


def test_missing_model_file_is_refused_clearly(tmp_path):
    original = CATALOGUE.models["face_short_range"]
    missing = ModelFile(original.key, tmp_path / "gone.onnx", original.sha256, original.licence, original.source, original.trained_on)
    with pytest.raises(ModelIntegrityError) as caught:
        missing.read_verified()
    message = str(caught.value)
    assert "face_short_range" in message and "gone.onnx" in message and "cannot be read" in message


# -- operator custom styles -------------------------------------------------------------------


def write_custom(tmp_path, model_file: str, sha256: str, key: str = "negative") -> object:
    path = tmp_path / "custom.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [models.operator_negative]
            path = "{model_file}"
            sha256 = "{sha256}"
            licence = "CC0-1.0 (made by the test)"
            source = "tests/inference/test_catalogue.py"

            [[styles]]
            key = "{key}"
            kind = "custom"
            model = "operator_negative"
            face_strength = 1.0
            name = "Negative"
            name_zh = "负片"
            description = "Every colour turned around."
            description_zh = "每种颜色都反过来。"
            """
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def negative_onnx(tmp_path):
    """A tiny valid ONNX graph: y = 1 - x on a [1, 3, H, W] input in 0..1."""
    onnx = pytest.importorskip("onnx", reason="the onnx package is needed to build a custom model")
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Sub", ["one", "x"], ["y"])],
        "negative",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, "h", "w"])],
        initializer=[one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / "negative.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_custom_style_with_the_right_checksum_runs_through_the_engine(tmp_path, negative_onnx, portraits):
    custom = write_custom(tmp_path, negative_onnx.name, sha256_of(negative_onnx))  # relative to the TOML
    catalogue = load_catalogue(custom)
    style = catalogue.get("negative")
    assert style.kind == "custom" and style.neural and style.sha256 == sha256_of(negative_onnx)
    assert catalogue.get("负片") is style
    engine = Engine(EngineConfig(threads=1), catalogue=catalogue)
    rgb = portraits["grace"]
    result = engine.stylize(png(rgb), StyleRequest("negative", face_aware=False))
    out = decoded(result.jpeg).astype(int)
    assert out.shape == rgb.shape
    assert np.abs(out - (255 - rgb.astype(int))).mean() < 4, "the custom model did not run"
    assert engine.label("negative").digital_source_type == SOURCE_NEURAL


def test_custom_style_whose_file_was_changed_is_refused(tmp_path, negative_onnx, portraits):
    custom = write_custom(tmp_path, str(negative_onnx), sha256_of(negative_onnx))
    expected = sha256_of(negative_onnx)
    data = bytearray(negative_onnx.read_bytes())
    data[-1] ^= 0x01
    negative_onnx.write_bytes(bytes(data))
    actual = hashlib.sha256(data).hexdigest()
    engine = Engine(EngineConfig(threads=1), catalogue=load_catalogue(custom))
    for attempt in (engine.verify, lambda: engine.stylize(png(portraits["grace"]), StyleRequest("negative", face_aware=False))):
        with pytest.raises(ModelIntegrityError) as caught:
            attempt()
        message = str(caught.value)
        assert "operator_negative" in message and expected in message and actual in message


def test_custom_style_with_a_wrong_checksum_in_the_toml_is_refused(tmp_path, negative_onnx):
    custom = write_custom(tmp_path, str(negative_onnx), "0" * 64)
    engine = Engine(EngineConfig(threads=1), catalogue=load_catalogue(custom))
    with pytest.raises(ModelIntegrityError, match=sha256_of(negative_onnx)):
        engine.verify()


def test_custom_style_with_a_missing_file_is_refused(tmp_path):
    custom = write_custom(tmp_path, "nowhere.onnx", "a" * 64)
    engine = Engine(EngineConfig(threads=1), catalogue=load_catalogue(custom))
    with pytest.raises(ModelIntegrityError, match="operator_negative.*cannot be read"):
        engine.verify()


def test_custom_file_may_not_replace_a_builtin_model_or_style(tmp_path):
    custom = tmp_path / "custom.toml"
    custom.write_text(
        '[models.multistyle26]\npath = "x.onnx"\nsha256 = "' + "a" * 64 + '"\nlicence = "x"\nsource = "x"\n', encoding="utf-8"
    )
    with pytest.raises(ModelIntegrityError, match="replace a built-in"):
        load_catalogue(custom)
    clash = write_custom(tmp_path, "x.onnx", "a" * 64, key="ink")
    with pytest.raises(ModelIntegrityError, match="share a key"):
        load_catalogue(clash)


# -- every style on the test portraits --------------------------------------------------------


@pytest.mark.parametrize("portrait", ["grace", "astronaut"])
@pytest.mark.parametrize("key", STYLE_KEYS)
def test_style_gives_a_same_size_output_that_differs_from_the_input(engine, portraits, key, portrait):
    rgb = portraits[portrait]
    result = engine.stylize(png(rgb), StyleRequest(key))
    out = decoded(result.jpeg)
    assert out.shape == rgb.shape and (result.height, result.width) == rgb.shape[:2]
    difference = np.abs(out.astype(int) - rgb.astype(int)).mean()
    assert difference > 5, f"{key} on {portrait}: mean change {difference:.1f}"


@pytest.mark.parametrize("key", STYLE_KEYS)
def test_strength_zero_returns_the_input(engine, pictures, key):
    picture = pictures["grace"]
    none = engine.render_rgb(picture, StyleRequest(key, strength=0.0))
    half = engine.render_rgb(picture, StyleRequest(key, strength=0.5))
    full = engine.render_rgb(picture, StyleRequest(key, strength=1.0))
    original = picture.rgb.astype(int)
    assert np.abs(none.astype(int) - original).max() <= 1
    assert np.abs(half.astype(int) - original).mean() < np.abs(full.astype(int) - original).mean()


def chroma(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(int)


@pytest.mark.parametrize("key", STYLE_KEYS)
def test_keep_colours_keeps_the_input_chroma(engine, pictures, key):
    picture = pictures["astronaut"]
    styled = engine.render_rgb(picture, StyleRequest(key, face_aware=False))
    kept = engine.render_rgb(picture, StyleRequest(key, keep_colours=True, face_aware=False))
    original = chroma(picture.rgb)
    changed = np.abs(chroma(styled) - original).mean()
    still = np.abs(chroma(kept) - original).mean()
    assert still < 0.4 * changed, f"{key}: chroma moved {still:.2f} with keep-colours, {changed:.2f} without"
    if key != "pencil":  # pencil is paper-white: near white the RGB gamut cannot hold every colour
        assert still < 2.5, f"{key}: chroma moved {still:.2f} with keep-colours"
    # and the brightness is still the style's, not the photo's
    luma = lambda rgb: rgb.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])  # noqa: E731
    assert np.abs(luma(kept) - luma(styled)).mean() < np.abs(luma(picture.rgb) - luma(styled)).mean()


@pytest.mark.parametrize("portrait", ["grace", "astronaut"])
@pytest.mark.parametrize("key", STYLE_KEYS)
def test_face_awareness_keeps_the_face_closer_to_the_photo(engine, pictures, key, portrait):
    picture = pictures[portrait]
    face = picture.faces[0]
    box = (slice(face.y, face.y + face.height), slice(face.x, face.x + face.width))
    original = picture.rgb.astype(int)
    aware = engine.render_rgb(picture, StyleRequest(key, face_aware=True)).astype(int)
    unaware = engine.render_rgb(picture, StyleRequest(key, face_aware=False)).astype(int)
    error_aware = np.abs(aware[box] - original[box]).mean()
    error_unaware = np.abs(unaware[box] - original[box]).mean()
    if CATALOGUE.get(key).face_strength < 1.0:
        assert error_aware < 0.85 * error_unaware, f"{key}: face error {error_aware:.1f} vs {error_unaware:.1f}"
    else:  # a faithful filter keeps its full look over faces by design
        assert error_aware == pytest.approx(error_unaware)
    # far from the face nothing changes: the top-left and bottom-right corners
    for corner in ((slice(0, 12), slice(0, 12)), (slice(-12, None), slice(-12, None))):
        assert np.abs(aware[corner] - unaware[corner]).max() <= 1
