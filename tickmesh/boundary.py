"""The decode boundary: bytes from a socket become a typed message or a counted rejection, never an exception.

Every socket a process reads goes through here. msgspec raises more than
`DecodeError` on hostile bytes (`UnicodeDecodeError` for invalid UTF-8 in a
string, `RecursionError` for deep nesting, `ValueError`/`TypeError`/
`OverflowError` from post-init checks), and a multipart message on a socket
that expects one frame is a protocol error of its own: all of them become a
`Rejection` with a short countable reason, so no input can stop a process.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import msgspec
import zmq

from tickmesh.metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")
DETAIL_MAX = 300  # characters of an error message kept in a rejection


class Rejection(msgspec.Struct, frozen=True):
    """Why some bytes were refused: `reason` is short and counted, `detail` is for the log."""

    reason: str  # malformed | truncated | invalid | bad_utf8 | too_deep | frames
    detail: str


def reason_of(exc: BaseException) -> str:
    """The countable reason for a decoding exception."""
    if isinstance(exc, RecursionError):
        return "too_deep"
    if isinstance(exc, UnicodeDecodeError):
        return "bad_utf8"
    if isinstance(exc, msgspec.ValidationError):
        return "invalid"
    if isinstance(exc, msgspec.DecodeError):
        return "truncated" if "truncated" in str(exc) else "malformed"
    return "invalid"  # a ValueError, TypeError or OverflowError raised while building a Struct


def decode(decoder: msgspec.msgpack.Decoder[T], data: bytes | memoryview) -> T | Rejection:
    """The typed message in `data`, or why it is not one. Never raises."""
    try:
        return decoder.decode(data)
    except Exception as exc:  # the boundary: any failure to decode is the input's fault
        return Rejection(reason_of(exc), f"{type(exc).__name__}: {exc}"[:DETAIL_MAX])


def decode_single(decoder: msgspec.msgpack.Decoder[T], frames: list[bytes]) -> T | Rejection:
    """`decode` for a socket whose messages are one frame: more or fewer is a rejection."""
    if len(frames) != 1:
        return Rejection("frames", f"{len(frames)} frames, expected 1")
    return decode(decoder, frames[0])


def peer_of(frame: zmq.Frame) -> str:
    """The remote address a received frame came from ('' when the transport does not say, as on ipc)."""
    try:
        return str(frame.get("Peer-Address"))
    except (zmq.ZMQError, UnicodeDecodeError):
        return ""


def recv_frames(sock: zmq.Socket[Any]) -> tuple[list[bytes], str]:
    """One whole multipart message without blocking (zmq.Again if none) and the peer it came from."""
    parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
    return [part.bytes for part in parts], peer_of(parts[0])


def reject(metrics: Metrics, socket: str, rejection: Rejection, peer: str = "") -> None:
    """Count a rejection as `<socket>.rejected.<reason>` and log the 1st, 2nd, 4th, 8th … of each."""
    key = f"{socket}.rejected.{rejection.reason}"
    metrics.count(key)
    seen = metrics.counters[key]
    if seen & (seen - 1) == 0:
        log.warning(
            "%s: rejected %s (seen %d times) from %s: %s", socket, rejection.reason, seen, peer or "?", rejection.detail
        )
