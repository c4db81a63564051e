"""Freed memory is overwritten, so a released photo does not linger in the heap.

Python cannot zero an immutable `bytes` object, and the libraries between the network and us
(httpx, aiohttp, Pillow, numpy, OpenCV) copy a photo into buffers of their own that they free
without wiping. glibc can wipe every block as it is freed (mallopt M_PERTURB, the documented
knob behind MALLOC_PERTURB_): whatever Python or a C library frees through malloc is filled with
zeros on the spot. Blocks that never reach malloc's free path stay as they are: CPython's small
object allocator (objects of 512 bytes or less) and glibc's per-thread cache of small blocks
(1 KB or less) keep theirs until reused; large blocks are unmapped and go back to the kernel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger("darkroom.heap")

M_PERTURB = -6  # glibc malloc.h
FREED = 0x100  # nonzero turns perturbing on; the low byte (0) is what freed memory is set to


def wipe_freed_memory() -> bool:
    """Turn on wiping of freed memory for this process; False where libc is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.warning("freed memory is not wiped: this C library has no mallopt")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    if mallopt(M_PERTURB, FREED) != 1:
        log.warning("freed memory is not wiped: mallopt(M_PERTURB) was refused")
        return False
    return True


def freeze_start_up_objects() -> None:
    """Leave what start-up built (libraries, the engine, the bot's own objects) out of every
    later garbage collection: `gc.freeze`. Each job ends with a full collection
    (`handlers.memory.forget_freed_copies`) so that reference cycles holding a photo are freed,
    and so wiped, at once; with everything loaded that walks about 100,000 objects, 58 ms a job
    in a worker; frozen, it walks only what came after. Call it before the first photo can
    arrive: a frozen object is never collected (its memory is freed only by reference count)."""
    gc.collect()
    gc.freeze()


def thaw_start_up_objects() -> None:
    """Undo `freeze_start_up_objects` (the bot stopped, the process may go on, as in tests), and
    collect at once what became garbage while frozen: here, not in whatever runs next."""
    gc.unfreeze()
    gc.collect()
