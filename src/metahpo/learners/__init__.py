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
OUTER_SCHEDULES = ("constant", "cosine")
# Meta-hyperparameters that only some algorithms read; the others ignore them (the search pins them).
USED_ONLY_BY = {
    "inner_lr": GRADIENT_ALGORITHMS,
    "inner_steps": GRADIENT_ALGORITHMS,
    "representation": ("cnp",),
    "rule_hidden": LEARNED_RULE_ALGORITHMS,
}
