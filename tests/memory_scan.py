"""Reading another process's memory (/proc/PID/maps and /proc/PID/mem) to look for a photo.

Every readable region is read (heap, anonymous mappings, thread stacks, shared memory, mapped
files); the process is stopped (SIGSTOP) while it is read, so the picture is one moment's.
Reading needs ptrace access: root, or the parent of a process that is still dumpable.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

CHUNK = 16 * 1024 * 1024


@dataclass(frozen=True)
class Hit:
    needle: int  # index into the needles
    address: int
    region: str  # the maps line of the region it is in

    def __str__(self) -> str:
        return f"needle {self.needle} at {self.address:#x} in {self.region}"


def readable_regions(pid: int) -> list[tuple[int, int, str]]:
    regions = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            name = fields[5].strip() if len(fields) > 5 else ""
            if not fields[1].startswith("r") or name in ("[vvar]", "[vvar_vclock]", "[vsyscall]"):
                continue
            regions.append((start, end, line.strip()))
    return regions


def scan_process(pid: int, needles: list[bytes]) -> list[Hit]:
    """Every place in ``pid``'s memory where one of ``needles`` is found."""
    overlap = max(len(n) for n in needles) - 1
    hits: list[Hit] = []
    os.kill(pid, signal.SIGSTOP)
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            for start, end, line in readable_regions(pid):
                tail = b""
                position = start
                while position < end:
                    size = min(CHUNK, end - position)
                    try:
                        mem.seek(position)
                        block = mem.read(size)
                    except OSError:
                        block = b""
                    if not block:
                        break  # an unreadable rest of the region (e.g. a guard page)
                    data = tail + block
                    base = position - len(tail)
                    for index, needle in enumerate(needles):
                        found = data.find(needle)
                        while found != -1:
                            hits.append(Hit(index, base + found, line))
                            found = data.find(needle, found + 1)
                    tail = data[-overlap:] if overlap else b""
                    position += len(block)
    finally:
        os.kill(pid, signal.SIGCONT)
    unique = {(h.needle, h.address): h for h in hits}
    return sorted(unique.values(), key=lambda h: (h.needle, h.address))
