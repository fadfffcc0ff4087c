"""Meta-learners over a batch of tasks: networks, adaptation, meta-training, and trained learners on disk.

The learners themselves are registered in :mod:`metahpo.learners.algorithms.registry`, one module each;
the name lists below are derived from their declarations.
"""

from metahpo.learners.algorithms.base import KIND_NAMES, OPTIONAL_KEYS
from metahpo.learners.algorithms.registry import algorithms as _registered

_LEARNERS = _registered()
_SEARCHED = tuple(a for a in _LEARNERS if a.searched)

LEARNED_RULE_ALGORITHMS = tuple(a.name for a in _SEARCHED if a.learned_rule)
# The meta-gradient treats the inner gradients as constants (no differentiation through the inner steps).
FIRST_ORDER_ALGORITHMS = tuple(a.name for a in _SEARCHED if a.first_order)
GRADIENT_ALGORITHMS = tuple(a.name for a in _SEARCHED if a.takes_steps)
# The algorithms ``meta.algorithm`` and the search choose from; the baselines (protonet) are added by the train stage.
ALGORITHMS = tuple(a.name for a in _SEARCHED)
LEARNER_ALGORITHMS = tuple(a.name for a in _LEARNERS)
# Kinds of meta-learner the search can choose between, each with its algorithms: the report sets the best of
# each side by side (the prototypical network, a baseline with no search of its own, is the metric-based kind).
KINDS = {kind: members for kind in KIND_NAMES if (members := tuple(a.name for a in _SEARCHED if a.kind == kind))}
ARCHITECTURES = ("mlp", "conv")
# Inner learning rates: ``fixed`` (one rate, or Meta-SGD's per-parameter rates, shared by every step) or ``lslr``
# (MAML++'s learned per-layer per-step rates; Meta-SGD's become per-parameter per-step).
INNER_RATES = ("fixed", "lslr")
# Steps past the trained ones at test time: each task keeps a step only where its support loss does not rise
# (safeguarded), or the trained rule is repeated unchecked (plain). See MetaLearner.trajectory.
EXTRA_STEPS = ("safeguarded", "plain")
LSLR_ALGORITHMS = tuple(a.name for a in _SEARCHED if a.lslr)
# Second-order algorithms, which derivative-order annealing trains first order for a part of the run.
SECOND_ORDER_ALGORITHMS = tuple(a.name for a in _SEARCHED if a.second_order)
OUTER_SCHEDULES = ("constant", "cosine")
# Meta-hyperparameters that only some algorithms read; the others ignore them (the search pins them).
USED_ONLY_BY = {key: tuple(a.name for a in _SEARCHED if key in a.reads) for key in OPTIONAL_KEYS}
