"""The durable trial log of a search, and whether an existing one may be reused.

``trials.csv`` holds one row per trial (point, status, objective and its value for each training,
what the optimizer was told, best so far, the iterations it trained, its estimated multiply-adds per
meta-iteration, its value at every rung it reached, where the median rule stopped it, seed, error) and is
rewritten atomically each time a trial (or a trial's rung) finishes, in trial order. Wall-clock seconds go to
``trial_seconds.csv`` so that the log itself is byte-identical across reruns. ``state.json`` records
a fingerprint of everything that determines the trials (params except ``n_calls`` and where trials
run, the task data, and the source of every module the search runs, found by following its imports, except
the params schema, whose wording decides no trial):
a log with another fingerprint is never reused, and a change elsewhere (the report, say) keeps it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from pathlib import Path

from metahpo.atomic import write_json, write_text
from metahpo.errors import ArtifactError, first_line
from metahpo.json_files import INTEGER, NUMBER, OBJECT, load_json_object, parse_json
from metahpo.params import TUNABLE, Params
from metahpo.sources import SRC, import_closure

COLUMNS = (
    "status",
    "objective",
    "objectives",
    "told",
    "best_so_far",
    "iterations",
    "cost_macs",
    "rungs",
    "stopped_at",
    "curve",
    "seed",
    "error",
    "point",
)
# A trial is ok (trained in full), pending (between rungs), stopped (early), failed, or too costly (above
# search.max_cost, never trained). A failed and a too costly trial have no objective: both are told a penalty.
OK, PENDING, STOPPED, FAILED, TOO_COSTLY = "ok", "pending", "stopped", "failed", "too_costly"
UNSCORED = (FAILED, TOO_COSTLY)


# Objectives are told on the log scale; an objective of exactly 0 (perfect accuracy) is told as this.
SMALLEST_TOLD = 1e-12


def told_values(rows: dict[int, dict], penalty_floor: float) -> None:
    """Fill each row's ``told`` (what the proposer learns) and ``best_so_far``, in trial order."""
    finished: list[float] = []
    best = math.nan
    for trial in sorted(rows):
        row = rows[trial]
        if row["status"] in UNSCORED:
            row["told"] = math.log(max([penalty_floor, *finished]))
        else:
            row["told"] = math.log(max(row["objective"], SMALLEST_TOLD))
        if row["status"] == OK:
            finished.append(row["objective"])
            best = row["objective"] if math.isnan(best) else min(best, row["objective"])
        row["best_so_far"] = best


def log_row(result, point: dict, seed: int, iterations: int, cost: int) -> dict:
    """The log row of a trial result that trained ``iterations`` iterations (or stopped earlier by the median rule).

    ``cost`` is the setting's estimated multiply-adds per meta-iteration (:func:`metahpo.learners.cost.setting_macs`).
    """
    return {
        "point": point,
        "status": result.status,
        "objective": result.objective,
        "objectives": result.objectives,
        "iterations": result.stopped_at or iterations,
        "cost_macs": cost,
        "rungs": {str(iterations): result.objectives} if result.status == OK else {},
        "curve": result.curve,
        "stopped_at": result.stopped_at,
        "seed": seed,
        "error": result.error,
        "seconds": result.seconds,
    }


NOT_FINGERPRINTED = ("n_calls", "executor", "address", "tls", "retries")
# The search stage's code: every module the search loop imports, and so every module a trial runs.
SEARCH_CODE = "metahpo.search.driver"
# Modules of that code which decide no trial's result: the params schema only accepts or refuses params (the
# accepted params are hashed themselves), so rewording one of its messages keeps a resumable search's finished
# trials. What it holds that trials do read (the section of each tunable key, the values the task params derive)
# is hashed on its own.
NOT_DECIDING = ("params/__init__.py", "params/model.py", "params/types.py", "search/params_rules.py")


def fingerprint(params: Params, manifest: Path) -> str:
    """Hash of the params, task data and code that determine every trial's result."""
    raw = params.to_dict()
    relevant = {k: v for k, v in raw.items() if k not in ("train", "evaluate")}
    relevant["search"] = {k: v for k, v in raw["search"].items() if k not in NOT_FINGERPRINTED}
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode())
    digest.update(manifest.read_bytes())
    digest.update(json.dumps({key: section for key, (section, _) in TUNABLE.items()}).encode())
    tasks = params.tasks
    digest.update(json.dumps([tasks.classification, tasks.image_side, tasks.support_pool]).encode())
    for source in import_closure(SEARCH_CODE):
        if source.relative_to(SRC / "metahpo").as_posix() not in NOT_DECIDING:
            digest.update(source.read_bytes())
    return digest.hexdigest()


def _cell(key: str, value) -> str:
    if key == "best_so_far" and isinstance(value, float) and math.isnan(value):
        return ""  # no full-length trial yet: an empty cell, which the convergence plot leaves out
    return json.dumps(value) if isinstance(value, list | dict) else value


def render(rows: dict[int, dict], names: list[str]) -> str:
    """CSV text of ``rows`` in trial order: trial, one column per dimension, then :data:`COLUMNS`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["trial", *names, *COLUMNS], lineterminator="\n")
    writer.writeheader()
    for trial in sorted(rows):
        row = rows[trial]
        writer.writerow({"trial": trial, **row["point"], **{k: _cell(k, row[k]) for k in COLUMNS}})
    return buf.getvalue()


def row_digest(cells: dict) -> str:
    """Digest of one log row as read back from the CSV (its cells as text), to catch a row changed by hand."""
    return hashlib.sha256(json.dumps(cells, sort_keys=True).encode()).hexdigest()


def _read_rows(text: str) -> tuple[list[str] | None, list[tuple[int, dict | None, str]]]:
    """The header and ``(line, cells or None, problem)`` of every row of CSV ``text``.

    A row the CSV reader refuses (a NUL byte, a cell over its size limit) is that row only: reading goes
    on at the next line, so the rows after it are still found.
    """
    consumed = 0

    def lines():
        nonlocal consumed
        for line in io.StringIO(text):
            consumed += 1
            yield line

    reader = csv.DictReader(lines())
    found = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            found.append((consumed, None, str(exc)))
            continue
        found.append((consumed, cells, ""))
    return reader.fieldnames, found


# What ``best.json`` holds (written by the search stage, read by train and report).
BEST = {"trial": INTEGER, "objective": NUMBER, "point": OBJECT, "seed": INTEGER, "setting": OBJECT}


def load_best(best: Path, log: Path) -> dict:
    """The search's ``best.json``, refused unless it names a finished (ok) trial of the trial log ``log``."""
    record = load_json_object(best, ArtifactError, "run the search stage first", BEST)
    try:
        text = Path(log).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactError(f"{log}: missing; run the search stage first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{log}: unreadable ({first_line(exc)}); rerun the search stage") from None
    statuses = {}
    for _, cells, _ in _read_rows(text)[1]:
        try:
            statuses[int(cells["trial"])] = cells["status"]
        except (KeyError, TypeError, ValueError):
            continue
    trial = record["trial"]
    if statuses.get(trial) != OK:
        where = f"{statuses[trial]} in {log}, not a finished trial" if trial in statuses else f"not in {log}"
        raise ArtifactError(f"{best}: trial {trial} is {where}; rerun the search stage (dvc repro search)")
    return record


class TrialLog:
    """Reads, reuses and atomically rewrites the files of one search directory.

    A finished trial is never thrown away: trials of an earlier run that this run does not reach (a
    smaller ``n_calls``, say) are kept in ``state.json`` under ``unused`` and come back when a run reaches
    them again. ``state.json`` also holds a digest of every row, so a row changed by hand, or a garbage
    or truncated one, is named and its trial runs again while every other row is reused.
    """

    def __init__(self, directory: Path, names: list[str], print_fn=print):
        self.directory = Path(directory)
        self.names = names
        self.log = self.directory / "trials.csv"
        self.seconds = self.directory / "trial_seconds.csv"
        self.state = self.directory / "state.json"
        self.print = print_fn
        self.fields = ["trial", *names, *COLUMNS]
        # The cells and seconds of every reusable trial found, including those this run does not reach.
        self.kept: dict[int, tuple[dict, float]] = {}
        self.vouched: dict[str, list[str]] = {}  # the row digests the state on disk vouches for, by trial

    def reusable(self, key: str) -> dict[int, dict]:
        """Finished trials of an earlier run with the same fingerprint, keyed by trial (else nothing)."""
        self.kept, self.vouched = {}, {}
        if not (self.log.exists() and self.state.exists()):
            return {}
        try:
            state = parse_json(self.state.read_bytes())
            text = self.log.read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            self.print(f"not reusing {self.log}: unreadable ({exc})")
            return {}
        if not isinstance(state, dict) or state.get("fingerprint") != key:
            self.print(f"not reusing {self.log}: params, task data or code changed since it was written")
            return {}
        header, rows = _read_rows(text)
        if header != self.fields:
            self.print(f"not reusing {self.log}: its columns are not those of this search")
            return {}
        digests = state.get("rows") if isinstance(state.get("rows"), dict) else {}
        self.vouched = {t: d for t, d in digests.items() if isinstance(d, list)}
        seconds = self._read_seconds()
        unused = state.get("unused") if isinstance(state.get("unused"), list) else []
        found: dict[int, dict] = {}
        where = [(f"{self.log} row {line}", cells, problem, None) for line, cells, problem in rows]
        for i, entry in enumerate(unused):
            entry = entry if isinstance(entry, dict) else {}
            where.append((f"{self.state} unused trial {i + 1}", entry.get("row"), "", entry.get("seconds")))
        for place, cells, problem, took in where:
            try:
                if not isinstance(cells, dict):
                    raise ValueError(problem or "not a row")
                trial = int(cells["trial"])
                parsed = self._parse(cells)
            except (KeyError, TypeError, ValueError) as exc:
                self.print(f"{place}: unreadable ({first_line(exc)}); its trial runs again")
                continue
            if row_digest(cells) not in self.vouched.get(str(trial), []):
                self.print(f"{place}: trial {trial} was changed after it was written; it runs again")
                continue
            took = float(took if isinstance(took, int | float) else seconds.get(trial, 0.0))
            found[trial] = {**parsed, "seconds": took}
            self.kept[trial] = (cells, took)
        return found

    def _read_seconds(self) -> dict[int, float]:
        try:
            with open(self.seconds, encoding="utf-8", newline="") as fh:
                return {int(r["trial"]): float(r["seconds"]) for r in csv.DictReader(fh)}
        except (OSError, ValueError, KeyError, TypeError, csv.Error):
            return {}

    @staticmethod
    def _parse(row: dict) -> dict:
        return {
            "point": parse_json(row["point"]),
            "status": row["status"],
            "objective": float(row["objective"]),
            "objectives": parse_json(row["objectives"], finite=False),
            "iterations": int(row["iterations"]),
            "cost_macs": int(row["cost_macs"]),
            "rungs": parse_json(row["rungs"], finite=False),
            "curve": parse_json(row["curve"], finite=False),
            "stopped_at": int(row["stopped_at"]),
            "seed": int(row["seed"]),
            "error": row["error"],
        }

    def write(self, rows: dict[int, dict], key: str, n_calls: int) -> None:
        """Rewrite the log, the timings and the state, each atomically.

        Reusable trials that are not in ``rows`` (not reached yet, or beyond this run) stay in the state.
        """
        text = render(rows, self.names)
        _, cells = _read_rows(text)
        unused = [{"row": kept, "seconds": took} for t, (kept, took) in sorted(self.kept.items()) if t not in rows]
        digests = {c["trial"]: [row_digest(c)] for c in [c for _, c, _ in cells] + [u["row"] for u in unused]}
        state = {"fingerprint": key, "n_calls": n_calls, "rows": digests, "unused": unused}
        # The log and the state are two files: while the log is replaced, the state vouches for its old
        # and its new rows, so a kill between the writes never makes a finished row look hand-edited.
        both = {t: sorted({*self.vouched.get(t, []), *d}) for t, d in digests.items()}
        write_json(self.state, {**state, "rows": both})
        write_text(self.log, text)
        write_text(self.seconds, "trial,seconds\n" + "".join(f"{t},{rows[t]['seconds']}\n" for t in sorted(rows)))
        write_json(self.state, state)
        self.vouched = digests
