"""Process-level settings that must be in place before onnxruntime or OpenVINO is imported (the
one kind of environment change allowed outside bot/settings/__init__.py). Imported first by `inference`.

Both runtimes were seen (strace, in a network namespace) to phone home unless told not to:
* onnxruntime 1.32 starts Microsoft's 1DS telemetry: it writes a device id and an event
  database under ~/.cache/Microsoft/DeveloperTools/.onnxruntime. ORT_DISABLE_TELEMETRY=1 stops it.
* `import openvino` imports its converter (ovc), which starts Google-Analytics telemetry from the
  openvino-telemetry package: it writes ~/intel/openvino_ga_cid and ~/intel/stats and looks up
  a name to send them. When that package cannot be imported, OpenVINO uses its own no-op stub
  (openvino/tools/ovc/telemetry_stub.py), so it is made unimportable here.
tests/proofs/test_engine_offline.py proves both stay silent.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings

# Present BEFORE onnxruntime is imported, or it does nothing (`disable_telemetry_events()` does not
# help either). Forced, not defaulted: "0" in the environment must not turn telemetry back on.
if "onnxruntime" in sys.modules and os.environ.get("ORT_DISABLE_TELEMETRY") != "1":
    warnings.warn(
        "onnxruntime was imported before Darkroom's engine, so its telemetry could not be switched "
        "off; import inference first or set ORT_DISABLE_TELEMETRY=1 in the environment",
        RuntimeWarning,
        stacklevel=3,
    )
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
if "openvino_telemetry" not in sys.modules:
    sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # `import openvino_telemetry` now raises ImportError


def _return_big_buffers_to_the_system() -> None:
    """Every allocation of 1 MiB or more gets its own mapping, given back to the system when
    freed. By default glibc raises this threshold as big blocks are freed (up to 32 MiB), after
    which photo-sized buffers (images, network tensors) stay in the heap once freed: a
    `darkroom stylize` of one 1280x960 photo then peaked at 402-410 MB instead of 389 MB
    (measured with MALLOC_MMAP_THRESHOLD_=1048576, which this does from inside the process)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


_return_big_buffers_to_the_system()
