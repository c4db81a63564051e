"""The OS-level proofs' machinery: a private network namespace, an strace of every connection and
every file written, a parser for that trace, and the core-dump destination.

The Python-level guard (tests/network_guard.py) only sees sockets made through Python's
`socket` module; onnxruntime's C++ telemetry, glibc's resolver and anything else native never
pass through it. Here the kernel's view is used instead: the process runs in a network namespace
that has only loopback, under `strace -f`, and every `connect`/`sendto`/`sendmsg`/`sendmmsg` and
every call that creates or opens a file for writing is read back and checked.
"""

from __future__ import annotations

import ast
import ctypes
import ctypes.util
import errno
import fcntl
import ipaddress
import os
import re
import shutil
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

# -- who may run these proofs -------------------------------------------------------------------


def missing_requirements() -> str | None:
    """Why the OS-level proofs cannot run here, or None. CI runs them as root with strace."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (network namespaces, strace of a non-dumpable process, core_pattern)"
    if shutil.which("strace") is None:
        return "needs strace"
    return None


# -- a network namespace with nothing but loopback ------------------------------------------------

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP = 0x1


def enter_private_network() -> None:
    """Move this process into a new network namespace and bring its loopback up. Afterwards the
    only interface is `lo`: no route, no resolver, no Internet; a DNS query cannot leave."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        raise AssertionError(f"the private namespace has interfaces {names}, expected only lo")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # a resolver's first step
        code = probe.connect_ex(("10.255.255.53", 53))
    if code != errno.ENETUNREACH:
        raise AssertionError(f"a non-loopback address is reachable from the private namespace ({code})")


# -- strace ------------------------------------------------------------------------------------

NETWORK_CALLS = ("connect", "sendto", "sendmsg", "sendmmsg")
# Every way to create a file, open one for writing, or put one in place. `?` tells strace that a
# call may not exist on this architecture (aarch64 has only the *at forms).
FILE_CALLS = (
    "open", "openat", "openat2", "creat", "rename", "renameat", "renameat2", "mkdir", "mkdirat",
    "link", "linkat", "symlink", "symlinkat", "truncate", "mknod", "mknodat", "chdir", "fchdir",
)  # fmt: skip


def strace_command(trace_file: Path) -> list[str]:
    """The prefix that runs a command under strace, following every thread and child, with file
    descriptors shown as paths (-y) so every relative path can be resolved."""
    calls = ",".join([*NETWORK_CALLS, *(f"?{name}" for name in FILE_CALLS)])
    return ["strace", "-f", "-qq", "-y", "-s", "64", "-o", str(trace_file), "-e", f"trace={calls}"]


@dataclass(frozen=True)
class Endpoint:
    family: str  # AF_INET, AF_INET6, AF_UNIX, AF_NETLINK, ...
    address: str  # IP address or unix socket path
    port: int = 0

    def __str__(self) -> str:
        return f"{self.address}:{self.port}" if self.family in ("AF_INET", "AF_INET6") else f"{self.family} {self.address}"


@dataclass(frozen=True)
class Contact:
    pid: int
    call: str
    endpoint: Endpoint
    line: str


@dataclass(frozen=True)
class FileCall:
    pid: int
    call: str
    path: str
    line: str


@dataclass
class Trace:
    contacts: list[Contact] = field(default_factory=list)
    writes: list[FileCall] = field(default_factory=list)
    reads: list[FileCall] = field(default_factory=list)  # opened read-only (resolver files)
    cwd_changes: list[str] = field(default_factory=list)
    lines: int = 0


_LINE = re.compile(r"^(\d+)\s+([a-z0-9_]+)\((.*)$")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SOCKADDR = re.compile(r"\{sa_family=(AF_[A-Z0-9]+)(.*?)\}")
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
_INET = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6?, "([^"]+)"')
_DIRFD = re.compile(r"^(AT_FDCWD|\d+)<(.*?)>")
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND", "O_TMPFILE")


def _unquote(text: str) -> str:
    return ast.literal_eval('b"' + text + '"').decode("utf-8", "surrogateescape")


def _arguments(rest: str) -> list[str]:
    """Top-level, comma-separated arguments of a traced call (enough for the calls we trace)."""
    args, depth, current, quoted, escaped = [], 0, "", False, False
    for ch in rest:
        if quoted:
            current += ch
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:  # the call's closing parenthesis
                args.append(current.strip())
                return args
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
            continue
        current += ch
    args.append(current.replace("<unfinished ...>", "").strip())
    return args


def _path(arg: str) -> str | None:
    match = _STRING.search(arg)
    return _unquote(match.group(1)) if match else None


def _resolve(dirfd: str | None, path: str, cwd: Path) -> str:
    if path.startswith("/"):
        return os.path.normpath(path)
    base = str(cwd)
    if dirfd is not None:
        match = _DIRFD.match(dirfd)
        if match:
            base = _unquote(match.group(2).replace('"', '\\"'))
    return os.path.normpath(os.path.join(base, path))


def _endpoint(family: str, body: str) -> Endpoint:
    if family in ("AF_INET", "AF_INET6"):
        port = _PORT.search(body)
        address = _INET.search(body)
        return Endpoint(family, (address.group(1) or address.group(2)) if address else "?", int(port.group(1)) if port else 0)
    if family == "AF_UNIX":
        path = _STRING.search(body)
        abstract = "@" if "sun_path=@" in body else ""
        return Endpoint(family, abstract + (_unquote(path.group(1)) if path else ""))
    return Endpoint(family, body.strip(", "))


def parse_strace(text: str, cwd: Path) -> Trace:
    """Every network contact and every file write in an `strace -f -y` output. ``cwd`` is the
    traced process's working directory (used only for calls strace prints without a dirfd)."""
    trace = Trace()
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue  # "<... resumed>" halves, signals, exits
        trace.lines += 1
        pid, call, rest = int(match.group(1)), match.group(2), match.group(3)
        if call in NETWORK_CALLS:
            for family, body in _SOCKADDR.findall(rest):
                trace.contacts.append(Contact(pid, call, _endpoint(family, body), line))
            continue
        args = _arguments(rest)
        written: list[str] = []
        if call in ("open", "creat", "truncate", "mkdir", "mknod"):
            path = _path(args[0]) if args else None
            flags = args[1] if len(args) > 1 else ""
            if path is not None:
                if call != "open" or any(f in flags for f in WRITE_FLAGS):
                    written.append(_resolve(None, path, cwd))
                else:
                    trace.reads.append(FileCall(pid, call, _resolve(None, path, cwd), line))
        elif call in ("openat", "openat2", "mkdirat", "mknodat"):
            path = _path(args[1]) if len(args) > 1 else None
            flags = args[2] if len(args) > 2 else ""
            if path is not None:
                resolved = _resolve(args[0], path, cwd)
                if call in ("mkdirat", "mknodat") or any(f in flags for f in WRITE_FLAGS):
                    written.append(resolved)
                else:
                    trace.reads.append(FileCall(pid, call, resolved, line))
        elif call in ("rename", "link", "symlink"):
            target = _path(args[1]) if len(args) > 1 else None
            if target is not None:
                written.append(_resolve(None, target, cwd))
        elif call in ("renameat", "renameat2", "linkat"):
            target = _path(args[3]) if len(args) > 3 else None
            if target is not None:
                written.append(_resolve(args[2], target, cwd))
        elif call == "symlinkat":
            target = _path(args[2]) if len(args) > 2 else None
            if target is not None:
                written.append(_resolve(args[1], target, cwd))
        elif call in ("chdir", "fchdir"):
            trace.cwd_changes.append(line)
        trace.writes += [FileCall(pid, call, p, line) for p in written]
    return trace


# -- what counts as a violation --------------------------------------------------------------------

# Local services a resolver talks to instead of sending a DNS packet itself.
RESOLVER_SOCKETS = (
    "/var/run/nscd/socket",
    "/run/nscd/socket",
    "/run/systemd/resolve/io.systemd.Resolve",
    "/run/systemd/resolve/io.systemd.Resolve.Monitor",
)
# Files glibc reads only to resolve a name (never for a numeric address like 127.0.0.1).
RESOLVER_FILES = ("/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/hosts", "/etc/host.conf")


def dns_lookups(trace: Trace) -> list[str]:
    """Every attempt to resolve a name: a packet to port 53 (any address, also 127.0.0.53),
    a connection to nscd or systemd-resolved, or glibc reading its resolver configuration."""
    found = [
        f"{c.call} to {c.endpoint} (pid {c.pid})"
        for c in trace.contacts
        if (c.endpoint.family in ("AF_INET", "AF_INET6") and c.endpoint.port == 53)
        or (c.endpoint.family == "AF_UNIX" and c.endpoint.address in RESOLVER_SOCKETS)
    ]
    found += [f"read {r.path} (pid {r.pid})" for r in trace.reads if r.path in RESOLVER_FILES]
    return found


def _same_ip(a: str, b: str) -> bool:
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return a == b
    x = getattr(x, "ipv4_mapped", None) or x
    y = getattr(y, "ipv4_mapped", None) or y
    return x == y


def unexpected_contacts(trace: Trace, allowed: set[tuple[str, int]]) -> list[str]:
    """Every network contact that is not one of the ``allowed`` (host, port) pairs. Netlink (a
    question to this machine's kernel, as glibc asks which addresses exist) and AF_UNSPEC (which
    only dissolves a UDP socket's association) are not network contacts."""
    bad = []
    for c in trace.contacts:
        e = c.endpoint
        if e.family in ("AF_NETLINK", "AF_UNSPEC"):
            continue
        if e.family in ("AF_INET", "AF_INET6") and any(_same_ip(e.address, h) and e.port == p for h, p in allowed):
            continue
        bad.append(f"{c.call} to {e} (pid {c.pid})")
    return bad


def unexpected_writes(trace: Trace, allowed: set[Path]) -> list[str]:
    """Every file or directory the process created, opened for writing or put in place anywhere
    on the machine, except the ``allowed`` paths (and /dev/null, which is not a file). Attempts
    that failed count too: they show the intent."""
    allowed_text = {os.path.normpath(str(p)) for p in allowed}
    bad = [f"{w.call} {w.path} (pid {w.pid})" for w in trace.writes if w.path not in allowed_text and w.path != "/dev/null"]
    bad += [f"changed directory: {line}" for line in trace.cwd_changes]
    return sorted(set(bad))


# -- directory listings ------------------------------------------------------------------------------


def listing(roots: list[Path]) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) for everything under ``roots``, directories included."""
    found: dict[str, tuple[int, int]] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                try:
                    stat = os.lstat(path)
                except OSError:
                    continue
                found[path] = (stat.st_size if not os.path.isdir(path) else 0, stat.st_mtime_ns)
    return found


def listing_changes(before: dict, after: dict) -> list[str]:
    return sorted(path for path, state in after.items() if before.get(path) != state)


# -- core dumps ----------------------------------------------------------------------------------

CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")


def core_pattern() -> str:
    return CORE_PATTERN.read_text().strip()


def core_directory(pattern: str, cwd: Path) -> Path | None:
    """Where the kernel would write a core file for a process in ``cwd``, or None when that
    cannot be watched (a pipe to a collector, or a directory that itself has % specifiers)."""
    if pattern.startswith("|"):
        return None
    directory = os.path.dirname(pattern)
    if "%" in directory:
        return None
    return cwd / directory if not directory.startswith("/") else Path(directory)
