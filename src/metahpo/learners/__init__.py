"""Meta-learners over a batch of tasks: networks, adaptation, meta-training, and trained learners on disk."""

LEARNED_RULE_ALGORITHMS = ("learned_optimizer", "learned_optimizer_fo")
# The meta-gradient treats the inner gradients as constants (no differentiation through the inner steps).
FIRST_ORDER_ALGORITHMS = ("fomaml", "learned_optimizer_fo")
GRADIENT_ALGORITHMS = ("maml", "fomaml", "metasgd", "anil", *LEARNED_RULE_ALGORITHMS)
ALGORITHMS = (*GRADIENT_ALGORITHMS, "cnp")
LEARNER_ALGORITHMS = (*ALGORITHMS, "protonet")
# Kinds of meta-learner the search can choose between, each with its algorithms: the report sets the best of
# each side by side (the prototypical network, a baseline with no search of its own, is the metric-based kind).
KINDS = {
    "maml_family": ("maml", "fomaml", "metasgd", "anil"),
    "learned_optimizer": LEARNED_RULE_ALGORITHMS,
    "cnp": ("cnp",),
}
ARCHITECTURES = ("mlp", "conv")
# Inner learning rates: ``fixed`` (one rate, or Meta-SGD's per-parameter rates, shared by every step) or ``lslr``
# (MAML++'s learned per-layer per-step rates; Meta-SGD's become per-parameter per-step).
INNER_RATES = ("fixed", "lslr")
LSLR_ALGORITHMS = ("maml", "fomaml", "metasgd", "anil")
# Second-order algorithms, which derivative-order annealing trains first order for a part of the run.
SECOND_ORDER_ALGORITHMS = tuple(a for a in GRADIENT_ALGORITHMS if a not in FIRST_ORDER_ALGORITHMS)
OUTER_SCHEDULES = ("constant", "cosine")
# Meta-hyperparameters that only some algorithms read; the others ignore them (the search pins them).
USED_ONLY_BY = {
    "inner_lr": GRADIENT_ALGORITHMS,
    "inner_steps": GRADIENT_ALGORITHMS,
    "representation": ("cnp",),
    "rule_hidden": LEARNED_RULE_ALGORITHMS,
    "inner_rates": LSLR_ALGORITHMS,
    "multi_step_loss": GRADIENT_ALGORITHMS,
    "first_order_fraction": SECOND_ORDER_ALGORITHMS,
}
