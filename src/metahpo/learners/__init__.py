"""Meta-learners over a batch of tasks: networks, adaptation, meta-training, and trained learners on disk."""

LEARNED_RULE_ALGORITHMS = ("learned_optimizer", "learned_optimizer_fo")
# The meta-gradient treats the inner gradients as constants (no differentiation through the inner steps).
FIRST_ORDER_ALGORITHMS = ("fomaml", "learned_optimizer_fo")
GRADIENT_ALGORITHMS = ("maml", "fomaml", "metasgd", "anil", *LEARNED_RULE_ALGORITHMS)
ALGORITHMS = (*GRADIENT_ALGORITHMS, "cnp")
LEARNER_ALGORITHMS = (*ALGORITHMS, "protonet")
ARCHITECTURES = ("mlp", "conv")
OUTER_SCHEDULES = ("constant", "cosine")
# Meta-hyperparameters that only some algorithms read; the others ignore them (the search pins them).
USED_ONLY_BY = {
    "inner_lr": GRADIENT_ALGORITHMS,
    "inner_steps": GRADIENT_ALGORITHMS,
    "representation": ("cnp",),
    "rule_hidden": LEARNED_RULE_ALGORITHMS,
}
