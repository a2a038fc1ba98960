"""Process helpers of the server: free ports, a child that dies with its parent, and the members and signalling of
a process group (the server and its python-backend stubs)."""
from __future__ import annotations

import ctypes
import os
import signal
import socket


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


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int):
    """A ``preexec_fn``: the child gets SIGKILL when the thread that started it ends (the whole process, for the
    main thread), so a ``sae serve`` killed with SIGKILL leaves no tritonserver behind (Linux ``prctl``)."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(126)

    return preexec


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


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
