"""Runs the page's JS unit tests (`node --test tests/webapp/js/`) against references that Python
writes here (OpenCV's face detection steps, the engine's network output at 512x384, blends,
the XMP label, EXIF orientation), so the one test command covers them too."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.webapp.references import write_references

JS_TESTS = Path(__file__).parent / "js"


def test_node_unit_tests_pass(tmp_path, reference_engine):
    node = shutil.which("node")
    assert node, "Node.js (20 or newer) is needed for the on-device page's unit tests"
    # WASM runs the graph in fp32: its reference is onnxruntime fp32, whatever backend the bot chose
    write_references(tmp_path / "refs", reference_engine)
    env = {**os.environ, "DARKROOM_WEBAPP_REFS": str(tmp_path / "refs")}
    done = subprocess.run(
        [node, "--test", "--test-reporter=spec", *sorted(str(p) for p in JS_TESTS.glob("*.test.mjs"))],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "fail 0" in done.stdout.replace("ℹ ", "")
