"""The strace parser behind the OS-level proofs, on lines as strace 6 prints them (no root
needed). The proofs themselves are in tests/proofs/test_os_level.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.os_level import dns_lookups, parse_strace, strace_command, unexpected_contacts, unexpected_writes

SAMPLE = r"""
101 openat(AT_FDCWD</srv/work>, "/srv/work/data/darkroom.sqlite3", O_RDWR|O_CREAT|O_NOFOLLOW|O_CLOEXEC, 0644) = 7</srv/work/data/darkroom.sqlite3>
101 openat(AT_FDCWD</srv/work>, "data/secret.key", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0600) = 8</srv/work/data/secret.key>
101 openat(AT_FDCWD</srv/work>, "/usr/lib/python3.11/os.py", O_RDONLY|O_CLOEXEC) = 3</usr/lib/python3.11/os.py>
101 openat(AT_FDCWD</srv/work>, "/dev/null", O_WRONLY|O_CLOEXEC) = 3</dev/null>
102 openat(5</home/u/.cache/x>, "db\303\251", O_RDWR|O_CREAT|O_CLOEXEC, 0644 <unfinished ...>
102 <... openat resumed>) = 9</home/u/.cache/x/db\303\251>
102 renameat2(AT_FDCWD</srv/work>, "t.tmp", 4</tmp>, "photo.jpg", RENAME_NOREPLACE) = 0
102 mkdir("out", 0777)                = 0
103 openat(AT_FDCWD</srv/work>, "/etc/resolv.conf", O_RDONLY|O_CLOEXEC) = 9</etc/resolv.conf>
103 connect(9<socket:[1]>, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory)
103 connect(9<socket:[2]>, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = -1 ENETUNREACH (Network is unreachable)
104 connect(10<socket:[3]>, {sa_family=AF_INET, sin_port=htons(8081), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
104 sendto(11<socket:[4]>, "x", 1, 0, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28) = -1 ENETUNREACH
104 sendto(10<TCP:[5]>, "POST /bot123/getUpdates"..., 313, 0, NULL, 0) = 313
104 sendmsg(12<socket:[6]>, {msg_name={sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, msg_namelen=12, msg_iov=[{iov_base=[...], iov_len=20}], msg_iovlen=1, msg_controllen=0, msg_flags=0}, 0) = 20
104 connect(13<socket:[7]>, {sa_family=AF_UNSPEC, sa_data="\0\0\0\0"}, 16) = 0
105 sendmmsg(14<socket:[8]>, [{msg_hdr={msg_name={sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, msg_namelen=16}}], 1, MSG_NOSIGNAL) = 1
105 --- SIGTERM {si_signo=SIGTERM, si_code=SI_USER, si_pid=1, si_uid=0} ---
105 +++ exited with 0 +++
"""


def test_writes_are_resolved_and_reads_are_not_writes():
    trace = parse_strace(SAMPLE, cwd=Path("/srv/work"))
    written = sorted(w.path for w in trace.writes)
    assert written == sorted([
        "/srv/work/data/darkroom.sqlite3", "/srv/work/data/secret.key", "/dev/null",
        "/home/u/.cache/x/dbé", "/tmp/photo.jpg", "/srv/work/out",
    ])
    allowed = {Path("/srv/work/data/darkroom.sqlite3"), Path("/srv/work/data/secret.key"), Path("/srv/work/out")}
    assert unexpected_writes(trace, allowed) == [
        "openat /home/u/.cache/x/dbé (pid 102)",
        "renameat2 /tmp/photo.jpg (pid 102)",
    ]


def test_every_kind_of_name_lookup_is_found():
    lookups = dns_lookups(parse_strace(SAMPLE, cwd=Path("/srv/work")))
    assert lookups == [
        "connect to AF_UNIX /var/run/nscd/socket (pid 103)",
        "connect to 10.255.255.53:53 (pid 103)",
        "sendmmsg to 127.0.0.53:53 (pid 105)",
        "read /etc/resolv.conf (pid 103)",
    ]


def test_only_the_allowed_endpoint_passes():
    trace = parse_strace(SAMPLE, cwd=Path("/srv/work"))
    assert unexpected_contacts(trace, {("127.0.0.1", 8081)}) == [
        "connect to AF_UNIX /var/run/nscd/socket (pid 103)",
        "connect to 10.255.255.53:53 (pid 103)",
        "sendto to 2001:db8::1:443 (pid 104)",
        "sendmmsg to 127.0.0.53:53 (pid 105)",
    ]
    assert "connect to 127.0.0.1:8081 (pid 104)" in unexpected_contacts(trace, {("127.0.0.1", 8082)})


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_a_real_trace_of_a_write_and_a_connection(tmp_path):
    """The parser on strace's real output, not only on the sample above (ptrace of one's own
    child needs no root)."""
    trace_file = tmp_path / "trace.txt"
    code = (
        "import os, socket\n"
        "open('written.txt', 'w').write('x')\n"
        "os.makedirs('d/e')\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.sendto(b'x', ('127.0.0.1', 9))\n"
    )
    done = subprocess.run([*strace_command(trace_file), sys.executable, "-c", code], cwd=tmp_path, capture_output=True)
    if done.returncode != 0 and b"ptrace" in done.stderr:
        pytest.skip("ptrace is not permitted here")
    assert done.returncode == 0, done.stderr
    trace = parse_strace(trace_file.read_text(), cwd=tmp_path)
    assert {w.path for w in trace.writes} == {str(tmp_path / "written.txt"), str(tmp_path / "d"), str(tmp_path / "d/e")}
    [made] = [w for w in trace.writes if w.path == str(tmp_path / "d/e")]
    assert made.call in ("mkdir", "mkdirat")
    assert unexpected_writes(trace, {tmp_path / "written.txt", tmp_path / "d"}) == [f"{made.call} {made.path} (pid {made.pid})"]
    assert unexpected_contacts(trace, set()) == [f"sendto to 127.0.0.1:9 (pid {trace.contacts[0].pid})"]
    assert unexpected_contacts(trace, {("127.0.0.1", 9)}) == []
