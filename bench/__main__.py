"""`python -m bench` runs every benchmark; `python -m bench NAME...` runs some. Each prints its
figures and appends a row to docs/benchmarks.md. Not part of `make test`."""

from __future__ import annotations

import importlib
import sys
import time

BENCHMARKS = {
    "saturation": "bench.saturation",
    "free_plan": "bench.free_plan",
    "ingest": "bench.ingest",
    "scale": "bench.scale",
    "overhead": "bench.overhead",
    "drop": "bench.drop",
    "manifest": "bench.manifest",
    "accounts": "bench.accounts",
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in names:
        started = time.monotonic()
        importlib.import_module(BENCHMARKS[name]).main()
        print(f"  ({name} took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
