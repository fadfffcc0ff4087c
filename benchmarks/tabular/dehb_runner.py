"""DEHB 0.1.2 against a tabular benchmark exported by ``benchmarks/search_peers.py`` (run in its own venv).

DEHB 0.1.2 needs numpy < 2, which the project's venv does not allow, so it runs in a venv of its own::

    python3.11 -m venv /work/venvs/dehb && /work/venvs/dehb/bin/pip install dehb==0.1.2 'numpy<2'
    /work/venvs/dehb/bin/python benchmarks/tabular/dehb_runner.py TABLE.npz SPEC.json OUT.json

This file imports only numpy, ConfigSpace and dehb (never metahpo). ``TABLE.npz`` holds the curves
(``values``), the settings' codes and which dimensions are categorical; ``SPEC.json`` the space, rungs, budget,
seeds and every method-independent rule (nearest setting, one training seed drawn per evaluation). DEHB asks
through its ask/tell interface until the compute (trial-iterations) reaches the budget; every evaluation trains
from scratch for its fidelity, as DEHB has no continuation. ``OUT.json`` gets each seed's evaluations.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile

import numpy as np
from table import config_space, encode  # the runner's folder is on sys.path: it runs as a script


def run_seed(values, codes, categorical, spec: dict, seed: int) -> list[dict]:
    """One DEHB search; its evaluations (setting, budget, value, compute) in order."""
    from dehb import DEHB

    space, rungs, every = spec["space"], spec["rungs"], spec["every"]
    rng = np.random.default_rng([spec["draw_seed"], seed])
    with tempfile.TemporaryDirectory() as tmp:
        dehb = DEHB(
            cs=config_space(space, seed), dimensions=len(space), min_fidelity=rungs[0], max_fidelity=rungs[-1],
            eta=spec["eta"], n_workers=1, seed=seed, output_path=tmp, log_level="ERROR",
        )  # fmt: skip
        events, compute, seen = [], 0, set()
        while compute < spec["budget"]:
            job = dehb.ask()
            config = job["config"]  # a Configuration with configspace=True (the default), else a vector
            config = dict(config) if hasattr(config, "keys") else dict(dehb.vector_to_configspace(config))
            code = np.asarray(encode(space, config))
            distance = (codes[:, categorical] != code[categorical]).sum(axis=1) + (
                (codes[:, ~categorical] - code[~categorical]) ** 2
            ).sum(axis=1)
            setting = int(np.argmin(distance))
            budget = int(round(job["fidelity"]))
            k = int(rng.integers(values.shape[1]))
            value = values[setting, k, budget // every - 1]
            compute += budget
            key = json.dumps([config, budget], sort_keys=True)  # a higher budget is a promotion, not a repeat
            events.append(
                {"trial": len(events), "setting": setting, "start": 0, "stop": budget, "seed": k,
                 "value": float(value) if math.isfinite(value) else None, "new_point": key not in seen}
            )  # fmt: skip
            seen.add(key)
            fitness = float(value) if math.isfinite(value) else spec["penalty"]
            dehb.tell(job, {"fitness": fitness, "cost": budget})
    return events


def main() -> None:
    """Run every seed of the spec and write the evaluations."""
    table_path, spec_path, out_path = sys.argv[1:4]
    with np.load(table_path, allow_pickle=False) as table:
        values, codes, categorical = table["values"], table["codes"], table["categorical"].astype(bool)
    with open(spec_path) as fh:
        spec = json.load(fh)
    runs = {str(seed): run_seed(values, codes, categorical, spec, seed) for seed in spec["seeds"]}
    with open(out_path, "w") as fh:
        json.dump(runs, fh)


if __name__ == "__main__":
    main()
