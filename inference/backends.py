"""Where the 26-style network runs: onnxruntime or OpenVINO, fp32 or bf16, chosen per machine.

Both backends run the verified network, rewritten (`networks.fast_multistyle_graph`; OpenVINO
gets a form of the same graph that keeps its memory layout): the bytes whose SHA-256 was checked
are rewritten in memory and handed to the runtime; nothing is downloaded or written to disk.

At start-up `choose_runner` times every backend and precision this machine offers, one after
another, on a portrait that ships with the code (`probe_portrait.jpg`, 192x256, enlarged by
`timing_portrait` to 960x1280, the size photos arrive at: the backends do not rank alike at
smaller sizes) and, fastest first, checks its output for every network style against
onnxruntime in fp32 on the probe itself: PSNR at least ``MIN_PSNR_DB``. The first that passes is
kept; the operator may force one.

Timing costs 4-4.5 s of start-up on a quiet machine and 20-40 s on a busy one, so the result is
kept in the data directory (`KeptChoice`), keyed by what it depends on (`ChoiceKey`: the CPU's
model and flags, the libraries' versions, the model's hashes, threads and the operator's
preference). A later start with the same key builds only the kept candidate and runs the PSNR
check on it (no timing); any change of the key, or a kept candidate that fails, times again.

OpenVINO compiles a graph for one static shape (dynamic shapes run about 0.76x as fast, measured),
so `OpenVinoRunner` keeps at most ``max_shapes`` compiled shapes, least recently used out, and
only the shape in use holds its working buffers (`CompiledModel.release_memory` on the others):
photos of many sizes cannot grow memory without bound.

int8 is not offered: NNCF's int8 (convolutions only) measured 38-43 dB against fp32, below the
40 dB every style must hold, and bf16 was faster than the int8 variants that did hold it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import platform
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from importlib import metadata
from importlib.resources import files
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from .cancel import Cancellation, Cancelled, run_options

log = logging.getLogger("darkroom.engine")

ONNXRUNTIME, OPENVINO = "onnxruntime", "openvino"
BACKENDS = (ONNXRUNTIME, OPENVINO)
FP32, BF16 = "fp32", "bf16"
PRECISIONS = (FP32, BF16)
MIN_PSNR_DB = 45.0  # a candidate's worst style on the probe portrait, against onnxruntime fp32
PROBE_RUNS = 3  # timed runs per candidate, interleaved, after one warm-up run
DEFAULT_MAX_SHAPES = 4
_OV_PRECISION = {FP32: "f32", BF16: "bf16"}


class BackendUnavailable(RuntimeError):
    """A backend or precision cannot run here (not installed, not supported, failed to compile)."""


class NetworkRunner(Protocol):
    backend: str
    precision: str

    def __call__(self, image: np.ndarray, weights: np.ndarray, cancel: Cancellation | None = None) -> np.ndarray:
        """float32 [1, 3, H, W] image and [26] weights -> the graph's uint8 output."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendPreference:
    """What the operator asked for: '' lets the machine decide."""

    backend: str = ""
    precision: str = ""

    def __post_init__(self) -> None:
        if self.backend not in ("", *BACKENDS):
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}")
        if self.precision not in ("", *PRECISIONS):
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")

    def allows(self, backend: str, precision: str) -> bool:
        return self.backend in ("", backend) and self.precision in ("", precision)

    @property
    def forced(self) -> bool:
        return bool(self.backend or self.precision)


@dataclass(frozen=True)
class BackendChoice:
    backend: str
    precision: str
    probe_ms: float  # its fastest timed run on the probe portrait enlarged to 960x1280
    psnr_db: float  # worst network style on the probe portrait against onnxruntime fp32
    how: str  # "auto", "forced", or "fallback"
    note: str = ""  # why other candidates (or the forced one) were not taken
    seconds: float = 0.0  # what choosing cost at start-up (building, compiling, timing, checking)
    kept: bool = False  # taken from the data directory's record (timed at an earlier start)

    def line(self) -> str:
        quality = "reference" if self.psnr_db == float("inf") else f"{self.psnr_db:.1f} dB vs fp32"
        how = f"{self.how}, kept" if self.kept else self.how
        text = (
            f"styling network: {self.backend} {self.precision} ({how}), {self.probe_ms:.1f} ms on the probe, "
            f"{quality}, chosen in {self.seconds:.2f} s"
        )
        return f"{text}; {self.note}" if self.note else text

    def as_dict(self) -> dict:
        data = asdict(self)
        data["probe_ms"] = round(self.probe_ms, 1)
        data["psnr_db"] = None if self.psnr_db == float("inf") else round(self.psnr_db, 1)
        data["seconds"] = round(self.seconds, 2)
        return data


# -- runners ----------------------------------------------------------------------------------


class OnnxRuntimeRunner:
    """One onnxruntime session: dynamic shapes, nothing compiled per shape. ``renew`` (optional)
    builds a fresh session: the only way to hand back what its memory arena grew to."""

    backend, precision = ONNXRUNTIME, FP32
    input_dtype = np.float32  # the graph's image input (`inference.networks._network_input`)

    def __init__(self, session, renew: Callable[[], object] | None = None) -> None:
        self._session = session
        self._renew = renew

    def release_memory(self) -> None:
        """Free the arena the runs grew (a fresh session; it grows again as it is used)."""
        if self._renew is not None:
            self._session = None
            self._session = self._renew()

    def __call__(self, image: np.ndarray, weights: np.ndarray, cancel: Cancellation | None = None) -> np.ndarray:
        image = image if image.dtype == np.float32 else image.astype(np.float32)  # e.g. after a fallback
        return self._session.run(None, {"image": image, "style_weights": weights}, run_options(cancel))[0]

    def close(self) -> None:
        self._session = None


class _Compiled:
    def __init__(self, compiled) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.lock = threading.Lock()
        self.holds_buffers = False


class OpenVinoRunner:
    """The graph on OpenVINO's CPU plugin, compiled per input shape, at most ``max_shapes`` kept."""

    backend = OPENVINO
    # The image arrives as uint8 (its values are whole numbers 0..255) and OpenVINO converts it
    # as it reads it: a quarter of the float32 input's 15 MB at 1280x960, held through the run.
    input_dtype = np.uint8

    def __init__(self, graph: bytes, precision: str, threads: int, max_shapes: int = DEFAULT_MAX_SHAPES) -> None:
        if precision not in _OV_PRECISION:
            raise BackendUnavailable(f"OpenVINO precision {precision} is not offered")
        try:
            import openvino
        except Exception as exc:  # ImportError, or a broken install failing in its own import
            raise BackendUnavailable(f"OpenVINO is not importable ({type(exc).__name__})") from None
        self.precision = precision
        self.max_shapes = max(1, max_shapes)
        self.compiles = 0
        self.evictions = 0
        self._core = openvino.Core()
        if precision == BF16 and BF16.upper() not in cpu_capabilities(self._core):
            raise BackendUnavailable("this CPU does not report bf16")
        self._config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
            "INFERENCE_NUM_THREADS": str(threads),
            # OpenVINO pins its threads to cores, counting from the first, in every process: two
            # single-thread styling processes (`darkroom worker`) then shared core 0 while the
            # others idled, and each network took twice its CPU time in wall time.
            "ENABLE_CPU_PINNING": "NO",
        }
        try:  # from memory: the weights are in the graph bytes, no file is read
            model = self._core.read_model(graph, openvino.Tensor(np.empty(0, dtype=np.uint8)))
            preprocess = openvino.preprocess.PrePostProcessor(model)
            preprocess.input("image").tensor().set_element_type(openvino.Type.u8)
            self._model = preprocess.build()
        except Exception as exc:
            raise BackendUnavailable(f"OpenVINO cannot read the graph ({type(exc).__name__})") from None
        self._shapes: OrderedDict[tuple[int, ...], _Compiled] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """Compiled input shapes, least recently used first."""
        with self._lock:
            return list(self._shapes)

    def _entry(self, shape: tuple[int, ...]) -> _Compiled:
        with self._lock:
            entry = self._shapes.get(shape)
            if entry is not None:
                self._shapes.move_to_end(shape)
                return entry
            # Compiled under the lock: two first photos of one size compile it once, and the
            # 0.2-0.4 s compile happens on a worker thread, never on the event loop.
            model = self._model.clone()
            model.reshape({"image": list(shape), "style_weights": [26]})
            try:
                entry = _Compiled(self._core.compile_model(model, "CPU", self._config))
            except Exception as exc:
                raise BackendUnavailable(f"OpenVINO failed to compile {shape} ({type(exc).__name__})") from None
            self.compiles += 1
            self._shapes[shape] = entry
            while len(self._shapes) > self.max_shapes:
                self._shapes.popitem(last=False)  # freed when the last running call lets go
                self.evictions += 1
            return entry

    def __call__(self, image: np.ndarray, weights: np.ndarray, cancel: Cancellation | None = None) -> np.ndarray:
        if image.dtype != np.uint8:  # the probe's float32 input, whole numbers: the same values
            image = image.astype(np.uint8)
        entry = self._entry(tuple(image.shape))
        with entry.lock:
            entry.holds_buffers = True
            stop = entry.request.cancel
            if cancel is not None:
                cancel.add_stopper(stop)  # erasure or shutdown stops the request
            try:
                if cancel is not None:
                    cancel.check()  # a request cancelled before it starts would still run
                # share_inputs: OpenVINO reads the caller's array in place instead of copying it
                # (15 MB at 1280x960); the output is copied out of the request's buffer.
                out = entry.request.infer({"image": image, "style_weights": weights}, share_inputs=True)[0]
            except RuntimeError:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("cancelled") from None
                raise
            finally:
                if cancel is not None:
                    cancel.remove_stopper(stop)
        self._release_others(entry)
        return out

    def _release_others(self, current: _Compiled | None) -> None:
        """Only the shape in use keeps its working buffers (150-280 MB at 1280x960); the others
        keep their compiled code (~22 MB each) and allocate again when next used."""
        with self._lock:
            others = [e for e in self._shapes.values() if e is not current and e.holds_buffers]
        for entry in others:
            if entry.lock.acquire(blocking=False):  # busy: another photo is running in it
                try:
                    entry.compiled.release_memory()
                    entry.holds_buffers = False
                finally:
                    entry.lock.release()

    def release_memory(self) -> None:
        """Free every compiled shape's working buffers (each allocates again when next used)."""
        self._release_others(None)

    def forget_shapes(self) -> None:
        with self._lock:
            self._shapes.clear()

    def close(self) -> None:
        self.forget_shapes()


def cpu_capabilities(core=None) -> tuple[str, ...]:
    """OpenVINO's list of what this CPU can do (e.g. FP32, BF16, INT8); () without OpenVINO."""
    try:
        if core is None:
            import openvino

            core = openvino.Core()
        return tuple(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:
        return ()


# -- the choice -------------------------------------------------------------------------------


def probe_portrait() -> np.ndarray:
    """The 192x256 portrait every candidate is timed and checked on (Grace Hopper, 1984 US Navy
    photograph, public domain; the copy in matplotlib's sample data, downscaled)."""
    data = files("inference").joinpath("probe_portrait.jpg").read_bytes()
    with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
        return np.asarray(image.convert("RGB"))


TIMING_SCALE = 5  # the probe (192x256) enlarged to 960x1280, the size most photos arrive at


def timing_portrait() -> np.ndarray:
    """The probe portrait enlarged to 960x1280 (``TIMING_SCALE``), to time the candidates on: the
    backends do not rank alike at every size. On the tiny probe, fixed per-run costs hid a 3x
    difference (onnxruntime fp32 and OpenVINO bf16 timed alike at 192x256); with both held to
    AVX2, onnxruntime fp32 was 5% faster than OpenVINO fp32 at 576x768 and 10% slower at
    1280x960, so a smaller stand-in chose the slower one for photos."""
    rgb = probe_portrait()
    return np.ascontiguousarray(rgb.repeat(TIMING_SCALE, axis=0).repeat(TIMING_SCALE, axis=1))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * float(np.log10(255.0**2 / mse))


@dataclass(frozen=True)
class _Candidate:
    backend: str
    precision: str
    build: Callable[[], NetworkRunner]


def choose_runner(
    reference: NetworkRunner,
    build_openvino: Callable[[str], NetworkRunner],
    image: np.ndarray,
    styles: Sequence[np.ndarray],
    preference: BackendPreference = BackendPreference(),
    precisions: Sequence[str] | None = None,
    timing_image: np.ndarray | None = None,
    kept: BackendChoice | None = None,
) -> tuple[NetworkRunner, BackendChoice]:
    """Time each candidate on ``timing_image`` (a network input; ``image`` when None), then,
    fastest first, check it on every style in ``styles`` against ``reference`` (onnxruntime
    fp32, itself a candidate) on ``image``; keep the first that passes among those the operator
    allows. ``precisions``: OpenVINO's to try, by default those the CPU reports.

    ``kept``: the choice an earlier start measured with the same `ChoiceKey`. Only it is built
    and checked (the same PSNR check, no timing); if it fails, every candidate is timed."""
    started = time.perf_counter()
    if kept is not None and preference.allows(kept.backend, kept.precision):
        reused = _reuse(kept, reference, build_openvino, image, styles, preference)
        if isinstance(reused, tuple):
            runner, choice = reused
            return runner, replace(choice, seconds=time.perf_counter() - started)
        log.warning("the kept backend choice (%s %s) is not used: %s; timing the backends again", kept.backend, kept.precision, reused)
    timing_image = image if timing_image is None else timing_image
    if precisions is None and preference.backend == ONNXRUNTIME:
        precisions = []  # not even imported
    elif precisions is None:
        # bf16 where the CPU reports it; OpenVINO fp32 is not timed there (bf16 ran 2-2.5x as fast
        # as it, and onnxruntime fp32 within 5% of it), unless the operator asks for fp32.
        # Without OpenVINO, its build says why.
        bf16 = BF16.upper() in cpu_capabilities() and preference.precision != FP32
        precisions = [BF16] if bf16 else [FP32]
    def keep_reference() -> NetworkRunner:
        return reference

    candidates = [_Candidate(ONNXRUNTIME, FP32, keep_reference)]
    candidates += [_Candidate(OPENVINO, p, partial(build_openvino, p)) for p in precisions]
    wanted = [c for c in candidates if preference.allows(c.backend, c.precision)]
    notes: list[str] = []
    if preference.forced and not wanted:
        asked = f"{preference.backend} {preference.precision}".strip()
        notes.append(f"{asked} is not available here")

    # One candidate at a time, each freeing its working memory once timed: at the photo size
    # the timing runs at, onnxruntime's arena (~200 MB) and OpenVINO's buffers (~180 MB) held
    # together took `darkroom stylize` from 378 to 564 MB peak RSS. With no choice to make, one
    # run for the log line, and the memory stays for the photos.
    competing = len(wanted) > 1
    runs = PROBE_RUNS if competing else 1
    runners: dict[_Candidate, NetworkRunner] = {}
    times: dict[_Candidate, list[float]] = {}

    def time_candidate(candidate: _Candidate) -> None:
        try:
            runner = candidate.build()
            runner(timing_image, styles[0])  # compiles, allocates, warms caches
        except Exception as exc:  # not installed, no bf16, fails to compile: never stops start-up
            detail = str(exc) if isinstance(exc, BackendUnavailable) else f"failed ({type(exc).__name__})"
            notes.append(f"{candidate.backend} {candidate.precision}: {detail}")
            return
        runners[candidate] = runner
        times[candidate] = [_seconds(runner, timing_image, styles[0]) for _ in range(runs)]
        release = getattr(runner, "release_memory", None)
        if competing and release is not None:
            release()

    for candidate in wanted:
        time_candidate(candidate)
    if (
        not any(c.backend == OPENVINO for c in runners)
        and any(c.backend == OPENVINO and c.precision == BF16 for c in wanted)
        and not any(c.backend == OPENVINO and c.precision == FP32 for c in wanted)
        and preference.allows(OPENVINO, FP32)
    ):
        # bf16 reported but not compiled (e.g. oneDNN held to AVX2): OpenVINO fp32 still competes
        time_candidate(_Candidate(OPENVINO, FP32, lambda: build_openvino(FP32)))
    # the best of a few runs: what the machine can do, not how busy its neighbours were
    fastest = {c: min(t) for c, t in times.items()}

    chosen: _Candidate | None = None
    quality = float("inf")
    expected: list[np.ndarray] = []  # the reference's outputs, only if another one is faster
    for candidate in sorted(runners, key=lambda c: fastest[c]):
        runner = runners[candidate]
        if runner is reference:
            chosen = candidate
            break
        try:
            expected = expected or [reference(image, weights) for weights in styles]
            worst = min(psnr(runner(image, w), want) for w, want in zip(styles, expected))
        except Exception as exc:
            notes.append(f"{candidate.backend} {candidate.precision}: failed ({type(exc).__name__})")
            continue
        if worst >= MIN_PSNR_DB:
            chosen, quality = candidate, worst
            break
        notes.append(f"{candidate.backend} {candidate.precision}: {worst:.1f} dB < {MIN_PSNR_DB:.0f} dB")

    how = "forced" if preference.forced else "auto"
    if chosen is None:  # nothing the operator allowed works: onnxruntime fp32 always does
        chosen, how = candidates[0], "fallback"
        runners[chosen] = reference
        fastest[chosen] = min(_seconds(reference, image, styles[0]) for _ in range(PROBE_RUNS))
    for candidate, runner in runners.items():
        if candidate is not chosen and runner is not reference:
            runner.close()
    others = ", ".join(f"{c.backend} {c.precision} {1000 * fastest[c]:.1f} ms" for c in fastest if c is not chosen)
    if others:
        notes.insert(0, f"also timed: {others}")
    runner = runners[chosen]
    if isinstance(runner, OpenVinoRunner):
        runner.forget_shapes()  # the probe's shape is not a photo's: leave every slot to photos
    seconds = time.perf_counter() - started
    return runner, BackendChoice(chosen.backend, chosen.precision, 1000 * fastest[chosen], quality, how, "; ".join(notes), seconds)


def _reuse(
    kept: BackendChoice,
    reference: NetworkRunner,
    build_openvino: Callable[[str], NetworkRunner],
    image: np.ndarray,
    styles: Sequence[np.ndarray],
    preference: BackendPreference,
) -> tuple[NetworkRunner, BackendChoice] | str:
    """The kept candidate, built and checked against the reference, or why it cannot be used."""
    how = "forced" if preference.forced else "auto"
    if kept.backend == ONNXRUNTIME:
        return reference, BackendChoice(ONNXRUNTIME, FP32, kept.probe_ms, float("inf"), how, kept=True)
    if kept.backend != OPENVINO or kept.precision not in PRECISIONS:
        return "not a backend this version offers"
    runner = None
    try:
        runner = build_openvino(kept.precision)
        worst = min(psnr(runner(image, w), reference(image, w)) for w in styles)
    except Exception as exc:
        if runner is not None:
            runner.close()
        return str(exc) if isinstance(exc, BackendUnavailable) else f"failed ({type(exc).__name__})"
    if worst < MIN_PSNR_DB:
        runner.close()
        return f"{worst:.1f} dB < {MIN_PSNR_DB:.0f} dB"
    if isinstance(runner, OpenVinoRunner):
        runner.forget_shapes()  # the probe's shape is not a photo's
    return runner, BackendChoice(kept.backend, kept.precision, kept.probe_ms, worst, how, kept=True)


# -- the kept choice --------------------------------------------------------------------------


KEPT_CHOICE_FILE = "backend-choice.json"  # in the data directory
_LIBRARIES = ("onnxruntime", "openvino", "onnx", "numpy")
# Environment variables that change what the runtimes can do on this CPU (bench/avx2_only.py)
_ENVIRONMENT = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OMP_NUM_THREADS")


@dataclass(frozen=True)
class ChoiceKey:
    """What a measured choice depends on; a kept choice is used only under an equal key.
    Every part is a string, so the key reads back from JSON as it was written."""

    cpu: str  # the CPU's model name
    cpu_flags: str  # SHA-256 of its sorted feature flags (AVX-512, bf16, ...)
    libraries: str  # "onnxruntime 1.32.0, openvino 2026.4.1, ..."
    models: str  # SHA-256 of the shipped model and of the graph the runtimes are given
    software: str  # this code's version and the rest of what is timed (threads, preference, styles)
    environment: str  # variables that hold the runtimes to fewer instructions

    @classmethod
    def here(cls, model_sha256: str, graph: bytes, software: str) -> ChoiceKey:
        model, flags = _cpu()
        return cls(
            cpu=model,
            cpu_flags=hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest(),
            libraries=", ".join(f"{name} {_version(name)}" for name in _LIBRARIES),
            models=f"{model_sha256.lower()} {hashlib.sha256(graph).hexdigest()}",
            software=software,
            environment=", ".join(f"{name}={os.environ.get(name, '')}" for name in _ENVIRONMENT),
        )


def _cpu() -> tuple[str, list[str]]:
    """The CPU's model name and feature flags (Linux's /proc/cpuinfo; elsewhere what Python knows)."""
    model, flags = "", list[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip()
                if name == "model name" and not model:
                    model = value.strip()
                elif name in ("flags", "Features") and not flags:
                    flags = value.split()
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


class KeptChoice:
    """The measured choice in a small JSON file of the data directory (0600; nothing personal:
    the key above, the backend and precision, its probe time and PSNR). Unreadable or corrupt
    records are ignored with one log line, and a failed write only means timing next start."""

    VERSION = 1

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self, key: ChoiceKey) -> BackendChoice | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read(65536)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("the kept backend choice %s cannot be read (%s); timing the backends", self.path, exc.strerror)
            return None
        try:
            record = json.loads(data)
            if record["version"] != self.VERSION:
                raise ValueError("another version")
            if record["key"] != asdict(key):
                log.info("the kept backend choice was measured under other conditions; timing the backends")
                return None
            choice = record["choice"]
            return BackendChoice(
                backend=str(choice["backend"]),
                precision=str(choice["precision"]),
                probe_ms=float(choice["probe_ms"]),
                psnr_db=float(choice["psnr_db"]) if choice["psnr_db"] is not None else float("inf"),
                how=str(choice["how"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("the kept backend choice %s is not a valid record (%s); timing the backends", self.path, type(exc).__name__)
            return None

    def save(self, key: ChoiceKey, choice: BackendChoice) -> None:
        if not self.path.parent.is_dir():
            return  # no data directory (the offline CLI, a worker without one): nothing is kept
        record = {
            "version": self.VERSION,
            "key": asdict(key),
            "choice": {name: value for name, value in choice.as_dict().items() if name in ("backend", "precision", "probe_ms", "psnr_db", "how")},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        temporary = self.temporary
        try:
            # O_EXCL: another process starting at the same moment is writing it; it keeps its record
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:  # or one was killed while writing: clear the way for the next start
                if time.time() - temporary.stat().st_mtime > 60:
                    temporary.unlink()
            except OSError:
                pass
            return
        except OSError as exc:
            log.warning("the backend choice cannot be kept in %s (%s); it will be timed again next start", self.path, exc.strerror)
            return
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f, indent=1)
            os.replace(temporary, self.path)  # whole or not at all
        except OSError as exc:
            log.warning("the backend choice cannot be kept in %s (%s); it will be timed again next start", self.path, exc.strerror)
            try:
                os.unlink(temporary)
            except OSError:
                pass

    @property
    def temporary(self) -> Path:
        """Where the record is written before it takes its name."""
        return self.path.with_name(f".{self.path.name}.new")


def _seconds(runner: NetworkRunner, image: np.ndarray, weights: np.ndarray) -> float:
    started = time.perf_counter()
    runner(image, weights)
    return time.perf_counter() - started
