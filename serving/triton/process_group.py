"""Process helpers of the server: free ports and the ports a process listens on, a child that dies with its parent,
the members and signalling of a process group (the server and its python-backend stubs) and their resident memory."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path


def _free_ports(host: str, count: int) -> list[int]:
    """Ports that were free a moment ago (all sockets are held open together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


_TCP_LISTEN = "0A"  # the state column of /proc/net/tcp


def _listening_ports(pid: int) -> set[int] | None:
    """The TCP ports that process ``pid`` itself listens on (Linux /proc); None where that cannot be read."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    inodes = set()
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed since the listing
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except OSError:
            continue
        # columns: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
        ports.update(
            int(row[1].rsplit(":", 1)[1], 16)
            for row in rows
            if len(row) > 9 and row[3] == _TCP_LISTEN and row[9] in inodes
        )
    return ports


_PR_SET_PDEATHSIG = 1
# Run before exec in a small Python of its own, not as a preexec_fn: a preexec_fn forces a fork() of this process,
# whose gRPC fork handlers (GRPC_ENABLE_FORK_SUPPORT, on by default) can abort the child while a channel of this
# process is still shutting down, as after a start that failed on a taken port.
_EXEC_DYING_WITH_PARENT = f"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({_PR_SET_PDEATHSIG}, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != int(sys.argv[1]):
    os._exit(126)  # prctl failed, or the parent died before prctl took effect
os.execv(sys.argv[2], sys.argv[2:])
"""


def _dying_with_parent(command: list[str], parent_pid: int) -> list[str]:
    """``command`` run so that it gets SIGKILL when the thread that started it ends (the whole process, for the
    main thread), so a ``sae serve`` killed with SIGKILL leaves no tritonserver behind (Linux ``prctl``)."""
    return [sys.executable, "-I", "-S", "-c", _EXEC_DYING_WITH_PARENT, str(parent_pid), *command]


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(int(entry))
    return members


def resident_bytes(pids: Iterable[int]) -> int:
    """Sum of VmRSS over ``pids`` (from /proc; a process that is gone counts 0)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
