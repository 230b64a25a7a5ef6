"""Bytes of a prompt file → text with "\\n" line endings, or errors that say where the bytes go wrong.

Line numbers everywhere in the parser count "\\r\\n", "\\r" and "\\n" as one line break each (and
nothing else: not form feeds, not U+2028), so the numbers match what an editor shows.
"""

from __future__ import annotations

import re

from wfbatch.core.parsing.errors import ErrorSink

UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# C0 controls other than tab and line breaks: never part of a prompt, a sign of binary data. (DEL is
# left alone: JSON writers emit it raw inside strings, so a valid .json/.jsonl file may hold one.)
_CONTROL_CHAR = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def decode_text(data: bytes, errors: ErrorSink) -> str | None:
    """Decode UTF-8 (an optional BOM is dropped) and normalise line endings; None if it cannot be read."""
    if data.startswith(_UTF16_BOMS):
        errors.add(0, None, "the file is UTF-16 encoded; save it as UTF-8")
        return None
    offset = len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
    body = data[offset:]
    nul = body.find(b"\x00")
    if nul >= 0:
        line, column = _position_of_byte(body, nul)
        errors.add(line, column, "NUL byte: this looks like a binary file, not a text prompt file")
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        _report_invalid_utf8(body, offset, errors)
        return None
    text = normalize_newlines(text)
    if _report_control_chars(text, errors):
        return None
    return text


def normalize_newlines(text: str) -> str:
    if "\r" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _position_of_byte(data: bytes, index: int) -> tuple[int, int]:
    """1-based line and character column of data[index]."""
    prefix = data[:index]
    line = prefix.count(b"\n") + prefix.count(b"\r") - prefix.count(b"\r\n") + 1
    line_start = max(prefix.rfind(b"\n"), prefix.rfind(b"\r")) + 1
    column = len(prefix[line_start:].decode("utf-8", errors="replace")) + 1
    return line, column


def _report_invalid_utf8(body: bytes, offset: int, errors: ErrorSink) -> None:
    """One error per line holding invalid UTF-8, at its first bad byte (only runs on the failure path)."""
    line_offset = offset
    for number, raw_line in enumerate(body.splitlines(keepends=True), start=1):
        try:
            raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            column = len(raw_line[: exc.start].decode("utf-8", errors="replace")) + 1
            bad = raw_line[exc.start]
            errors.add(
                number,
                column,
                f"not valid UTF-8: byte 0x{bad:02X} at byte offset {line_offset + exc.start:,} "
                "(save the file as UTF-8)",
            )
        line_offset += len(raw_line)


def _report_control_chars(text: str, errors: ErrorSink) -> bool:
    """One error per line holding a control character; True if there was any."""
    found = False
    line, counted_to, last_line = 1, 0, 0
    for match in _CONTROL_CHAR.finditer(text):
        start = match.start()
        line += text.count("\n", counted_to, start)  # incremental: binary files have many matches
        counted_to = start
        if line == last_line:
            continue
        last_line = line
        found = True
        column = start - (text.rfind("\n", 0, start) + 1) + 1
        errors.add(
            line,
            column,
            f"control character U+{ord(match.group()):04X}: this looks like binary data, not text",
        )
    return found
