"""The backend layer: which runtime and precision styles, chosen per machine or forced; the
fallbacks; the same pictures from every backend; a bounded number of compiled shapes."""

from __future__ import annotations

import builtins
import sys
import time

import numpy as np
import pytest
from PIL import Image

from inference import load_catalogue
from inference.backends import (
    BF16,
    FP32,
    MIN_PSNR_DB,
    ONNXRUNTIME,
    OPENVINO,
    BackendPreference,
    BackendUnavailable,
    OnnxRuntimeRunner,
    OpenVinoRunner,
    choose_runner,
    cpu_capabilities,
    probe_portrait,
    psnr,
    timing_portrait,
)
from inference.models import SessionPool
from inference.networks import FAST_REWRITE, MultiStyleNetwork, _network_input, fast_multistyle_graph

OPENVINO_PRECISIONS = [FP32] + ([BF16] if "BF16" in cpu_capabilities() else [])


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


@pytest.fixture(scope="module")
def graph(catalogue) -> bytes:
    return FAST_REWRITE(catalogue.model("multistyle26").read_verified())


@pytest.fixture(scope="module")
def network_styles(catalogue):
    return [s for s in catalogue.styles if s.kind == "network"]


@pytest.fixture(scope="module")
def reference(graph) -> OnnxRuntimeRunner:
    return OnnxRuntimeRunner(SessionPool(2)._build(graph))


@pytest.fixture(scope="module")
def portrait(grace_rgb) -> np.ndarray:
    """257x301: neither side a multiple of 4."""
    return np.asarray(Image.fromarray(grace_rgb).resize((257, 301), Image.Resampling.LANCZOS))


# -- the choice, with stand-in runners (its logic, not the machine's speed) --------------------


class Stub:
    """A runner that takes ``seconds`` and is ``noise`` grey levels off the reference."""

    def __init__(self, backend: str, precision: str, seconds: float, noise: float = 0.0) -> None:
        self.backend, self.precision, self.seconds, self.noise = backend, precision, seconds, noise
        self.closed = False

    def __call__(self, image, weights):
        time.sleep(self.seconds)
        out = np.full((1, 48, 8, 8), 128, dtype=np.uint8)
        if self.noise:
            out[..., ::2, ::2] += np.uint8(self.noise)  # a quarter of the values off by `noise`
        return out

    def close(self):
        self.closed = True


def stub_openvino(stubs: dict[str, Stub]):
    def build(precision: str):
        stub = stubs[precision]
        if isinstance(stub, Exception):
            raise stub
        return stub

    return build


IMAGE = np.zeros((1, 3, 16, 16), dtype=np.float32)
STYLES = [np.eye(26, dtype=np.float32)[i] for i in (0, 5)]


def test_the_fastest_candidate_that_keeps_the_quality_is_chosen():
    reference = Stub(ONNXRUNTIME, FP32, 0.02)
    stubs = {FP32: Stub(OPENVINO, FP32, 0.015), BF16: Stub(OPENVINO, BF16, 0.005, noise=1)}
    runner, choice = choose_runner(reference, stub_openvino(stubs), IMAGE, STYLES, precisions=[FP32, BF16])
    assert runner is stubs[BF16]
    assert (choice.backend, choice.precision, choice.how) == (OPENVINO, BF16, "auto")
    assert choice.psnr_db >= MIN_PSNR_DB and 4 <= choice.probe_ms < 15
    assert stubs[FP32].closed and not stubs[BF16].closed
    assert "onnxruntime fp32" in choice.note and "openvino fp32" in choice.note
    assert choice.line().startswith("styling network: openvino bf16 (auto)")
    assert 0 < choice.seconds < 5 and "chosen in" in choice.line()


def test_a_faster_candidate_that_loses_quality_is_passed_over():
    reference = Stub(ONNXRUNTIME, FP32, 0.02)
    # 30 grey levels off on a quarter of the values: 24.6 dB
    stubs = {FP32: Stub(OPENVINO, FP32, 0.01), BF16: Stub(OPENVINO, BF16, 0.002, noise=30)}
    runner, choice = choose_runner(reference, stub_openvino(stubs), IMAGE, STYLES, precisions=[FP32, BF16])
    assert runner is stubs[FP32] and stubs[BF16].closed
    assert "openvino bf16: 24.6 dB < 45 dB" in choice.note


def test_the_operator_can_force_a_slower_backend_or_a_precision():
    reference = Stub(ONNXRUNTIME, FP32, 0.01)
    stubs = {FP32: Stub(OPENVINO, FP32, 0.03), BF16: Stub(OPENVINO, BF16, 0.002)}
    runner, choice = choose_runner(reference, stub_openvino(stubs), IMAGE, STYLES, BackendPreference(OPENVINO, FP32), [FP32, BF16])
    assert runner is stubs[FP32] and choice.how == "forced"
    runner, choice = choose_runner(reference, stub_openvino(stubs), IMAGE, STYLES, BackendPreference(ONNXRUNTIME), [FP32, BF16])
    assert runner is reference and (choice.backend, choice.how, choice.psnr_db) == (ONNXRUNTIME, "forced", float("inf"))


def test_a_forced_backend_that_cannot_run_falls_back_to_onnxruntime_fp32():
    reference = Stub(ONNXRUNTIME, FP32, 0.001)
    stubs = {FP32: BackendUnavailable("OpenVINO is not importable (ImportError)"), BF16: RuntimeError("compile failed")}
    runner, choice = choose_runner(reference, stub_openvino(stubs), IMAGE, STYLES, BackendPreference(OPENVINO), [FP32, BF16])
    assert runner is reference and (choice.backend, choice.precision, choice.how) == (ONNXRUNTIME, FP32, "fallback")
    assert "openvino fp32: OpenVINO is not importable (ImportError)" in choice.note
    assert "openvino bf16: failed (RuntimeError)" in choice.note
    # bf16 forced where the CPU does not report it: not even tried
    runner, choice = choose_runner(reference, stub_openvino(stubs), IMAGE, STYLES, BackendPreference(precision=BF16), [FP32])
    assert runner is reference and choice.how == "fallback" and "bf16 is not available here" in choice.note


def test_bf16_that_does_not_compile_leaves_openvino_fp32_in_the_running():
    """A CPU that reports bf16 while oneDNN is held to AVX2 (ONEDNN_MAX_CPU_ISA): bf16 fails to
    compile, and OpenVINO fp32 is timed against onnxruntime instead of being skipped."""
    reference = Stub(ONNXRUNTIME, FP32, 0.02)
    stubs = {BF16: RuntimeError("compile failed"), FP32: Stub(OPENVINO, FP32, 0.005)}
    runner, choice = choose_runner(reference, stub_openvino(stubs), IMAGE, STYLES, precisions=[BF16])
    assert runner is stubs[FP32] and (choice.backend, choice.precision) == (OPENVINO, FP32)
    assert "openvino bf16: failed (RuntimeError)" in choice.note


class SizeStub(Stub):
    """A runner whose time grows with the pixels: ``fixed`` seconds plus ``per_megapixel``."""

    def __init__(self, backend: str, precision: str, fixed: float, per_megapixel: float) -> None:
        super().__init__(backend, precision, 0.0)
        self.fixed, self.per_megapixel, self.calls = fixed, per_megapixel, 0

    def __call__(self, image, weights):
        self.calls += 1
        self.seconds = self.fixed + self.per_megapixel * image.shape[2] * image.shape[3] / 1e6
        return super().__call__(image, weights)


def test_candidates_are_timed_at_the_size_photos_arrive_at(catalogue, monkeypatch):
    """Backends do not rank alike at every size (held to AVX2, onnxruntime fp32 was 5% faster than
    OpenVINO fp32 at 576x768 and 10% slower at 1280x960): the start-up choice times a photo-sized
    input, so it keeps the one that is faster for photos."""
    timing = _network_input(timing_portrait())
    assert timing.shape[2] * timing.shape[3] >= 1280 * 960
    # onnxruntime wins below ~0.6 megapixels, OpenVINO above
    reference = SizeStub(ONNXRUNTIME, FP32, 0.0, 0.05)
    stubs = {FP32: SizeStub(OPENVINO, FP32, 0.015, 0.025)}
    runner, _ = choose_runner(reference, stub_openvino(stubs), IMAGE, STYLES, precisions=[FP32], timing_image=_network_input(np.zeros((576, 768, 3), np.uint8)))
    assert runner is reference
    runner, choice = choose_runner(reference, stub_openvino(stubs), IMAGE, STYLES, precisions=[FP32], timing_image=timing)
    assert runner is stubs[FP32] and choice.backend == OPENVINO
    # and the engine hands choose_runner that photo-sized input
    import inference.networks as networks

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["timing_image"].shape)
        raise RuntimeError("stop here")

    monkeypatch.setattr(networks, "choose_runner", spy)
    with pytest.raises(RuntimeError, match="stop here"):
        MultiStyleNetwork(catalogue.model("multistyle26"), SessionPool(2)).warm_up()
    assert seen == [timing.shape]


def test_with_nothing_to_choose_from_the_only_candidate_is_timed_once():
    reference = SizeStub(ONNXRUNTIME, FP32, 0.001, 0.0)
    runner, choice = choose_runner(reference, stub_openvino({}), IMAGE, STYLES, BackendPreference(ONNXRUNTIME))
    assert runner is reference and choice.how == "forced"
    assert reference.calls == 2  # one warm-up run, one timed run


def test_each_candidate_frees_its_working_memory_before_the_next_is_timed():
    """At photo size, onnxruntime's arena and OpenVINO's buffers held at once took `darkroom
    stylize` from 378 to 564 MB peak RSS: candidates are timed one after another, each freeing
    what it holds first."""
    events = []

    class Freeing(SizeStub):
        def __call__(self, image, weights):
            events.append(f"run {self.backend}")
            return super().__call__(image, weights)

        def release_memory(self):
            events.append(f"free {self.backend}")

    reference = Freeing(ONNXRUNTIME, FP32, 0.001, 0.0)
    openvino = Freeing(OPENVINO, FP32, 0.002, 0.0)
    choose_runner(reference, lambda precision: openvino, IMAGE, STYLES, precisions=[FP32])
    first_openvino_run = events.index("run openvino")
    assert events.index("free onnxruntime") < first_openvino_run
    assert events[first_openvino_run - 1] == "free onnxruntime"
    assert events.count("run onnxruntime") == 1 + 3  # warm-up, timed (the faster: nothing to check)
    assert "free openvino" in events


def test_release_memory_hands_back_what_runs_grew(catalogue, graph, portrait):
    net = MultiStyleNetwork(catalogue.model("multistyle26"), SessionPool(2), BackendPreference(ONNXRUNTIME))
    reference = net._reference(graph)
    before = reference._session
    reference.release_memory()
    assert reference._session is not before  # a fresh session: its arena starts empty
    image = _network_input(portrait)
    assert reference(image, catalogue.get("ink").weights).shape[1] == 48
    runner = OpenVinoRunner(graph, FP32, threads=2)
    runner(image, catalogue.get("ink").weights)
    [entry] = runner._shapes.values()
    assert entry.holds_buffers
    runner.release_memory()
    assert not entry.holds_buffers
    assert np.array_equal(runner(image, catalogue.get("ink").weights), runner(image, catalogue.get("ink").weights))


def test_preferences_are_checked():
    with pytest.raises(ValueError):
        BackendPreference("tensorrt")
    with pytest.raises(ValueError):
        BackendPreference(precision="int8")


# -- the real backends ------------------------------------------------------------------------


def test_without_openvino_the_network_runs_on_onnxruntime(catalogue, monkeypatch, portrait):
    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("simulated: openvino is not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    for module in [m for m in sys.modules if m == "openvino" or m.startswith("openvino.")]:
        monkeypatch.delitem(sys.modules, module)
    for preference, how in ((BackendPreference(), "auto"), (BackendPreference(OPENVINO), "fallback")):
        net = MultiStyleNetwork(catalogue.model("multistyle26"), SessionPool(2), preference)
        net.warm_up()
        assert (net.choice.backend, net.choice.precision, net.choice.how) == (ONNXRUNTIME, FP32, how)
        assert net.run(np.ascontiguousarray(portrait[:64, :64]), catalogue.get("ink").weights).std() > 5
    assert "not importable" in net.choice.note


def test_a_shape_openvino_fails_to_compile_falls_back_to_onnxruntime(catalogue, portrait, captured_logs):
    net = MultiStyleNetwork(catalogue.model("multistyle26"), SessionPool(2), BackendPreference(OPENVINO, FP32))
    net.warm_up()
    assert net.choice.backend == OPENVINO
    runner = net._runner

    def broken(*args, **kwargs):
        raise RuntimeError("simulated compile failure")

    runner._core.compile_model = broken
    weights = catalogue.get("ink").weights
    out = net.run(portrait, weights)
    assert (net.choice.backend, net.choice.how) == (ONNXRUNTIME, "fallback")
    assert "failed to compile" in net.choice.note
    reference = MultiStyleNetwork(catalogue.model("multistyle26"), SessionPool(2), BackendPreference(ONNXRUNTIME))
    assert np.array_equal(out, reference.run(portrait, weights))
    stream, _ = captured_logs
    [line] = [line for line in stream.getvalue().splitlines() if "(fallback)" in line]
    assert "onnxruntime fp32 (fallback)" in line and "Traceback" not in stream.getvalue()


@pytest.mark.parametrize("precision", OPENVINO_PRECISIONS)
def test_every_style_looks_the_same_on_every_backend(catalogue, reference, network_styles, portrait, precision):
    """OpenVINO runs its own form of the graph (`fast_multistyle_graph(openvino=precision)`)."""
    graph = fast_multistyle_graph(catalogue.model("multistyle26").read_verified(), openvino=precision)
    runner = OpenVinoRunner(graph, precision, threads=2)
    image = _network_input(portrait)
    floor = 60.0 if precision == FP32 else MIN_PSNR_DB
    worst = min(psnr(runner(image, s.weights), reference(image, s.weights)) for s in network_styles)
    assert worst >= floor, f"openvino {precision}: worst style {worst:.1f} dB"


def copies_between_layouts(graph: bytes, precision: str) -> list[str]:
    """Tensors OpenVINO copies from one memory layout to another inside the network (its Reorder
    nodes other than those taking the input in and the output out), compiled at a small size."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(graph, ov.Tensor(np.empty(0, dtype=np.uint8)))
    model.reshape({"image": [1, 3, 104, 88], "style_weights": [26]})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": {FP32: "f32", BF16: "bf16"}[precision]})
    copies = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        if op.get_rt_info()["layerType"].astype(str) != "Reorder":
            continue
        source = op.input(0).get_source_output().get_node().get_rt_info()["layerType"].astype(str)
        consumers = {i.get_node().get_rt_info()["layerType"].astype(str) for i in op.output(0).get_target_inputs()}
        shape = op.get_output_partial_shape(0).to_shape()
        is_image = len(shape) == 4 and shape[2] * shape[3] > 1  # not a weight or a [1, C, 1, 1] statistic
        if is_image and source != "Input" and consumers != {"Output"}:
            copies.append(f"{source}: {op.get_friendly_name()}")
    return copies


def test_openvino_leaves_its_threads_unpinned(graph, portrait):
    """Pinned, every process's threads start at core 0: two single-thread styling processes (two
    `darkroom worker`s on one machine) shared one core while the other idled (bench/scale.py)."""
    runner = OpenVinoRunner(graph, FP32, threads=1)
    runner(_network_input(np.ascontiguousarray(portrait[:64, :64])), np.full(26, 1 / 26, np.float32))
    [entry] = runner._shapes.values()
    assert entry.compiled.get_property("ENABLE_CPU_PINNING") is False


def test_openvino_reads_the_image_as_uint8(catalogue, graph, portrait):
    """A quarter of the float32 input's memory, the same values, the same result; the photo path
    hands OpenVINO uint8 and keeps that buffer for the next photo."""
    runner = OpenVinoRunner(graph, FP32, threads=2)
    weights = catalogue.get("ink").weights
    small = np.ascontiguousarray(portrait[:96, :128])
    as_uint8 = _network_input(small, dtype=np.uint8)
    assert as_uint8.dtype == np.uint8 and np.array_equal(as_uint8, _network_input(small))
    assert np.array_equal(runner(as_uint8, weights), runner(_network_input(small), weights))
    net = MultiStyleNetwork(catalogue.model("multistyle26"), SessionPool(2), BackendPreference(OPENVINO, FP32))
    net.run(small, weights)
    assert net._spare is not None and net._spare.dtype == np.uint8 and not net._spare.any()


@pytest.mark.parametrize("precision", OPENVINO_PRECISIONS)
def test_openvinos_form_keeps_its_layout(catalogue, graph, precision):
    """The default form makes OpenVINO copy each norm's output and the decoder's tensors to a
    planar layout and back; its own form copies none in fp32, and in bf16 no norm's output (the
    phase norms keep their reshape there, and with it some planar copies)."""
    default = copies_between_layouts(graph, precision)
    assert len([c for c in default if c.startswith("MVN:")]) >= 8 and len(default) >= 14
    own = copies_between_layouts(fast_multistyle_graph(catalogue.model("multistyle26").read_verified(), openvino=precision), precision)
    if precision == FP32:
        assert own == []
    else:
        assert not [c for c in own if c.startswith("MVN:")] and len(own) < len(default), own


def test_the_start_up_choice_checks_every_network_style(catalogue, network_styles):
    net = MultiStyleNetwork(catalogue.model("multistyle26"), SessionPool(2), probe_styles=[s.weights for s in network_styles])
    net.warm_up()
    assert net.choice.backend in (ONNXRUNTIME, OPENVINO) and net.choice.how == "auto"
    assert net.choice.psnr_db >= MIN_PSNR_DB
    assert probe_portrait().shape == (256, 192, 3)


def test_compiled_shapes_are_bounded_least_recently_used_out(graph, portrait):
    runner = OpenVinoRunner(graph, FP32, threads=2, max_shapes=2)
    weights = np.eye(26, dtype=np.float32)[3]
    sizes = [(64, 64), (64, 96), (96, 64), (64, 64), (96, 64)]
    for height, width in sizes:
        runner(_network_input(np.ascontiguousarray(portrait[:height, :width])), weights)
    # 64x64 was evicted by 96x64 and compiled again; the second 96x64 hit the cache
    assert (runner.compiles, runner.evictions) == (4, 2)
    assert runner.shapes == [(1, 3, 72, 72), (1, 3, 104, 72)]
    # only the shape used last keeps its working buffers
    assert [entry.holds_buffers for entry in runner._shapes.values()] == [False, True]


def test_photos_of_many_sizes_do_not_grow_memory(graph, portrait):
    def rss_mb() -> float:
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024

    runner = OpenVinoRunner(graph, OPENVINO_PRECISIONS[-1], threads=2, max_shapes=2)
    weights = np.eye(26, dtype=np.float32)[3]
    readings = []
    for i in range(8):
        side = 200 + 4 * i
        runner(_network_input(np.ascontiguousarray(portrait[:side, :side - 8])), weights)
        readings.append(rss_mb())
    assert readings[-1] - readings[2] < 25, f"RSS kept growing: {[round(r) for r in readings]}"
    assert runner.compiles == 8 and len(runner.shapes) == 2
