"""Process hardening for the commands that hold photos in memory (`darkroom run`, `stylize`,
`sheet`): a crash must not write the process's memory, and with it the photos, to disk.

- RLIMIT_CORE 0 (soft and hard, so nothing in the process can raise it again) stops the kernel
  writing a core file for a plain `core_pattern`.
- PR_SET_DUMPABLE 0 also stops dumps piped to a collector (`|/usr/lib/systemd/systemd-coredump`,
  apport), which the kernel does not limit by RLIMIT_CORE. It has side effects, wanted here: the
  process's /proc/PID files become root's, so other processes of the same user can no longer
  ptrace it or read /proc/PID/mem or /proc/PID/environ (root, with CAP_SYS_PTRACE, still can; the
  memory-scan proofs run as root). An operator who wants to attach a debugger to a running bot
  must do so as root.

The other half of process-level hardening, onnxruntime's telemetry, must happen before
onnxruntime is imported and so lives at the top of `inference/__init__.py`.

tests/proofs/test_os_level.py proves both: a core_pattern that would write a file, SIGQUIT or
SIGABRT in the middle of styling, and no core file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


class HardeningError(RuntimeError):
    pass


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def harden_process() -> None:
    """No core dumps, by any route, for this process from now on. Raises HardeningError if the
    system refuses (a photo bot that could dump its memory must not start)."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError) as exc:
        raise HardeningError(f"cannot switch off core dumps (RLIMIT_CORE): {exc}") from None
    if not sys.platform.startswith("linux"):
        return  # prctl is Linux's; elsewhere RLIMIT_CORE is what there is
    libc = _libc()
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise HardeningError(f"cannot mark the process non-dumpable (prctl PR_SET_DUMPABLE): errno {errno}")


def core_dumps_disabled() -> bool:
    """True when this process can write no core dump (both measures above are in force)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if soft != 0 or hard != 0:
        return False
    if not sys.platform.startswith("linux"):
        return True
    return _libc().prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
