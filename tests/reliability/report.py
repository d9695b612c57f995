"""Summarise the figures a reliability run recorded, as the Markdown that docs/reliability.md shows.

    RELIABILITY_FIGURES=/tmp/figures.jsonl python -m pytest -n 2 tests/reliability
    python -m tests.reliability.report /tmp/figures.jsonl

Each test appends one JSON object per case (tests/support/pipeline.py ``record``); the last
object of each case wins.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SKIP = {"case", "at"}


def load(path: Path) -> dict[str, dict[str, object]]:
    cases: dict[str, dict[str, object]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            cases[str(item["case"])] = item
    return cases


def markdown(cases: dict[str, dict[str, object]]) -> str:
    rows = ["| case | figures |", "| --- | --- |"]
    produced = published = lost = 0
    peak = 0
    for name in sorted(cases):
        item = cases[name]
        produced += int(item.get("segments_produced", 0) or 0)  # type: ignore[call-overload]
        published += int(item.get("segments_published", 0) or 0)  # type: ignore[call-overload]
        lost += int(item.get("segments_lost", 0) or 0)  # type: ignore[call-overload]
        peak = max(peak, int(item.get("daemon_peak_rss_kb", 0) or 0))  # type: ignore[call-overload]
        figures = ", ".join(f"{key} {value}" for key, value in sorted(item.items()) if key not in SKIP)
        rows.append(f"| {name} | {figures} |")
    first = min(str(item["at"]) for item in cases.values())
    last = max(str(item["at"]) for item in cases.values())
    total = (f"Run of {first} to {last}: {len(cases)} cases; live-pipeline segments produced {produced}, "
             f"published {published}, lost {lost}; highest daemon peak RSS {peak / 1024:.1f} MiB.")
    return total + "\n\n" + "\n".join(rows) + "\n"


def main() -> None:
    print(markdown(load(Path(sys.argv[1]))), end="")


if __name__ == "__main__":
    main()
