"""Process-level hardening that must be in place before onnxruntime or OpenVINO is imported (the
one kind of environment change allowed outside bot/settings.py). Imported first by `inference`.

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

import os
import sys

os.environ["ORT_DISABLE_TELEMETRY"] = "1"
if "openvino_telemetry" not in sys.modules:
    sys.modules["openvino_telemetry"] = None  # `import openvino_telemetry` raises ImportError
