"""Where the next trials come from: skopt's GP or forest, random sampling, or a grid.

Every proposer has ``ask(n, first_trial) -> list of points`` and ``tell(points, values)``, and is
deterministic given the seed and what it has been told, so a search replayed from its trial log
asks the same points again. The multi-fidelity search instead hands each ask the observations the
surrogate should fit (``observed``: one rung's points and values), and a :class:`RefitProposer`
fits a fresh GP or forest on them every time.

Conditional dimensions: scikit-optimize has none, so every dimension is always in the space, and
each proposer hands out points whose dimensions the point's algorithm does not read (for example
``inner_lr`` for ``cnp``, ``representation`` for ``maml``) pinned to their lowest value
(:func:`pin_inactive`). The surrogate is told the pinned points, so it never attributes a score
to a value that played no part in it; a grid lists each distinct pinned point once.
"""

from __future__ import annotations

import itertools

import numpy as np
import skopt
from skopt.space import Categorical, Integer, Real, Space

from metahpo.learners import USED_ONLY_BY
from metahpo.params import SearchParams
from metahpo.seeds import trial_seed

ESTIMATORS = {"gp": "GP", "forest": "RF"}


def build_space(space: dict) -> list:
    """skopt dimensions, named after the meta-hyperparameters, from the validated ``search.space``."""
    dims = []
    for name, dim in space.items():
        if dim["type"] == "categorical":
            dims.append(Categorical(list(dim["values"]), name=name))
        elif dim["type"] == "integer":
            dims.append(Integer(dim["low"], dim["high"], prior=dim["prior"], name=name))
        else:
            dims.append(Real(float(dim["low"]), float(dim["high"]), prior=dim["prior"], name=name))
    return dims


def to_python(value):
    """Cast numpy scalars (as ``ask()`` returns them) to plain Python values, JSON and YAML friendly."""
    return value.item() if isinstance(value, np.generic) else value


def _lowest(dim):
    return dim.categories[0] if isinstance(dim, Categorical) else to_python(dim.low)


def pin_inactive(point: list, dims: list) -> list:
    """``point`` with every dimension its algorithm does not read set to the dimension's lowest value."""
    names = [d.name for d in dims]
    if "algorithm" not in names:  # one algorithm: the validator refuses dimensions it does not read
        return point
    algorithm = point[names.index("algorithm")]
    return [_lowest(d) if algorithm not in USED_ONLY_BY.get(d.name, (algorithm,)) else v for d, v in zip(dims, point)]


class SkoptProposer:
    """``skopt.Optimizer`` ask/tell; batches use the constant liar (``ask(n_points=k)``)."""

    def __init__(self, dims: list, search: SearchParams, seed: int):
        self.dims = dims
        self.optimizer = skopt.Optimizer(
            dims,
            base_estimator=ESTIMATORS[search.method],
            n_initial_points=search.n_initial_points,
            initial_point_generator="random",
            acq_func=search.acq_func,
            random_state=seed,
        )

    def ask(self, n: int, first_trial: int, observed=None) -> list[list]:
        """``n`` points from the surrogate told so far (``observed`` is for refitted proposers, unused here)."""
        points = [self.optimizer.ask()] if n == 1 else self.optimizer.ask(n_points=n)
        return [pin_inactive([to_python(v) for v in p], self.dims) for p in points]

    def tell(self, points: list[list], values: list[float]) -> None:
        self.optimizer.tell(points, values)


class RandomProposer:
    """Independent uniform draws from the space (with its priors); trial ``i`` always gets the same point."""

    def __init__(self, dims: list, search: SearchParams, seed: int):
        self.dims, self.space, self.seed = dims, Space(dims), seed

    def ask(self, n: int, first_trial: int, observed=None) -> list[list]:
        trials = range(first_trial, first_trial + n)
        drawn = (self.space.rvs(1, random_state=trial_seed(self.seed, t))[0] for t in trials)
        return [pin_inactive([to_python(v) for v in p], self.dims) for p in drawn]

    def tell(self, points, values) -> None:
        """Random search learns nothing from results."""


def dimension_grid(dim, resolution: int) -> list:
    """``resolution`` values of one dimension, evenly spaced on its prior's scale (all categories)."""
    if isinstance(dim, Categorical):
        return list(dim.categories)
    spacing = np.geomspace if dim.prior == "log-uniform" else np.linspace
    values = spacing(dim.low, dim.high, resolution)
    if isinstance(dim, Integer):
        return sorted({int(round(v)) for v in values})
    return [float(v) for v in values]


class GridProposer:
    """The full grid over the space, visited in a seeded random order (the first ``n_calls`` of it run)."""

    def __init__(self, dims: list, search: SearchParams, seed: int):
        full = itertools.product(*(dimension_grid(d, search.grid_points) for d in dims))
        grid = list(dict.fromkeys(tuple(pin_inactive([to_python(v) for v in p], dims)) for p in full))
        order = np.random.default_rng(seed).permutation(len(grid))
        self.points = [list(grid[i]) for i in order]

    def __len__(self) -> int:
        return len(self.points)

    def ask(self, n: int, first_trial: int, observed=None) -> list[list]:
        return [self.points[t % len(self.points)] for t in range(first_trial, first_trial + n)]

    def tell(self, points, values) -> None:
        """A grid learns nothing from results."""


class RefitProposer:
    """A GP or forest fitted afresh, for every ask, on the observations handed to it, as BOHB does.

    BOHB's rules (Falkner et al. 2018): a model needs ``needed`` = dimensions + 1 observations, and with
    fewer the points are random (like :class:`RandomProposer`); one trial in three (trial numbers 2, 5,
    8, ...) is random anyway, so the search keeps exploring where a model fitted on short runs is wrong.
    The other points of an ask are one constant-liar batch. Each ask's optimiser is seeded by its first
    trial, so the points depend only on the seed and the observations.
    """

    def __init__(self, dims: list, search: SearchParams, seed: int):
        self.dims, self.search, self.seed = dims, search, seed
        self.random = RandomProposer(dims, search, seed)
        self.needed = len(dims) + 1

    def ask(self, n: int, first_trial: int, observed: tuple[list, list] | None = None) -> list[list]:
        points, values = observed or ((), ())
        trials = range(first_trial, first_trial + n)
        modelled = [t for t in trials if t % 3 != 2] if len(points) >= self.needed else []
        if modelled:
            optimizer = skopt.Optimizer(
                self.dims,
                base_estimator=ESTIMATORS[self.search.method],
                n_initial_points=0,
                acq_func=self.search.acq_func,
                random_state=trial_seed(self.seed, first_trial),
            )
            optimizer.tell([list(p) for p in points], list(values))
            asked = [optimizer.ask()] if len(modelled) == 1 else optimizer.ask(n_points=len(modelled))
            from_model = dict(zip(modelled, (pin_inactive([to_python(v) for v in p], self.dims) for p in asked)))
        else:
            from_model = {}
        return [from_model[t] if t in from_model else self.random.ask(1, t)[0] for t in trials]


PROPOSERS = {"gp": SkoptProposer, "forest": SkoptProposer, "random": RandomProposer, "grid": GridProposer}
REFIT_PROPOSERS = {**PROPOSERS, "gp": RefitProposer, "forest": RefitProposer}


def make_proposer(search: SearchParams, seed: int, refit: bool = False):
    """The proposer for ``search.method``; ``refit`` for the multi-fidelity search (fitted on what it is given)."""
    return (REFIT_PROPOSERS if refit else PROPOSERS)[search.method](build_space(search.space), search, seed)
