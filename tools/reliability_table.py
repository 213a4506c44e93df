"""Run the hostile-input suite (tests/hostile) and write docs/reliability.md from it.

Each test's ``@pytest.mark.fault(kind=..., fault=..., behaviour=...)`` becomes one row, with the
outcome of this run, so the table says what the code does today, not what it should do.

    .venv/bin/python tools/reliability_table.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
INTRO = """# Reliability: hostile input and faults

What marginface does with malformed input, hostile files and faults mid-write. Every row is a test
in `tests/hostile/` (its `@pytest.mark.fault` marker gives the three first columns), and the
table is generated from a run of that suite by `tools/reliability_table.py`: the last column is
that run's outcome.

The rules the rows follow:

- A user error ends with exit code 2 and one line naming the file, line, key, argument or layer;
  `--debug` shows the traceback.
- Every file marginface writes goes through a temporary file, fsync and rename: a failure leaves
  the old file intact and no partial new one.
- Nothing is dropped silently: skipped images are counted and named, and an image that is not an
  aligned crop is aligned (landmarks or `--detect`), or centre-cropped only on request
  (`--center-crop`), never silently.
"""


def run_suite(out: Path) -> int:
    env = {**os.environ, "MARGINFACE_RELIABILITY_JSON": str(out)}
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(ROOT / "tests" / "hostile")], cwd=ROOT, env=env)


def render(records: list[dict[str, str]], status: int) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    counts = Counter(r["outcome"] for r in records)
    lines = [INTRO, f"{len(records)} cases; " + ", ".join(f"{n} {o}" for o, n in
                                                          sorted(counts.items()))
             + f" (pytest exit code {status}).", "",
             "| Input | Fault | Behaviour | Test | Outcome |", "|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r.get("kind", ""), r.get("fault", ""))):
        test = r["test"].split("::", 1)[-1]
        lines.append("| " + " | ".join(cell(x) for x in (
            r.get("kind", ""), r.get("fault", ""), r.get("behaviour", ""),
            f"`{Path(r['test'].split('::')[0]).name}::{test}`", r["outcome"])) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "records.json"
        status = run_suite(out)
        if not out.is_file():
            print("the suite recorded no cases", file=sys.stderr)
            return 1
        records = json.loads(out.read_text())
    DOC.write_text(render(records, status))
    print(f"wrote {DOC}: {len(records)} cases")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
