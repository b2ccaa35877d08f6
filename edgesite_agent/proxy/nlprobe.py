"""Asks the kernel whether an nftables table exists, over netlink, without running `nft`.

A full sync into a namespace where our table does not exist yet (a boot, a fresh node) need
not reset anything; knowing that costs one netlink request here instead of an nft process.
"""

from __future__ import annotations

import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWTABLE = 0
NFT_MSG_GETTABLE = 1
NFTA_TABLE_NAME = 1
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
ENOENT = 2
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr


def table_exists(family: int, name: str, timeout: float = 1.0) -> bool | None:
    """True or False as the kernel says for the calling thread's network namespace; None
    when it cannot tell (no netlink, unexpected answer): then assume it may exist."""
    value = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(value), NFTA_TABLE_NAME) + value
    attr += b"\0" * (-len(attr) % 4)
    payload = struct.pack("=BBH", family, 0, 0) + attr  # struct nfgenmsg, then the name
    kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE
    request = _HEADER.pack(_HEADER.size + len(payload), kind, NLM_F_REQUEST | NLM_F_ACK, 1, 0)
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
            sock.settimeout(timeout)
            sock.send(request + payload)
            answer = sock.recv(65536)
    except OSError:
        return None
    if len(answer) < _HEADER.size:
        return None
    _, msg_type, _, seq, _ = _HEADER.unpack_from(answer)
    if seq != 1:
        return None
    if msg_type == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE:
        return True
    if msg_type == NLMSG_ERROR and len(answer) >= _HEADER.size + 4:
        (error,) = struct.unpack_from("=i", answer, _HEADER.size)
        if error == -ENOENT:
            return False
    return None
