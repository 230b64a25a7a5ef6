"""Prompt files → a validated `ParsedBatch`, or a `PromptFileError` naming every bad line.

A file is taken whole or not at all: every problem is collected (up to MAX_ERRORS, then counted) before
anything is raised, and nothing partial is ever returned. `files` takes a file whole; the formats live
in `lines` (.txt, .jsonl), `csv_rows` and `spec` (.json, with `json_text` for positions and
`overrides` for its delivery/notify); bytes → text checks in `decode`; what every
format shares in `entries` (an entry's fields) and `errors` (the lines reported).
"""

from wfbatch.core.parsing.entries import MAX_ENTRIES
from wfbatch.core.parsing.errors import MAX_ERRORS, LineError, PromptFileError
from wfbatch.core.parsing.files import (
    MAX_FILE_BYTES,
    SUPPORTED_SUFFIXES,
    format_of_name,
    parse_prompt_bytes,
    parse_prompt_file,
)

__all__ = [
    "MAX_ENTRIES",
    "MAX_ERRORS",
    "MAX_FILE_BYTES",
    "SUPPORTED_SUFFIXES",
    "LineError",
    "PromptFileError",
    "format_of_name",
    "parse_prompt_bytes",
    "parse_prompt_file",
]
