"""Rewrite each stage's code deps in dvc.yaml as the stage script's import closure (``metahpo.sources``).

Usage: ``python scripts/update_dvc_deps.py``. Other deps (data, models, reports) and comments stay as they
are; ``tests/test_dvc_yaml.py`` checks that the two agree.
"""

from __future__ import annotations

import re
from pathlib import Path

from metahpo.sources import source_closure

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    lines = (ROOT / "dvc.yaml").read_text().split("\n")
    out, stage, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        if match := re.match(r"^  (\w+):$", line):
            stage = match.group(1)
        out.append(line)
        i += 1
        if line.strip() != "deps:" or stage is None:
            continue
        other = []
        while i < len(lines) and lines[i].startswith("      - "):
            if not lines[i].strip().startswith(("- src/", "- stages/")):
                other.append(lines[i])
            i += 1
        files = [str(p.relative_to(ROOT)) for p in source_closure(ROOT / f"stages/{stage}.py")]
        code = sorted(files, key=lambda f: (not f.startswith("stages/"), f))
        out += [f"      - {f}" for f in code] + other
    (ROOT / "dvc.yaml").write_text("\n".join(out))


if __name__ == "__main__":
    main()
