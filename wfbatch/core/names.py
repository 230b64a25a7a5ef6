"""File names that come from users: fitted under the file system's limit, and quoted for logs.

A name dropped into the inbox may already be 255 bytes (NAME_MAX on Linux); anything wfbatch adds
to it (`<batch-id>-`, `-2`, `.error.txt`, a temporary suffix) would make it unusable, so derived
names are cut — by bytes, at a UTF-8 character boundary, keeping the suffix. A name may also hold
a newline or a terminal escape: logged bare it could forge log lines or drive the terminal.
"""

from __future__ import annotations

import os

NAME_MAX = 255
MAX_KEPT_SUFFIX_BYTES = 32  # a longer "suffix" is just a dot in a long name: cut it like the stem


def quote_name(name: str) -> str:
    """`name` as it is when it prints as itself, else a `repr()` (escapes newlines, ESC, bidi
    controls, undecodable bytes): one log line can never be split or disguised by a file name."""
    plain = name.isprintable() and name == name.strip() and name != ""
    return name if plain else repr(name)


def fit_name(name: str, *, prefix: str = "", number: int = 1, max_bytes: int = NAME_MAX) -> str:
    """`prefix + name` (with `-<number>` before the suffix when `number` > 1), its stem cut by bytes
    so the whole fits in `max_bytes`. The prefix, number and suffix are kept whole."""
    raw = os.fsencode(name)  # the bytes the OS sees (undecodable bytes come back as they were)
    stem, suffix = _split_suffix(raw)
    head = os.fsencode(prefix)
    tail = f"-{number}".encode() if number > 1 else b""
    room = max_bytes - len(head) - len(tail) - len(suffix)
    if room < 1:  # the suffix itself does not fit: cut the whole name instead
        stem, suffix, room = raw, b"", max_bytes - len(head) - len(tail)
    if room < 1:
        raise ValueError(f"no room for a name after {prefix!r} within {max_bytes} bytes")
    return os.fsdecode(head + cut_utf8(stem, room) + tail + suffix)


def _split_suffix(raw: bytes) -> tuple[bytes, bytes]:
    dot = raw.rfind(b".")
    if dot <= 0 or len(raw) - dot > MAX_KEPT_SUFFIX_BYTES:
        return raw, b""
    return raw[:dot], raw[dot:]


def cut_utf8(data: bytes, limit: int) -> bytes:
    """At most `limit` bytes of `data`, never ending inside a UTF-8 character."""
    if len(data) <= limit:
        return data
    end = limit
    while end > 0 and data[end] & 0xC0 == 0x80:  # a continuation byte: the cut is mid-character
        end -= 1
    return data[:end]
