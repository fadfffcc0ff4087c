"""No behaviour change: tiny sinusoid and digits pipelines of two revisions give byte-identical outputs.

    python benchmarks/same_outputs.py BEFORE [AFTER]

``BEFORE`` and ``AFTER`` are git revisions of this repository (``AFTER`` defaults to the working tree).
Each is exported to a scratch folder; there, for each family, the tests' tiny params run a real
``dvc repro`` in a fresh git copy of the project, and the sha256 of every file under ``reports/`` and
``models/`` is listed. The lists are compared, leaving out the wall-clock files (``trial_seconds.csv``,
``timing.json``) and the search fingerprint in ``state.json``, which hashes the code and so changes with
any edit of it. Exits 1 and names the files that differ.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("sinusoid", "digits")
WALL_CLOCK = ("reports/search/trial_seconds.csv", "reports/train/timing.json")


def run_tree(tree: Path, out: Path) -> None:
    """In a subprocess whose imports come from ``tree``: run each family's tiny pipeline, write its hashes."""
    sys.path[:0] = [str(tree / "src"), str(tree / "tests")]
    from conftest import IMAGE_TASKS, load_default_params, shrink
    from project import commit_all, copy_project, dvc

    for family in FAMILIES:
        params = shrink(load_default_params())
        if family == "digits":
            params["tasks"].update({k: v for k, v in IMAGE_TASKS.items() if k != "splits"})
            params["tasks"]["splits"].update(IMAGE_TASKS["splits"])
            params["meta"]["query"] = 3
        project = copy_project(out / family, params)
        commit_all(project, "tiny")
        dvc(project, "repro")
        hashes = {}
        for folder in ("reports", "models"):
            for path in sorted((project / folder).rglob("*")):
                rel = str(path.relative_to(project))
                if not path.is_file() or rel in WALL_CLOCK:
                    continue
                data = path.read_bytes()
                if rel == "reports/search/state.json":
                    data = json.dumps({k: v for k, v in json.loads(data).items() if k != "fingerprint"}).encode()
                hashes[rel] = hashlib.sha256(data).hexdigest()
        (out / f"{family}.json").write_text(json.dumps(hashes, indent=1))
        print(f"{tree.name} {family}: {len(hashes)} files", file=sys.stderr)


def export(revision: str | None, scratch: Path) -> Path:
    """The tree of ``revision`` (None: the working tree) as a folder."""
    if revision is None:
        return ROOT
    tree = scratch / f"tree_{revision.replace('/', '_')}"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--run":
        run_tree(Path(argv[1]), Path(argv[2]))
        return 0
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        results = []
        for i, revision in enumerate([argv[0], argv[1] if len(argv) == 2 else None]):
            tree, out = export(revision, Path(scratch)), Path(scratch) / f"out{i}"
            subprocess.run([sys.executable, __file__, "--run", str(tree), str(out)], check=True)
            results.append({f: json.loads((out / f"{f}.json").read_text()) for f in FAMILIES})
        differ = [
            f"{family}: {name}"
            for family in FAMILIES
            for name in sorted(set(results[0][family]) | set(results[1][family]))
            if results[0][family].get(name) != results[1][family].get(name)
        ]
    for line in differ:
        print(f"differs: {line}")
    counts = ", ".join(f"{family} {len(results[1][family])} files" for family in FAMILIES)
    print("byte-identical" if not differ else f"{len(differ)} files differ", f"({counts})")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
