"""The report's prose about the search (its options, the chosen setting's cost) and the environment it ran in."""

from __future__ import annotations

import platform

import numpy as np
import pandas as pd
import skopt
import torch

from metahpo import __version__
from metahpo.learners.cost import setting_macs
from metahpo.learners.settings import default_setting
from metahpo.params import Params, SearchParams
from metahpo.reporting.surrogate import surrogate_data
from metahpo.reporting.tables import setting_table
from metahpo.search.rungs import rung_iterations

# How trials are promoted: whole brackets, or ASHA's decision each time a job ends.
PROMOTION = {
    False: "after each rung the best 1/{} of a bracket continue training where they stopped, the others stop there",
    True: "each time a job ends, a trial in the best 1/{} of its rung so far continues training where it stopped "
    "(asynchronous successive halving), else a new trial starts",
}


def search_options(search: SearchParams, trials: pd.DataFrame) -> str:
    """The report's sentences on rungs, repeats, class folds and the default start, when they are used."""
    parts = []
    if search.fidelity != "none":
        rungs = rung_iterations(search.iterations, search.min_iterations, search.eta)
        reached = int((trials["iterations"] == search.iterations).sum())
        promotion = PROMOTION[search.fidelity == "asha"]
        parts.append(
            f"Multi-fidelity ({search.fidelity.replace('_', ' ')}): trials train in rungs of "
            f"{', '.join(f'{r:,}' for r in rungs)} iterations; {promotion.format(search.eta)} "
            f"({reached} of the {len(trials)} trials reached {search.iterations:,} iterations; "
            f"{int(trials.loc[trials['status'] != 'too_costly', 'iterations'].sum()):,} trial-iterations in all)."
        )
        if search.fidelity_unit == "compute":
            parts.append(
                "Rungs are measured in compute: a rung of n iterations gives each trial the multiply-adds of n "
                "iterations of the untuned setting, so a cheaper setting trains more iterations and a costlier one "
                "fewer (the iterations above are in untuned-setting iterations)."
            )
    if search.repeats > 1:
        parts.append(f"Each trial's objective is the mean over {search.repeats} training seeds.")
    if search.class_folds > 1:
        parts.append(
            f"The objective is the mean over {search.class_folds} class folds: meta_val, then groups of whole "
            "meta_train source classes with their rotations, each at least as large as meta_val, held out in turn "
            "(each trained on the other meta_train classes and the meta_val classes)."
        )
    if search.start_from_default:
        parts.append("Trial 0 is the untuned setting.")
    return " ".join(parts) + "\n" if parts else ""


def cost_text(params: Params, best: dict, trials: pd.DataFrame) -> str:
    """The chosen setting's estimated cost per meta-iteration beside the untuned baseline's, and the cap."""
    baseline = setting_macs(default_setting(params), params)
    chosen = int(trials.loc[trials["trial"] == best["trial"], "cost_macs"].iloc[0])
    text = (
        f"Estimated cost per meta-iteration (multiply-adds, `metahpo.learners.cost`): chosen setting "
        f"{chosen / 1e6:,.2f} M, untuned baseline {baseline / 1e6:,.2f} M ({chosen / baseline:.2f}x)."
    )
    cap = params.search.max_cost
    if cap is not None:
        refused = int((trials["status"] == "too_costly").sum())
        text += (
            f" Settings above {cap:g}x the baseline's cost (`search.max_cost`) were not trained: {refused} of "
            f"{len(trials)} trials, told the optimizer a failure's penalty."
        )
    return text


def search_section(params: Params, best: dict, trials: pd.DataFrame, figures: dict, objective: str) -> str:
    """The report's search section: what ran, the best trial, the settings, its cost and the search figures."""
    search = params.search
    counts = trials["status"].value_counts()
    trial = "full trial" if search.fidelity != "none" else "trial"
    too_costly = f", {counts['too_costly']} too costly" if counts.get("too_costly", 0) else ""
    return f"""## Search
{search.method} search, {len(trials)} trials ({counts.get("ok", 0)} finished,
{counts.get("stopped", 0)} stopped early, {counts.get("failed", 0)} failed{too_costly}),
{search.iterations} iterations per {trial},
objective: {objective} after {search.objective_steps} adaptation step(s), never meta_test.
{search_options(search, trials)}Best: trial {best["trial"]}, {objective} {best["objective"]:.4f}.

{setting_table()}

{cost_text(params, best, trials)}

![objective against cost](figures/{figures["cost"]})

*Objective of every trial against its estimated cost per meta-iteration, relative to the untuned setting's
(failed, stopped and too costly trials at the value told to the optimizer); the line is the Pareto front of
the finished trials, the star the chosen setting.*

![search convergence](figures/{figures["search"]})

*Objective of every trial (failed and stopped trials at the value told to the optimizer) and the best so far.*

![partial dependence](figures/{figures["objective"]})

*Partial dependence of log({objective}) on each meta-hyperparameter and pair, from a GP fitted to
{surrogate_data(trials, search)[2]} (red star: the best of them).*

![evaluations](figures/{figures["evaluations"]})

*Where the search sampled: histograms per meta-hyperparameter and pairwise scatter, in trial order.*
"""


def environment_section(params: Params, device: torch.device) -> str:
    """Library versions, device and threads: what can change the last digits."""
    return f"""## Environment
metahpo {__version__}, Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__},
scikit-optimize {skopt.__version__}; device {device.type}, {params.threads} torch thread(s) per process. Another
device, thread count or library version can change the numbers in the last digits.
"""
