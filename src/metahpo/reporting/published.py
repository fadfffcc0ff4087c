"""Published few-shot sinusoid results, quoted only as reference rows (never mixed with measured ones).

Li et al. 2017 (Meta-SGD), Table 1: held-out MSE after one gradient step for K = 5, 10, 20, with 95%
confidence intervals where the source gives them; the MAML row is quoted differently in different
sources, so it is given as the range of the quoted values.
"""

from metahpo.learners.algorithms.registry import algorithms

SOURCE = "Li et al. 2017 (Meta-SGD), Table 1"
PROTOCOL = "one gradient step; test-set protocol of the source, not metahpo's"

# method -> K -> (low, high, 95% half-width or None); low == high for a single quoted value. Each learner's
# rows are declared in its own file (``one_step_sinusoid``).
ONE_STEP = {a.label: a.one_step_sinusoid for a in algorithms() if a.one_step_sinusoid is not None}


def format_quote(low: float, high: float, ci: float | None) -> str:
    """``0.90 ± 0.16`` or ``0.77–0.85``, as the source quotes it."""
    if low != high:
        return f"{low:.2f}–{high:.2f}"
    return f"{low:.2f} ± {ci:.2f}" if ci is not None else f"{low:.2f}"


# Omniglot 5-way 1-shot accuracy (%), for orientation only: another dataset (1,623 handwritten
# characters, 28x28), so never comparable line by line with the digits or a user's folder.
OMNIGLOT_5WAY_1SHOT = {"MAML": 98.7, "Meta-SGD": 99.5, "MAML++": 99.5}
OMNIGLOT_SOURCE = "Finn et al. 2017; Li et al. 2017; Antoniou et al. 2019"
