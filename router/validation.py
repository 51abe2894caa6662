"""Decode and validate ingest frames: every record is either accepted or rejected with a reason."""

from __future__ import annotations

import re

import msgspec

from tickmesh.boundary import reason_of
from tickmesh.schema import Bar, FairMarketValue, IngestItem, Mark, Trade, ingest_decoder, item_decoder

TAG_CHANNEL = {"T": "tick", "B": "ohlcv", "F": "fmv"}
_TAG_TYPE: dict[str, type[msgspec.Struct]] = {"T": Trade, "B": Bar, "F": FairMarketValue, "M": Mark}
_raw_list = msgspec.msgpack.Decoder(list[msgspec.Raw])
_str = msgspec.msgpack.Decoder(str)
_INDEX = re.compile(r"at `\$\[(\d+)\]")


class Rejection(msgspec.Struct, frozen=True):
    """One rejected record (or whole frame): why, in which channel if known, and the detail."""

    reason: str  # short, counted: malformed, truncated, oversize, unknown_type, bad_price, ...
    channel: str | None
    detail: str
    payload: bytes = b""  # the rejected bytes (the whole frame or the one record)


def decode_frame(frame: bytes, max_bytes: int) -> tuple[list[IngestItem], list[Rejection]]:
    """All valid items of an ingest frame, and a Rejection for each invalid one.

    A frame is a msgpack array of records (a single record is accepted too).
    The fast path decodes the whole frame at once; only a frame with a bad
    record is taken apart, so the valid records around it still flow.
    """
    if len(frame) > max_bytes:
        return [], [Rejection("oversize", None, f"{len(frame)} bytes > max_message_bytes {max_bytes}", frame[:64])]
    try:
        return ingest_decoder.decode(frame), []
    except Exception:  # the decode boundary: take the frame apart below
        pass
    try:
        raws = _raw_list.decode(frame)
    except Exception as exc:  # the boundary (tickmesh/boundary.py): bytes never raise past here
        if isinstance(exc, msgspec.ValidationError):  # not an array: maybe nothing we know
            return [], [Rejection("not_a_record", None, str(exc), frame)]
        return [], [_frame_rejection(exc, frame)]
    if raws and _tag_of(raws[0]) is None and _tag_of(frame) is not None:
        raws = [msgspec.Raw(frame)]  # a single record, not wrapped in a list
    items: list[IngestItem] = []
    rejections: list[Rejection] = []
    for raw in raws:
        try:
            items.append(item_decoder.decode(raw))
        except Exception as exc:  # invalid UTF-8, nesting, post-init checks: all the record's fault
            rejections.append(classify(exc, raw))
    return items, rejections


def _frame_rejection(exc: BaseException, payload: bytes | msgspec.Raw) -> Rejection:
    reason = reason_of(exc)
    return Rejection("malformed" if reason == "invalid" else reason, None, str(exc), bytes(payload))


def _tag_of(raw: bytes | msgspec.Raw) -> str | None:
    """The record's tag (its first array element), if it has one."""
    try:
        first = _raw_list.decode(raw)[0]
        return _str.decode(first)
    except Exception:  # not a record with a readable tag
        return None


def classify(exc: BaseException, raw: bytes | msgspec.Raw) -> Rejection:
    """A short, countable reason for why one record failed to decode."""
    if not isinstance(exc, msgspec.ValidationError):  # invalid UTF-8, nesting, a bad frame
        return _frame_rejection(exc, raw)
    tag = _tag_of(raw)
    message = str(exc)
    payload = bytes(raw)
    if tag not in _TAG_TYPE:
        return Rejection("unknown_type" if tag is not None else "not_a_record", None, message, payload)
    channel = TAG_CHANNEL.get(tag)
    match = _INDEX.search(message)
    if match:
        fields = _TAG_TYPE[tag].__struct_fields__
        index = int(match.group(1)) - 1  # element 0 is the tag
        if 0 <= index < len(fields):
            return Rejection(f"bad_{fields[index]}", channel, message, payload)
    if "length" in message:
        return Rejection("wrong_field_count", channel, message, payload)
    return Rejection(f"invalid_{_TAG_TYPE[tag].__name__.lower()}", channel, message, payload)
