"""SQLite's spelling of the store's SQL, respelled for PostgreSQL.

The aggregates write their SQL once, as SQLite reads it. Where the two databases mean the same thing
with different words, this module rewrites the words; where they mean different things, the
aggregate carries both texts (store/database.py). What is rewritten:

- `?` placeholders → `%s` (psycopg's), and a literal `%` → `%%`;
- `INSERT OR IGNORE INTO ...` → `INSERT INTO ... ON CONFLICT DO NOTHING`;
- `json_extract(x, '$.key')` → `(x::jsonb ->> 'key')` (the store keeps JSON as text);
- `x IS ?` → `x IS NOT DISTINCT FROM %s` (PostgreSQL's IS takes only NULL/TRUE/FALSE);
- `LIKE` → `ILIKE` (SQLite's LIKE ignores ASCII case; people type batch names and prompt words);
- `INDEXED BY name` → nothing (a SQLite planner hint).

Quoted strings are left alone except for `%`. Each distinct statement is translated once (cached).
"""

from __future__ import annotations

import functools
import re

_JSON_EXTRACT = re.compile(r"json_extract\(\s*([\w.]+)\s*,\s*'\$\.(\w+)'\s*\)")
_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_INDEXED_BY = re.compile(r"\s+INDEXED\s+BY\s+\w+", re.IGNORECASE)
_IS_PARAM = re.compile(r"\bIS\s+\?", re.IGNORECASE)
_LIKE = re.compile(r"(?<![\w.])LIKE\b")
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)


CACHED_UP_TO = 4096
"""Longer statements (a new batch's multi-row inserts, store/bulk.py) are translated each time: kept,
a few hundred of them would hold megabytes."""


def to_postgres(sql: str) -> str:
    return _cached(sql) if len(sql) <= CACHED_UP_TO else _translate(sql)


@functools.lru_cache(maxsize=2048)
def _cached(sql: str) -> str:
    return _translate(sql)


def _translate(sql: str) -> str:
    text = _JSON_EXTRACT.sub(r"(\1::jsonb ->> '\2')", sql)
    text = _INDEXED_BY.sub("", text)
    text = _IS_PARAM.sub("IS NOT DISTINCT FROM ?", text)
    text = _LIKE.sub("ILIKE", text)
    if _INSERT_OR_IGNORE.match(text):
        text = _INSERT_OR_IGNORE.sub("INSERT INTO", text, count=1)
        returning = _RETURNING.search(text)
        if returning:
            text = text[: returning.start()] + "ON CONFLICT DO NOTHING " + text[returning.start() :]
        else:
            text = text.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return _placeholders(text)


def _placeholders(sql: str) -> str:
    """`?` → `%s` outside quoted strings; every `%` doubled (psycopg reads `%` everywhere)."""
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if char == "%":
            out.append("%%")
            continue
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        out.append(char)
    return "".join(out)
