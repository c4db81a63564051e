"""Copies of onnxruntime and OpenVINO that behave as on a CPU without AVX-512, for benchmarks.

An AVX2-only machine differs from this one for *both* sides of `bench/inference.py`: the
package's onnxruntime would run its AVX2 kernels too. ``ONEDNN_MAX_CPU_ISA=AVX2`` reaches only
oneDNN inside OpenVINO (OpenVINO's own kernels, e.g. its MVN, and onnxruntime's MLAS keep
AVX-512), so this makes copies of both packages in which every XGETBV instruction reports
XCR0 = 7 (x87, SSE and AVX state enabled; no opmask or ZMM state). That is what an operating
system reports on a CPU without AVX-512, and every runtime checks it before using AVX-512: MLAS
and oneDNN then pick their AVX2 kernels, and OpenVINO stops reporting bf16.

Each ``xgetbv`` (0F 01 D0) found at an instruction boundary by ``objdump -d`` becomes
``push 7; pop rax`` (6A 07 58), same length. EDX is left as it was: it only holds XCR0's upper
half, whose bits no runtime tests. Benchmark use only; nothing in the bot loads these copies.

    python bench/avx2_only.py DEST    # makes DEST/onnxruntime and DEST/openvino, prints the sites
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

XGETBV = b"\x0f\x01\xd0"
REPORTS_AVX_ONLY = b"\x6a\x07\x58"  # push 7; pop rax
PACKAGES = ("onnxruntime", "openvino")


def xgetbv_offsets(library: Path) -> list[int]:
    """File offsets of the XGETBV instructions objdump decodes in ``library``'s code."""
    listing = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(library)], capture_output=True, text=True, check=True
    ).stdout
    addresses = [int(line.split(":")[0], 16) for line in listing.splitlines() if line.rstrip().endswith("\txgetbv")]
    return [_file_offset(library, address) for address in addresses]


def _file_offset(library: Path, address: int) -> int:
    """A virtual address in a shared object -> its offset in the file (via its PT_LOAD segments)."""
    import struct

    data = library.read_bytes()[:65536]
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        kind, _, offset, vaddr, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
        if kind == 1 and vaddr <= address < vaddr + filesz:  # PT_LOAD
            return address - vaddr + offset
    raise ValueError(f"{address:#x} is in no loaded segment of {library.name}")


def patch_library(library: Path) -> int:
    """Make every XGETBV in ``library`` report XCR0 = 7; returns how many were patched."""
    if XGETBV not in library.read_bytes():  # no need to disassemble it
        return 0
    offsets = xgetbv_offsets(library)
    if not offsets:
        return 0
    data = bytearray(library.read_bytes())
    for offset in offsets:
        if data[offset : offset + 3] != XGETBV:
            raise ValueError(f"{library.name}: no XGETBV at {offset:#x}")
        data[offset : offset + 3] = REPORTS_AVX_ONLY
    library.write_bytes(bytes(data))
    return len(offsets)


def make_avx2_only(dest: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, int]:
    """Copy each installed package into ``dest`` and patch its shared objects: put ``dest`` first
    on PYTHONPATH to import the copies. Returns the XGETBV sites patched per package."""
    if shutil.which("objdump") is None:
        raise RuntimeError("objdump (binutils) is needed to find the XGETBV instructions")
    patched = {}
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        source = Path(next(iter(spec.submodule_search_locations)))
        target = dest / name
        shutil.copytree(source, target, symlinks=True)
        libraries = [p for p in target.rglob("*.so*") if p.is_file() and not p.is_symlink() and re.search(r"\.so(\.|$)", p.name)]
        patched[name] = sum(patch_library(p) for p in libraries)
    return patched


if __name__ == "__main__":
    print(make_avx2_only(Path(sys.argv[1])))
