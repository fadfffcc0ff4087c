"""Proposals for :func:`metahpo.search.multifidelity.minimize`: the joint GP over (setting, log budget),
Optuna's TPE, and the seeded initial design.

The GP (``skopt.learning.GaussianProcessRegressor``, Matern 5/2 with a length scale per input, learned noise)
is fitted on every finished rung of every trial, and expected improvement scores candidates at the full budget;
see the module description of :mod:`metahpo.search.multifidelity` for the whole method.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
from scipy.stats import qmc
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import PowerTransformer
from skopt.acquisition import gaussian_ei
from skopt.learning import GaussianProcessRegressor
from skopt.learning.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from metahpo.search.unit_space import UnitSpace, derived_seed

MAX_COMBINATIONS = 64  # above this many combinations of categories, categories are sampled like the rest


class JointGP:
    """A GP over (setting, log budget), fitted on every observation; scores candidates at the full budget."""

    def __init__(self, space: UnitSpace, rungs: list[int], options: dict, seed: int):
        self.space, self.rungs, self.options, self.seed = space, rungs, options, seed
        self.low, self.high = math.log(rungs[0]), math.log(rungs[-1])
        self.fits = 0

    def _budget(self, budget: int) -> float:
        return 1.0 if self.high == self.low else (math.log(budget) - self.low) / (self.high - self.low)

    def inputs(self, pairs) -> np.ndarray:
        """GP inputs of ``(setting, budget)`` pairs."""
        return np.array([[*self.space.features(s), self._budget(b)] for s, b in pairs], dtype=float)

    def transform(self, values: list[float]) -> np.ndarray:
        """Told values: failures the worst finite value, then the output transform."""
        y = np.array(values, dtype=float)
        finite = np.isfinite(y)
        if not finite.any():
            return np.zeros_like(y)
        y[~finite] = y[finite].max()
        kind = self.options["transform"]
        if kind == "log" and (y > 0).all():
            return np.log(y)
        if kind in ("log", "power") and np.ptp(y) > 0:
            method = "box-cox" if (y > 0).all() else "yeo-johnson"
            return PowerTransformer(method=method).fit_transform(y[:, None])[:, 0]
        return y

    def fit(self, observed: list[tuple[dict, int, float]], pending: list[tuple[dict, int]]):
        """Fit on ``observed`` (setting, budget, value); add ``pending`` as believed observations if asked.

        Observations only grow, so the hyperparameters are fitted once per new observation count and the
        pending jobs of one decision (a bracket's points) only cost a refit with them fixed.
        """
        if getattr(self, "n_fitted", None) != len(observed):
            self._fit(observed)
        X, y, gp = self.base
        self.gp = self._believe(gp, X, y, pending) if pending and self.options["parallel"] == "believer" else gp
        return self.gp

    def _fit(self, observed) -> None:
        X = self.inputs([(s, b) for s, b, _ in observed])
        y = self.transform([v for _, _, v in observed])
        kernel = ConstantKernel(1.0, (0.01, 100.0)) * Matern(
            length_scale=np.ones(X.shape[1]), length_scale_bounds=self.options["length_scale_bounds"], nu=2.5
        )
        previous = getattr(self, "base", None)
        warm = previous is not None and self.fits % 10 != 0
        if warm:  # start from the last fit's hyperparameters: a few L-BFGS steps instead of three full runs
            kernel = previous[2].kernel_.k1 + WhiteKernel(max(previous[2].noise_ or 0.0, 1e-5), (1e-5, 1e1))
        gp = GaussianProcessRegressor(
            kernel=kernel,
            normalize_y=True,
            noise="gaussian",
            n_restarts_optimizer=0 if warm else 2,
            random_state=np.random.RandomState(derived_seed(self.seed, 1, len(observed))),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a length scale at its bound is an answer here
            gp.fit(X, y)
        self.fits += 1
        self.base, self.n_fitted = (X, y, gp), len(observed)

    def _believe(self, gp, X, y, pending):
        """The GP refitted, with its hyperparameters fixed, on the pending jobs told their own predicted mean."""
        Xp = self.inputs(pending)
        fixed = gp.kernel_.k1 + WhiteKernel(noise_level=max(gp.noise_ or 0.0, 1e-10), noise_level_bounds="fixed")
        believer = GaussianProcessRegressor(kernel=fixed, normalize_y=True, noise="gaussian", optimizer=None)
        believer.fit(np.vstack([X, Xp]), np.concatenate([y, gp.predict(Xp)]))
        return believer

    def at_full(self, settings: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and predicted means of settings at the full budget."""
        X = self.inputs([(s, self.rungs[-1]) for s in settings])
        return X, self.gp.predict(X)


class Proposer:
    """Where new trials come from: a seeded initial design, then the method's model."""

    def __init__(self, space: UnitSpace, rungs, options: dict, seed: int, method: str, allowed, x0=()):
        self.space, self.rungs, self.options, self.seed, self.method = space, rungs, options, seed, method
        self.allowed = allowed  # setting -> bool (max_cost)
        self.x0 = list(x0)  # trials 0 .. len(x0) - 1 (pinned), before the design
        n_dims = len(space.names)
        self.n_initial = options["n_initial"] if options["n_initial"] is not None else n_dims + 1
        self.sobol = qmc.Sobol(n_dims, scramble=True, seed=derived_seed(seed, 2)).random(2 ** max(6, n_dims + 3))
        self.sobol_used = 0
        self.gp = JointGP(space, rungs, options, seed) if method == "gp" else None
        self.decisions = 0

    def propose(self, trial: int, observed: list, pending: list, taken: set) -> dict:
        """A new setting for ``trial``, not in ``taken`` (keys of settings observed or pending).

        The first trials are ``x0``'s settings; the design and the model number their trials after them.
        """
        self.decisions += 1
        if trial < len(self.x0):
            return self.x0[trial]
        trial -= len(self.x0)
        finished = [o for o in observed if math.isfinite(o[2])]
        every = self.options["random_every"]
        interleaved = every > 0 and (trial - self.n_initial) % every == every - 1
        if self.method == "random" or trial < self.n_initial or not finished or interleaved:
            return self._design(trial, taken)
        if self.method == "tpe":
            return self._tpe(trial, observed, taken)
        return self._gp(observed, pending, taken)

    def _design(self, trial: int, taken: set) -> dict:
        """The next point of the scrambled Sobol sequence (``initial="sobol"``) or a seeded uniform draw."""
        rng = np.random.default_rng(derived_seed(self.seed, 3, trial))
        for _ in range(10_000):
            if self.method != "random" and self.options["initial"] == "sobol" and self.sobol_used < len(self.sobol):
                u = self.sobol[self.sobol_used]
                self.sobol_used += 1
            else:
                u = rng.random(len(self.space.names))
            setting = self.space.setting(u)
            if self.space.key(setting) not in taken and self.allowed(setting):
                return setting
        raise ValueError("space: no new setting left to propose (every one is taken or above max_cost)")

    def _candidates(self, rng, centres: list[dict]) -> list[dict]:
        """Sobol points per combination of categories, and perturbations of ``centres``; pinned."""
        space = self.space
        n = self.options["candidates"]
        out = []
        base = qmc.Sobol(len(space.names), scramble=True, seed=rng).random(n)
        if space.categorical and space.n_combinations <= MAX_COMBINATIONS:
            combos = itertools.product(*(space.dims[i]["values"] for i in space.categorical))
            for combo in combos:
                for u in base:
                    setting = {n_: space.value(i, u[i]) for i, n_ in enumerate(space.names)}
                    setting.update({space.names[i]: v for i, v in zip(space.categorical, combo)})
                    out.append(space.pin(setting))
        else:
            out.extend(space.setting(u) for u in base)
        for centre in centres:
            u0 = space.units(centre)
            for scale in (0.03, 0.1, 0.25):
                for u in np.clip(u0 + rng.normal(0.0, scale, (16, len(u0))), 0.0, 1.0):
                    u[space.categorical] = u0[space.categorical]  # keep the centre's categories
                    out.append(space.setting(u))
        return out

    def _fresh(self, candidates: list[dict], taken: set) -> list[dict]:
        """Candidates without duplicates, without settings taken, and within ``max_cost``."""
        seen, out = set(taken), []
        for setting in candidates:
            key = self.space.key(setting)
            if key not in seen and self.allowed(setting):
                seen.add(key)
                out.append(setting)
        return out

    def _gp(self, observed, pending, taken) -> dict:
        gp, rng = self.gp, np.random.default_rng(derived_seed(self.seed, 4, self.decisions))
        gp.fit(observed, pending)
        trials = list({self.space.key(s): s for s, _, _ in observed}.values())
        _, means = gp.at_full(trials)
        y_opt = float(means.min())
        centres = [trials[i] for i in np.argsort(means, kind="stable")[:3]]
        candidates = self._fresh(self._candidates(rng, centres), taken)
        if not candidates:
            return self._design(self.decisions + 10_000, taken)
        X = gp.inputs([(s, self.rungs[-1]) for s in candidates])
        xi = self.options["xi"]
        ei = gaussian_ei(X, gp.gp, y_opt=y_opt, xi=xi)
        # A second, finer look around the best candidates.
        top = [candidates[i] for i in np.argsort(-ei, kind="stable")[:3]]
        local = self._fresh(
            [self.space.setting(np.clip(u, 0.0, 1.0)) for c in top for u in self._local(rng, c)],
            taken | {self.space.key(c) for c in candidates},
        )
        if local:
            candidates = candidates + local
            local_ei = gaussian_ei(gp.inputs([(s, self.rungs[-1]) for s in local]), gp.gp, y_opt=y_opt, xi=xi)
            ei = np.concatenate([ei, local_ei])
        return candidates[int(np.argmax(ei))]

    def _local(self, rng, centre: dict) -> np.ndarray:
        u0 = self.space.units(centre)
        u = u0 + rng.normal(0.0, 0.01, (16, len(u0)))
        u[:, self.space.categorical] = u0[self.space.categorical]
        return u

    def _tpe(self, trial: int, observed, taken) -> dict:
        from metahpo.search.tpe import tpe_setting  # optuna is imported only where it is used

        for attempt in range(100):
            setting = self.space.pin(
                tpe_setting(self.space, self.rungs, observed, derived_seed(self.seed, 5, trial, attempt))
            )
            if self.space.key(setting) not in taken and self.allowed(setting):
                return setting
        return self._design(trial, taken)

    def rank(self, observed, pending, settings: dict[int, dict]) -> dict[int, float] | None:
        """The GP's predicted full-budget value of each trial's setting, or None without a GP or observations."""
        if self.gp is None or not any(math.isfinite(v) for _, _, v in observed):
            return None
        self.gp.fit(observed, pending)
        _, means = self.gp.at_full(list(settings.values()))
        return dict(zip(settings, means.tolist()))
