"""The headline metrics: a few numbers per learner that `dvc metrics show` and `dvc exp show` can display.

``reports/metrics.json`` holds the means and ``reports/metrics_ci95.json`` their 95% CI half-widths
(the same keys with ``_ci95`` appended: names unique across the two files keep `dvc exp show`'s
columns short). Learners come in the order tuned, untuned, baselines, reference (the files keep it).
Per learner (and the family's reference row):

* sinusoid: grid MSE after one step at every K of ``tasks.eval_shots`` (``k5``, ``k10``, ``k20``), at
  K = ``tasks.shots`` after the learner's trained steps (``trained_steps``) and after
  ``evaluate.max_steps`` (``steps10``), and on meta_ood after the trained steps (``ood``); the task's
  limit has the K values and ``ood`` (it takes no steps);
* classification: query accuracy after one step at every K, after the trained steps and after
  ``evaluate.max_steps``; the floor has the K values.

The keys do not depend on the tuned setting. A diverged step is the text ``"diverged"``, never a
silent null. Every per-step number stays in ``reports/evaluation.json`` (read by the report).
"""

from __future__ import annotations

DIVERGED = "diverged"
NOT_MEASURED = "not measured"


def _split(stat: dict | None, value: str) -> tuple:
    """``(mean, ci95)`` of one statistic, with divergence (or absence) written out."""
    if stat is None:
        return NOT_MEASURED, NOT_MEASURED
    if stat[value] is None:
        return DIVERGED, DIVERGED
    return stat[value], stat["ci95"]


def trained_cell(entry: dict, kind: str, shots: int, split: str = "test") -> dict | None:
    """A row's statistics at K = ``shots`` after its trained steps; a reference row, which takes none, as it is."""
    by_k = entry[split][kind][f"k{shots}"]
    return by_k.get(f"step{entry['inner_steps']}") if "inner_steps" in entry else by_k


def headline(
    metrics: dict, learners: tuple[str, ...], shots: int, eval_shots: list[int], max_steps: int
) -> tuple[dict, dict]:
    """``(means, ci95s)`` of the headline, from the full evaluation ``metrics`` of one family."""
    means: dict[str, dict] = {}
    cis: dict[str, dict] = {}
    regression = "limit" in metrics
    value, kind = ("mse", "grid") if regression else ("accuracy", "query")
    for name in (*learners, "limit" if regression else "floor"):
        entry, row = metrics[name], {}
        by_k = entry["test"][kind]
        if "inner_steps" not in entry:  # the reference row takes no steps
            row |= {f"k{k}": by_k.get(f"k{k}") for k in sorted(eval_shots)}
            if regression:
                row["ood"] = entry["ood"][kind].get(f"k{shots}")
        else:
            row |= {f"k{k}": by_k.get(f"k{k}", {}).get("step1") for k in sorted(eval_shots)}
            row["trained_steps"] = trained_cell(entry, kind, shots)
            row[f"steps{max_steps}"] = by_k[f"k{shots}"].get(f"step{max_steps}")
            if regression:
                row["ood"] = trained_cell(entry, kind, shots, "ood")
        pairs = {key: _split(stat, value) for key, stat in row.items()}
        means[name] = {key: pair[0] for key, pair in pairs.items()}
        cis[name] = {f"{key}_ci95": pair[1] for key, pair in pairs.items()}
    return means, cis
