"""The kinds of meta-learner side by side: each at its best search setting, on the same held-out tasks.

The train stage trains the best search trial of every kind of ``search.space.algorithm`` other than the
tuned learner's (``train.compare_kinds``), with the tuned learner's budget; the evaluate stage scores them
with the same protocol and writes ``kinds`` into ``reports/evaluation.json``. This section puts them in one
table with the metric-based kind (the prototypical network, classification only), and quotes published
numbers only where the task and protocol make them comparable.
"""

from __future__ import annotations

from metahpo.learners import KINDS
from metahpo.learners.algorithms.registry import algorithm
from metahpo.learners.cost import setting_macs
from metahpo.params import Params
from metahpo.reporting import published
from metahpo.reporting.tables import rule_note, table, trained_settings

TITLES = {
    "maml_family": "parameter-based: MAML family (MAML, first-order MAML, Meta-SGD, ANIL, ANIL with a proximal head)",
    "learned_optimizer": "optimization-based: learned optimizer (Andrychowicz et al. 2016)",
    "cnp": "model-based: conditional neural process (Garnelo et al. 2018)",
    "protonet": "metric-based: prototypical network (Snell et al. 2017)",
}
SHORT = {"maml_family": "MAML family", "learned_optimizer": "learned optimizer", "cnp": "CNP",
         "protonet": "prototypical network"}  # fmt: skip


def _published(kind: str, task_family: str, shots: int) -> str:
    """Published numbers of ``kind`` that this run can be compared with, or why there are none."""
    if task_family != "sinusoid":
        return "none: no published results on these images" + (
            " (Omniglot numbers are another dataset)" if task_family == "digits" else ""
        )
    if kind == "maml_family" and shots in published.ONE_STEP["MAML"]:
        quotes = [f"{m} {published.format_quote(*by_k[shots])}" for m, by_k in published.ONE_STEP.items()]
        return (
            f"**published** at K = {shots}, one step: {', '.join(quotes)} ({published.SOURCE}, its own test protocol)"
        )
    return {
        "cnp": "none comparable: Garnelo et al. regress curves drawn from a Gaussian process, not this sinusoid family",
        "learned_optimizer": "none: the learned-optimizer papers report no sinusoid regression",
    }.get(kind, f"none at K = {shots}")


def _stand_ins(record: dict, task_family: str) -> list[tuple[str, str | None, str]]:
    """``(kind, learner or None, where it came from)`` for every row of the table."""
    rows = []
    for kind in KINDS:
        entry = record.get(kind)
        if entry is None:
            rows.append((kind, None, "not in search.space.algorithm"))
        elif entry["learner"] is None:
            tried = entry["trials_of_kind"]
            why = f"its {tried} trial(s) failed or were too costly" if tried else "no trial drew it"
            rows.append((kind, None, f"searched, but {why}"))
        else:
            trial = f"search trial {entry['trial']}"
            if entry["status"] != "ok":
                trial += f" (stopped at {entry['iterations']:,} iterations: none of its kind finished)"
            role = "the tuned learner" if entry["learner"] == "tuned" else "trained like the tuned learner"
            rows.append((kind, entry["learner"], f"{trial}, {role}"))
    if task_family == "sinusoid":
        rows.append(("protonet", None, "does not apply: it classifies by distance to class means"))
    else:
        rows.append(("protonet", "protonet", "baseline, not searched: the tuned architecture and optimiser"))
    return rows


def _steps(metrics: dict, name: str, k: str, kind: str) -> list[str]:
    return sorted(metrics[name]["test"][kind][k], key=lambda s: int(s.removeprefix("step")))


def kinds_section(params: Params, metrics: dict, cell, metric: str, kind: str, higher_is_better: bool) -> str:
    """The side-by-side section: ``cell`` formats one statistic, ``metric`` names the number in the cells,
    ``kind`` is the query kind scored (``grid`` or ``query``)."""
    record, tasks = metrics["kinds"], params.tasks
    heading = "### Kinds of meta-learner side by side\n"
    if record is None:
        return heading + "`train.compare_kinds` is false: only the tuned learner's kind was trained.\n"
    rows_in = _stand_ins(record, tasks.family)
    present = [(kind_name, name, where) for kind_name, name, where in rows_in if name is not None]
    k = f"k{tasks.shots}"
    steps = _steps(metrics, "tuned", k, kind)
    settings = trained_settings(tuple(name for _, name, _ in present))
    header = ["kind", "learner: algorithm", "chosen from", "multiply-adds per iteration"]
    header += [f"{s.removeprefix('step')} steps" for s in steps] + ["published, comparable"]
    rows = []
    for kind_name, name, where in rows_in:
        if name is None:
            rows.append([TITLES[kind_name], "–", where, "–", *["–"] * len(steps), "–"])
            continue
        setting = settings[name]
        entry = algorithm(setting["algorithm"])
        learner = entry.name + ("" if entry.takes_steps else ", no inner steps")
        stats, macs = metrics[name]["test"][kind][k], setting_macs(setting, params)
        rows.append([TITLES[kind_name], f"`{name}`: {learner}", where, f"{macs / 1e6:,.2f} M",
                     *(cell(stats[s]) for s in steps), _published(kind_name, tasks.family, tasks.shots)])  # fmt: skip
    past = "".join(
        f" {rule_note(f'`{name}`', settings[name])}"
        for _, name, _ in present
        if algorithm(settings[name]["algorithm"]).learned_rule
    )
    verdict = "Only one kind was trained: add kinds to search.space.algorithm to compare them."
    if len(present) > 1:
        verdict = " ".join(
            _verdict(metrics, present, k, kind, f"step{s}", higher_is_better)
            for s in dict.fromkeys((params.search.objective_steps, params.evaluate.max_steps))
            if f"step{s}" in steps
        )
    return f"""{heading}
Each kind the search tried stands here at its best search trial (chosen on meta_val, as the tuned learner was),
trained with the same budget and scored on the same meta_test {"tasks" if tasks.family == "sinusoid" else "episodes"}:
{metric} at K = {tasks.shots}, ± 95% CI. A learner without inner steps repeats its one score in every step column.{past}

{table(header, rows)}

{verdict}
"""


def _verdict(metrics: dict, present: list, k: str, kind: str, step: str, higher_is_better: bool) -> str:
    """Which kind leads after ``step`` steps, and whether the 95% CIs separate it from the next."""
    value = "mse" if kind == "grid" else "accuracy"
    scored, diverged = [], []
    for kind_name, name, _ in present:
        stat = metrics[name]["test"][kind][k][step]
        if stat[value] is None:
            diverged.append(SHORT[kind_name])
        else:
            scored.append((stat[value], stat["ci95"], kind_name))
    steps = step.removeprefix("step")
    after = f"After {steps} step{'' if steps == '1' else 's'}"
    if len(scored) < 2:
        only = f" only the {SHORT[scored[0][2]]} has a score:" if scored else ""
        return f"{after}{only} the {' and the '.join(diverged)} diverged."
    scored.sort(reverse=higher_is_better)
    (first, first_ci, lead), (second, second_ci, runner_up) = scored[:2]
    how = "their 95% CIs do not overlap" if abs(first - second) > first_ci + second_ci else "their 95% CIs overlap"
    return f"{after} the {SHORT[lead]} leads the {SHORT[runner_up]}: {how}."
