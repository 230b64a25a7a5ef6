"""One prompt file, whole: its format from its name, its bytes decoded, its entries collected."""

from __future__ import annotations

from pathlib import Path, PurePath

from wfbatch.core.bulk_gc import collector_paused
from wfbatch.core.models import ParsedBatch
from wfbatch.core.parsing.csv_rows import parse_csv
from wfbatch.core.parsing.decode import decode_text
from wfbatch.core.parsing.entries import MAX_ENTRIES, EntryCollector
from wfbatch.core.parsing.errors import MAX_ERRORS, ErrorSink, LineError, PromptFileError
from wfbatch.core.parsing.lines import parse_jsonl, parse_txt
from wfbatch.core.parsing.spec import SpecSettings, parse_json_spec
from wfbatch.core.targets import TargetPolicy

SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".csv", ".json")
MAX_FILE_BYTES = 200 * 1024 * 1024
_FORMATS = tuple(suffix.lstrip(".") for suffix in SUPPORTED_SUFFIXES)


def parse_prompt_file(
    path: Path, targets: TargetPolicy | None = None, extra_columns: frozenset[str] = frozenset()
) -> ParsedBatch:
    """Read and parse one prompt file; the format comes from its suffix.

    Raises PromptFileError for anything wrong with the file's content, OSError if it cannot be read.
    """
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)  # one byte over the cap is enough to refuse it
    return parse_prompt_bytes(data, path.name, targets=targets, extra_columns=extra_columns)


def parse_prompt_bytes(
    data: bytes,
    source_name: str,
    fmt: str | None = None,
    *,
    targets: TargetPolicy | None = None,
    extra_columns: frozenset[str] = frozenset(),
) -> ParsedBatch:
    """Parse a prompt file's content. `fmt` is one of "txt", "jsonl", "csv", "json"; None = from the
    suffix of `source_name` (the name errors are reported under). `targets`: the webhook and bucket
    endpoints the HOME lets a batch spec name (None: none at all). `extra_columns`: CSV columns that
    are no entry field but become the entry's `fields` (those the HOME's name template names)."""
    errors = ErrorSink(MAX_ERRORS)
    with collector_paused():
        batch = _parse(data, source_name, fmt, errors, targets, extra_columns)
    errors.raise_if_any(source_name)
    if batch is None:  # pragma: no cover - every path that yields no batch reports an error
        raise PromptFileError(source_name, [LineError(0, None, "could not be parsed")])
    return batch


def _parse(
    data: bytes,
    source_name: str,
    fmt: str | None,
    errors: ErrorSink,
    targets: TargetPolicy | None,
    extra_columns: frozenset[str],
) -> ParsedBatch | None:
    file_format = _format_of(source_name, fmt, errors)
    if file_format is None:
        return None
    if len(data) > MAX_FILE_BYTES:
        errors.add(0, None, f"file is too large: over {MAX_FILE_BYTES // (1024 * 1024)} MB (the limit)")
        return None
    text = decode_text(data, errors)
    if text is None:
        return None
    if not text.strip():
        errors.add(0, None, "empty file: no prompts")
        return None
    entries = EntryCollector(errors, MAX_ENTRIES)
    settings = SpecSettings()
    if file_format == "txt":
        parse_txt(text, errors, entries)
    elif file_format == "jsonl":
        parse_jsonl(text, errors, entries)
    elif file_format == "csv":
        parse_csv(text, errors, entries, extra_columns)
    else:
        settings = parse_json_spec(text, errors, entries, targets)
    if entries.attempted == 0 and not errors:
        errors.add(0, None, "empty file: no prompts")
    if errors:
        return None
    return ParsedBatch(
        name=settings.name or _stem(source_name),
        source_name=source_name,
        provider=settings.provider,
        cache=settings.cache,
        budget=settings.budget,
        delivery=settings.delivery,
        notify=settings.notify,
        entries=entries.entries,
        file_format=file_format,
        stages=settings.stages,
        name_template=settings.name_template,
        priority=settings.priority,
        weight=settings.weight,
        not_before=settings.not_before,
    )


def _format_of(source_name: str, fmt: str | None, errors: ErrorSink) -> str | None:
    if fmt is not None:
        if fmt.lower().lstrip(".") in _FORMATS:
            return fmt.lower().lstrip(".")
        errors.add(0, None, f"unknown prompt file format {fmt!r} (expected one of {', '.join(_FORMATS)})")
        return None
    suffix = PurePath(source_name).suffix.lower()
    if suffix in SUPPORTED_SUFFIXES:
        return format_of_name(source_name)
    shown = repr(suffix) if suffix else "no suffix"
    errors.add(0, None, f"unsupported file type ({shown}): use one of {', '.join(SUPPORTED_SUFFIXES)}")
    return None


def format_of_name(source_name: str) -> str:
    """The format a file of this name is read as (its suffix, lower case, without the dot)."""
    return PurePath(source_name).suffix.lower().lstrip(".")


def _stem(source_name: str) -> str:
    return PurePath(source_name).stem or "batch"
