"""Asks the kernel whether an nftables table exists, over netlink, without running `nft`.

A full sync into a namespace where our table does not exist yet (a boot, a fresh node) need
not reset anything; knowing that costs one netlink request here instead of an nft process.
"""

from __future__ import annotations

import socket
import sys

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWTABLE = 0
NFT_MSG_GETTABLE = 1
NFTA_TABLE_NAME = 1
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
ENOENT = 2
HEADER_SIZE = 16  # struct nlmsghdr: u32 length, u16 type, u16 flags, u32 seq, u32 pid
_ORDER = sys.byteorder  # netlink speaks the host's byte order


def _u(value: int, size: int) -> bytes:
    # int.to_bytes instead of the struct module: the agent counts every imported module.
    return value.to_bytes(size, _ORDER)


def _int(data: bytes, start: int, size: int, signed: bool = False) -> int:
    return int.from_bytes(data[start : start + size], _ORDER, signed=signed)


def table_exists(family: int, name: str, timeout: float = 1.0) -> bool | None:
    """True or False as the kernel says for the calling thread's network namespace; None
    when it cannot tell (no netlink, unexpected answer): then assume it may exist."""
    value = name.encode() + b"\0"
    attr = _u(4 + len(value), 2) + _u(NFTA_TABLE_NAME, 2) + value
    attr += b"\0" * (-len(attr) % 4)
    payload = bytes([family, 0, 0, 0]) + attr  # struct nfgenmsg (version 0, res_id 0)
    kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE
    request = b"".join(
        (
            _u(HEADER_SIZE + len(payload), 4),
            _u(kind, 2),
            _u(NLM_F_REQUEST | NLM_F_ACK, 2),
            _u(1, 4),  # sequence number
            _u(0, 4),  # port id: the kernel
        )
    )
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
            sock.settimeout(timeout)
            sock.send(request + payload)
            answer = sock.recv(65536)
    except OSError:
        return None
    if len(answer) < HEADER_SIZE or _int(answer, 8, 4) != 1:
        return None
    msg_type = _int(answer, 4, 2)
    if msg_type == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE:
        return True
    # An error message carries the negative errno right after the header.
    error = _int(answer, HEADER_SIZE, 4, signed=True) if len(answer) >= HEADER_SIZE + 4 else 0
    if msg_type == NLMSG_ERROR and error == -ENOENT:
        return False
    return None
