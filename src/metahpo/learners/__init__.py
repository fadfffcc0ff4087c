"""Meta-learners over a batch of tasks: networks, adaptation, meta-training, and trained learners on disk."""

ALGORITHMS = ("maml", "fomaml", "metasgd", "anil")
LEARNER_ALGORITHMS = (*ALGORITHMS, "protonet")
ARCHITECTURES = ("mlp", "conv")
OUTER_SCHEDULES = ("constant", "cosine")
