"""Is a segment what it claims to be: MPEG-TS? Pure: bytes in, a verdict out.

A segment the daemon publishes is served as ``video/MP2T`` under a name that never changes, so
bytes that are not a transport stream (an HTML page, a truncated copy, garbage) are refused
before they are queued. The rule is the transport layer's own (ISO/IEC 13818-1 2.4.3): the
stream is a whole number of 188-byte packets, each starting with the sync byte 0x47, and a
segment that a player can start at carries a PAT (PID 0, table_id 0x00; RFC 8216 3.2 asks
for the PAT and PMT in each segment).

``TransportStreamCheck`` takes the bytes piece by piece as they arrive (the payload on the wire,
a file read in chunks), so a segment is looked at once and never held whole. Each piece costs
one slice of its sync-byte column; the search for the PAT stops at the first one found, which
a real segment has in its first packet.
"""

from __future__ import annotations

PACKET_SIZE = 188
SYNC_BYTE = 0x47
PAT_TABLE_ID = 0x00


class TransportStreamCheck:
    """Bytes fed in any pieces; ``refusal()`` at the end says what is wrong, or None.

    The offsets in the reasons count from the first byte fed.
    """

    def __init__(self) -> None:
        self._carry = b""  # the start of a packet cut by the end of the last piece
        self._offset = 0  # bytes of whole packets checked so far
        self._bad_sync: int | None = None  # offset of the first packet without its sync byte
        self._has_pat = False

    def feed(self, piece: bytes) -> None:
        """Check the whole packets that ``piece`` completes; nothing more is looked at after the
        first packet without a sync byte."""
        if self._bad_sync is not None or not piece:
            return
        data = self._carry + piece if self._carry else piece
        whole = len(data) - len(data) % PACKET_SIZE
        self._carry = data[whole:]
        count = whole // PACKET_SIZE
        syncs = data[0:whole:PACKET_SIZE]
        if syncs != bytes((SYNC_BYTE,)) * count:
            first = next(i for i, byte in enumerate(syncs) if byte != SYNC_BYTE)
            self._bad_sync = self._offset + first * PACKET_SIZE
            whole = first * PACKET_SIZE  # the packets before it still count for the PAT
        if not self._has_pat:
            self._has_pat = _find_pat(data, whole)
        self._offset += whole

    @property
    def settled(self) -> bool:
        """Whether the verdict is refusal already (a packet without its sync byte): nothing fed
        later can change it, so the rest need not be read."""
        return self._bad_sync is not None

    def refusal(self) -> str | None:
        """None for a transport stream with a PAT; else one line naming what is wrong."""
        if self._bad_sync is not None:
            return f"no sync byte 0x47 at byte {self._bad_sync} (MPEG-TS packets are 188 bytes)"
        size = self._offset + len(self._carry)
        if size == 0:
            return "it is empty"
        if self._carry:
            return f"its {size} bytes are not a whole number of 188-byte packets (truncated?)"
        if not self._has_pat:
            return f"none of its {size // PACKET_SIZE} packets is a PAT (PID 0)"
        return None


def _find_pat(data: bytes, end: int) -> bool:
    """Whether a packet of ``data[:end]`` (whole packets, sync bytes checked) starts a PAT
    section: PID 0 with payload_unit_start_indicator, its pointer_field leading to table_id 0."""
    low_pids = data[2:end:PACKET_SIZE]  # the PID's low 8 bits, packet by packet
    index = low_pids.find(0)
    while index != -1:
        start = index * PACKET_SIZE
        flags = data[start + 1]  # payload_unit_start_indicator 0x40, the PID's high 5 bits 0x1F
        if flags & 0x1F == 0 and flags & 0x40 and _section_start(data, start) == PAT_TABLE_ID:
            return True
        index = low_pids.find(0, index + 1)
    return False


def _section_start(data: bytes, start: int) -> int | None:
    """The first byte of the section that the packet at ``start`` starts (its table_id), or None
    when the packet has no payload or its pointer_field leads past the packet."""
    control = (data[start + 3] >> 4) & 0x3  # adaptation_field_control
    position = start + 4
    if control & 0x2:  # an adaptation field comes first
        position += 1 + data[position]
    if not control & 0x1:
        return None  # no payload
    if position >= start + PACKET_SIZE:
        return None
    position += 1 + data[position]  # pointer_field
    return data[position] if position < start + PACKET_SIZE else None
