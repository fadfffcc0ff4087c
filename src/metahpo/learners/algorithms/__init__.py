"""One module per meta-learner, each a subclass of :class:`base.Algorithm`, listed in :mod:`.registry`.

Adding a learner: its module here, one line in the registry's list, its tests and a line in
``docs/learners.md`` (see "Adding a learner" there).
"""
