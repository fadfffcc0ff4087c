"""Few-shot task data: sinusoid regression, image classes and episodes, and their storage on disk.

The families' names live in :mod:`metahpo.task_names`, in the core, so that the params can read them.
"""
