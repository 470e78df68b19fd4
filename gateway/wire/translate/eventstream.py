"""The AWS event stream framing (``application/vnd.amazon.eventstream``), decoded incrementally.

Amazon Bedrock's ConverseStream answers with binary messages, each::

    prelude:  total length (u32 BE) | headers length (u32 BE) | prelude CRC32 (u32 BE)
    headers:  repeated  name length (u8) | name | value type (u8) | value
    payload:  total - headers - 16 bytes
    trailer:  message CRC32 (u32 BE) over everything before it

(CRC-32 as in zlib.) Header value types: 0 true, 1 false, 2 byte, 3 short, 4 int,
5 long, 6 bytes (u16 length), 7 string (u16 length, UTF-8), 8 timestamp (ms, i64),
9 UUID (16 bytes). :class:`EventStreamDecoder` takes the body as it arrives, in chunks
of any size, and hands out each complete message as soon as its last byte is in; a bad
CRC, an impossible length or a truncated header raises :class:`EventStreamError` (the
stream is then unusable: framing is lost).
"""

from __future__ import annotations

import struct
import uuid
import zlib

#: A message larger than this is refused (AWS documents 16 MiB as the maximum).
MAX_MESSAGE = 16 * 1024 * 1024
_MIN_MESSAGE = 16  # prelude (12) + message CRC (4)

_U32x3 = struct.Struct(">III")
_U32 = struct.Struct(">I")


class EventStreamError(ValueError):
    """The bytes are not a valid event stream."""


class Message:
    """One decoded message: ``headers`` (name → value) and ``payload`` bytes."""

    __slots__ = ("headers", "payload")

    def __init__(self, headers: dict, payload: bytes) -> None:
        self.headers = headers
        self.payload = payload

    @property
    def message_type(self) -> str:
        return self.headers.get(":message-type") or "event"

    @property
    def event_type(self) -> str | None:
        return self.headers.get(":event-type")

    def __repr__(self) -> str:
        return f"Message({self.headers!r}, {len(self.payload)} bytes)"


def decode_headers(data: bytes) -> dict:
    headers: dict = {}
    i, end = 0, len(data)
    try:
        while i < end:
            n = data[i]
            i += 1
            name = data[i:i + n].decode("utf-8")
            i += n
            kind = data[i]
            i += 1
            if kind == 0:
                value: object = True
            elif kind == 1:
                value = False
            elif kind == 2:
                value = struct.unpack_from(">b", data, i)[0]
                i += 1
            elif kind == 3:
                value = struct.unpack_from(">h", data, i)[0]
                i += 2
            elif kind == 4:
                value = struct.unpack_from(">i", data, i)[0]
                i += 4
            elif kind in (5, 8):
                value = struct.unpack_from(">q", data, i)[0]
                i += 8
            elif kind in (6, 7):
                size = struct.unpack_from(">H", data, i)[0]
                i += 2
                raw = data[i:i + size]
                if len(raw) != size:
                    raise EventStreamError("event stream header value is truncated")
                value = raw.decode("utf-8") if kind == 7 else bytes(raw)
                i += size
            elif kind == 9:
                raw = data[i:i + 16]
                if len(raw) != 16:
                    raise EventStreamError("event stream header value is truncated")
                value = str(uuid.UUID(bytes=bytes(raw)))
                i += 16
            else:
                raise EventStreamError(f"unknown event stream header type {kind}")
            if i > end:
                raise EventStreamError("event stream header is truncated")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed event stream headers: {exc}") from None
    return headers


class EventStreamDecoder:
    """Feed body chunks, get complete :class:`Message` s back (no copying beyond the one buffer)."""

    __slots__ = ("_buf", "max_message")

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self.max_message = max_message

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message still held (non-zero at the end: the stream was cut)."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[Message]:
        buf = self._buf
        buf += chunk
        out: list[Message] = []
        start = 0
        size = len(buf)
        while size - start >= 12:
            total, hlen, prelude_crc = _U32x3.unpack_from(buf, start)
            if zlib.crc32(memoryview(buf)[start:start + 8]) != prelude_crc:
                raise EventStreamError("event stream prelude CRC mismatch")
            if total < _MIN_MESSAGE or total > self.max_message or hlen > total - _MIN_MESSAGE:
                raise EventStreamError(f"event stream message length {total} (headers {hlen}) is invalid")
            if size - start < total:
                break
            view = memoryview(buf)[start:start + total]
            (message_crc,) = _U32.unpack_from(view, total - 4)
            if zlib.crc32(view[:total - 4]) != message_crc:
                view.release()
                raise EventStreamError("event stream message CRC mismatch")
            headers = decode_headers(bytes(view[12:12 + hlen]))
            payload = bytes(view[12 + hlen:total - 4])
            view.release()
            out.append(Message(headers, payload))
            start += total
        if start:
            del buf[:start]
        return out


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One message with string headers (for tests and tools; the gateway only decodes)."""
    raw = bytearray()
    for name, value in headers.items():
        n = name.encode("utf-8")
        v = value.encode("utf-8")
        raw += bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(raw) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + bytes(raw) + payload
    return body + struct.pack(">I", zlib.crc32(body))
