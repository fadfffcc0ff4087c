"""Seeds derived from the params seed: independent and reproducible, without importing heavy libraries."""

from __future__ import annotations

import numpy as np


def trial_seed(seed: int, trial: int) -> int:
    """An independent, reproducible seed for each trial (and for each repeat of a trial)."""
    return int(np.random.SeedSequence([seed, trial]).generate_state(1)[0])
