"""The walk of one photo's work item through the code, from the router receiving the photo to
the styled reply being sent (issue 20's "stays and returns").

    python tools/walk.py [ROOT]      # ROOT: a checkout of Darkroom (default: this one)

It runs one handler test (a person with a favourite style sends a photo and gets it styled) with
a profiler on the event loop's thread, and records every call into Darkroom's own modules (bot,
handlers, inference) between the router's PhotoEvent and the platform's SendPhotos. Consecutive
calls in the same module are one *stay*; a stay in a module that was already visited and left
is a *return*. It prints both counts and the path, module by module. Work done in the engine's
threads (decode, network) is not traced, and a coroutine resuming after an await is not a new
call: this measures how the code hands the job along, not how the engine computes or how often
the event loop switches tasks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TEST = "tests/handlers/test_photos.py::test_favourite_style_skips_the_picker"
OURS = ("bot", "handlers", "inference")


class Walk:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tracing = False
        self.done = False
        self.path: list[str] = []
        self.frames: list = []  # every frame seen, kept alive so that ids are not reused
        self.seen: set[int] = set()

    def module_of(self, frame) -> str | None:
        filename = frame.f_code.co_filename
        try:
            relative = Path(filename).resolve().relative_to(self.root)
        except ValueError:
            return None
        if relative.parts[0] not in OURS:
            return None
        return ".".join(relative.with_suffix("").parts)

    def profile(self, frame, event, arg) -> None:
        if event != "call" or self.done:
            return
        code = frame.f_code
        if not self.tracing:
            local = frame.f_locals.get("event")
            if type(local).__name__ == "PhotoEvent" and code.co_filename.endswith(os.path.join("bot", "router.py")):
                self.tracing = True
            else:
                return
        if code.co_filename.endswith(os.path.join("fakes", "platform.py")) and type(frame.f_locals.get("reply")).__name__ == "SendPhotos":
            self.done = True
            return
        if id(frame) in self.seen:
            return  # a coroutine resuming after an await: not a new step of the walk
        self.seen.add(id(frame))
        self.frames.append(frame)
        module = self.module_of(frame)
        if module is not None and (not self.path or self.path[-1] != module):
            self.path.append(module)

    # pytest hooks
    def pytest_runtest_call(self, item) -> None:
        sys.setprofile(self.profile)

    def pytest_runtest_teardown(self, item) -> None:
        sys.setprofile(None)


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent).resolve()
    os.chdir(root)
    sys.path.insert(0, str(root))
    import pytest

    walk = Walk(root)
    code = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:randomly", TEST, "-k", "sqlite or not postgres"], plugins=[walk])
    if code != 0 or not walk.done:
        print(f"walk: the test did not complete a photo (exit {code})", file=sys.stderr)
        return 1
    seen: set[str] = set()
    returns = 0
    for module in walk.path:
        if module in seen:
            returns += 1
        seen.add(module)
    print(f"stays: {len(walk.path)}, returns: {returns}, modules: {len(seen)}")
    print(" → ".join(m.split(".", 1)[-1] if m.count(".") else m for m in walk.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
