"""Tells when a child's nftables transaction is live, before the child has exited.

After a transaction that deleted anything (an element, a rule, a chain), the kernel frees the
old objects after an RCU grace period, and when the committing process closes its netlink
socket the kernel waits for that release (nf_tables flushes its destroy work on the
socket's NETLINK_URELEASE). So `nft` exits 5-30 ms after its change is already in force,
which was most of a one-endpoint change (measured: commit at ~2 ms, exit at 7-21 ms).

The kernel announces every commit to the NFNLGRP_NFTABLES group with a NEWGEN message that
names the committing socket's port id and process id. A CommitWatch listens for it only
while a tool of ours runs, so a change counts as applied when the kernel says it is. The
socket stays open for the agent's life: closing it would itself wait for a grace period.
"""

from __future__ import annotations

import socket

from edgesite_agent.proxy.nlprobe import HEADER_SIZE, NETLINK_NETFILTER, NFNL_SUBSYS_NFTABLES, _int

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_DROP_MEMBERSHIP = 2
NFNLGRP_NFTABLES = 7
NFT_MSG_NEWGEN = 15
NFTA_GEN_PROC_PID = 2
NEWGEN = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN
NFGENMSG_SIZE = 4


def committers(data: bytes) -> list[tuple[int, int | None]]:
    """(port id, process id) of every NEWGEN message in one netlink read."""
    found: list[tuple[int, int | None]] = []
    off = 0
    while off + HEADER_SIZE <= len(data):
        length = _int(data, off, 4)
        if length < HEADER_SIZE or off + length > len(data):
            break  # truncated: nothing after it can be trusted
        if _int(data, off + 4, 2) == NEWGEN:
            pid = None
            attr = off + HEADER_SIZE + NFGENMSG_SIZE
            while attr + 4 <= off + length:
                attr_len = _int(data, attr, 2)
                if attr_len < 4:
                    break
                if _int(data, attr + 2, 2) & 0x3FFF == NFTA_GEN_PROC_PID and attr_len >= 8:
                    # nftables attributes are big-endian, unlike the netlink header.
                    pid = int.from_bytes(data[attr + 4 : attr + 8], "big")
                attr += (attr_len + 3) & ~3
            found.append((_int(data, off + 12, 4), pid))
        off += (length + 3) & ~3
    return found


class CommitWatch:
    """Listens, around one tool run at a time, for that tool's nftables commit."""

    __slots__ = ("_sock",)

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            # Unbound, the socket would join the group but never be delivered to.
            self._sock.bind((0, 0))
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def start(self) -> None:
        """Join the group before the tool starts, so its commit cannot be missed."""
        self._drain()
        self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)

    def stop(self) -> None:
        # Outside our runs the group carries every other program's rule changes too.
        self._sock.setsockopt(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, NFNLGRP_NFTABLES)
        self._drain()

    def committed_by(self, pid: int) -> bool:
        """True once the readable socket carried a commit by process `pid`.

        Matched on either id: the port id is the pid as the tool's own pid namespace sees
        it (the one we spawned it in), the process id is the kernel's global one.
        """
        try:
            data = self._sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            # ENOBUFS (someone else's burst overran us): the tool's exit still tells.
            return False
        return any(pid in ids for ids in committers(data))

    def close(self) -> None:
        self._sock.close()

    def _drain(self) -> None:
        while True:
            try:
                self._sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:  # ENOBUFS, reported once after an overrun: read on
                continue
