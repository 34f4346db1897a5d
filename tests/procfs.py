"""What Linux's /proc says about processes the tests started: children, and which
process holds which TCP connection (to tell `--workers` apart behind one port)."""

from __future__ import annotations

import os
from pathlib import Path


def child_pids(pid: int) -> set[int]:
    """The live children of `pid` (zombies excluded)."""
    children: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == pid and state != "Z":
            children.add(int(entry.name))
    return children


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets `pid` has open."""
    inodes: set[int] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(fd_dir / name)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def accepted_connections(server_port: int) -> dict[int, int]:
    """Established connections accepted on `server_port` (IPv4): the client's port →
    the socket's inode."""
    connections: dict[int, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if state == "01" and int(local.split(":")[1], 16) == server_port and inode:
            connections[int(remote.split(":")[1], 16)] = inode
    return connections


def holders(server_port: int, pids: set[int]) -> dict[int, int]:
    """For each connection accepted on `server_port` by one of `pids`: the client's
    port → the pid holding it."""
    inodes_by_pid = {pid: socket_inodes(pid) for pid in pids}
    held: dict[int, int] = {}
    for client_port, inode in accepted_connections(server_port).items():
        for pid, inodes in inodes_by_pid.items():
            if inode in inodes:
                held[client_port] = pid
    return held
