"""Model files: where they are, what they are, and proof that they are the ones we checked.

Every model is loaded from an installed package (or an operator's own file) and its SHA-256 is
checked against the catalogue on the very bytes that are handed to onnxruntime, so nothing can
be swapped between the check and the load. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelIntegrityError


@dataclass(frozen=True)
class ModelFile:
    key: str
    path: Path
    sha256: str
    licence: str
    source: str
    trained_on: str

    def read_verified(self) -> bytes:
        """The file's bytes, or ModelIntegrityError when missing or not the expected file."""
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ModelIntegrityError(
                f"model '{self.key}' cannot be read at {self.path}: {exc.strerror or exc}"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.sha256.lower():
            raise ModelIntegrityError(
                f"model '{self.key}' at {self.path} has SHA-256 {digest}, but the catalogue "
                f"expects {self.sha256}. Refusing to start: reinstall the package that provides "
                "it, or fix the checksum if you replaced the file on purpose."
            )
        return data


def package_file(package: str, relative: str) -> Path:
    """Path of a data file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelIntegrityError(f"package '{package}' that provides a model is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def machine_threads() -> int:
    """CPU cores this process may use (respects affinity and cgroup-limited sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class SessionPool:
    """One onnxruntime session per model, created once and shared by every thread.

    ``InferenceSession.run`` is thread-safe, so a single session serves all requests; creating a
    session per request would re-parse and re-optimise the graph every time.
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or machine_threads()
        self._sessions: dict[str, object] = {}
        self._lock = threading.Lock()

    def session(self, model: ModelFile, rewrite=None, rewritten: bytes | None = None):
        """The shared session for ``model``; ``rewrite(bytes) -> bytes`` may transform the
        verified graph once (e.g. to specialise it) before the session is built. A caller that
        already holds ``rewrite(model.read_verified())`` passes it as ``rewritten``."""
        key = self._key(model, rewrite)
        with self._lock:
            existing = self._sessions.get(key)
            if existing is not None:
                return existing
            data = rewritten
            if data is None:
                data = model.read_verified()
                if rewrite is not None:
                    data = rewrite(data)
            session = self._build(data)
            self._sessions[key] = session
            return session

    def discard(self, model: ModelFile, rewrite=None) -> None:
        """Drop a session nobody will use again (its memory goes when the last user lets go)."""
        with self._lock:
            self._sessions.pop(self._key(model, rewrite), None)

    @staticmethod
    def _key(model: ModelFile, rewrite) -> str:
        return model.key if rewrite is None else f"{model.key}:{getattr(rewrite, 'key', id(rewrite))}"

    def _build(self, data: bytes):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Memory patterns pre-plan one arena block per input shape; with photos of many sizes the
        # arena then keeps growing (334 -> 613 MB after two images, measured). Time: within noise.
        options.enable_mem_pattern = False
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
