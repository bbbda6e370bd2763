"""The one message format between pool, template, worker and child: length-prefixed JSON frames.

Guarantees:
- a frame is a 4-byte big-endian length followed by that many bytes of UTF-8
  JSON (lone surrogates survive, "surrogatepass"), so a message never depends
  on how the stream happened to be chunked;
- every exchange is request/reply, so at most one frame is in flight on a
  socket or pipe and a reader never consumes part of the next one;
- file descriptors travel with a frame (SCM_RIGHTS) only when asked to.

Sockets (`send_message`, `recv_message`) link pool, template and workers; raw
fds (`write_frame`, `read_frame`, `pop_frame`) are the pipes between a worker
and its child, where the child owns no socket object.
"""

from __future__ import annotations

import json
import os
import socket
import struct

FRAME_HEADER = struct.Struct(">I")
READ_CHUNK = 1 << 16


def encode_message(message: dict) -> bytes:
    """Encode one message as a length-prefixed JSON frame."""
    body = json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return FRAME_HEADER.pack(len(body)) + body


def send_message(sock: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    """Send one frame on a stream socket, passing `fds` along (SCM_RIGHTS) if given."""
    frame = encode_message(message)
    if fds:
        frame = frame[socket.send_fds(sock, [frame], list(fds)) :]
    if frame:  # an empty send would fail once the peer, done reading, has closed
        sock.sendall(frame)


def _recv_exact(sock: socket.socket, size: int, buffer: bytearray) -> bool:
    while len(buffer) < size:
        chunk = sock.recv(size - len(buffer))
        if not chunk:
            return False
        buffer += chunk
    return True


def recv_message(sock: socket.socket, with_fds: bool = False) -> tuple[dict | None, list[int]]:
    """Receive one frame; returns (None, []) at end of stream.

    Only one frame may be in flight on the socket (every exchange here is
    request/reply), so reading past the frame boundary cannot happen.
    """
    buffer = bytearray()
    fds: list[int] = []
    if with_fds:
        data, fds, _flags, _address = socket.recv_fds(sock, READ_CHUNK, 4)
        if not data:
            return None, fds
        buffer += data
    if not _recv_exact(sock, FRAME_HEADER.size, buffer):
        return None, fds
    (size,) = FRAME_HEADER.unpack_from(buffer)
    if not _recv_exact(sock, FRAME_HEADER.size + size, buffer):
        return None, fds
    body = bytes(buffer[FRAME_HEADER.size : FRAME_HEADER.size + size])
    return json.loads(body.decode("utf-8", "surrogatepass")), fds


def write_frame(fd: int, message: dict) -> None:
    """Write one frame to a blocking pipe."""
    view = memoryview(encode_message(message))
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, size: int) -> bytes | None:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = os.read(fd, size - len(buffer))
        if not chunk:
            return None
        buffer += chunk
    return bytes(buffer)


def read_frame(fd: int) -> dict | None:
    """Read one frame from a blocking pipe; None at end of stream."""
    header = _read_exact(fd, FRAME_HEADER.size)
    body = header and _read_exact(fd, FRAME_HEADER.unpack(header)[0])
    return None if body is None else json.loads(body.decode("utf-8", "surrogatepass"))


def pop_frame(buffer: bytearray) -> bytes | None:
    """Remove the first complete frame from `buffer` (bytes read so far) and return its body; None if incomplete."""
    if len(buffer) < FRAME_HEADER.size:
        return None
    size = FRAME_HEADER.size + FRAME_HEADER.unpack_from(buffer)[0]
    if len(buffer) < size:
        return None
    body = bytes(buffer[FRAME_HEADER.size : size])
    del buffer[:size]
    return body
