"""The registered learners, in the order every list of algorithms follows.

:data:`metahpo.learners.ALGORITHMS`, ``KINDS``, ``USED_ONLY_BY`` and the other name lists are derived from
this list; the meta-learner, the cost model and the memory guard ask a learner's entry
(:func:`algorithm`) instead of comparing names.
"""

from __future__ import annotations

from metahpo.learners.algorithms.anil import ANIL
from metahpo.learners.algorithms.anil_proximal import ProximalANIL
from metahpo.learners.algorithms.base import ADAPTS, KIND_NAMES, OPTIONAL_KEYS, Algorithm
from metahpo.learners.algorithms.cnp import CNP
from metahpo.learners.algorithms.fomaml import FirstOrderMAML
from metahpo.learners.algorithms.learned_optimizer import FirstOrderLearnedOptimizer, LearnedOptimizer
from metahpo.learners.algorithms.maml import MAML
from metahpo.learners.algorithms.metasgd import MetaSGD
from metahpo.learners.algorithms.protomaml import ProtoMAML
from metahpo.learners.algorithms.protonet import ProtoNet

_REGISTRY: dict[str, Algorithm] = {}


def problems(entry: Algorithm) -> list[str]:
    """What is wrong with ``entry``'s declarations, one line each (none for a valid learner)."""
    found = []
    if not entry.name or not entry.name.isidentifier():
        found.append(f"name {entry.name!r} is not a lowercase identifier")
    if entry.kind not in KIND_NAMES:
        found.append(f"kind {entry.kind!r} is not one of {', '.join(KIND_NAMES)}")
    if entry.adapts not in ADAPTS:
        found.append(f"adapts {entry.adapts!r} is not one of {', '.join(ADAPTS)}")
    elif entry.takes_steps != (entry.adapts != "none"):
        found.append(f"takes_steps {entry.takes_steps} does not agree with adapts {entry.adapts!r}")
    unknown = [key for key in entry.reads if key not in OPTIONAL_KEYS]
    if unknown:
        found.append(f"reads {', '.join(unknown)}: not in {', '.join(OPTIONAL_KEYS)}")
    if (entry.lslr or entry.per_parameter_rates) and not entry.takes_steps:
        found.append("lslr and per_parameter_rates need inner steps (takes_steps)")
    return found


def register(entry: Algorithm) -> Algorithm:
    """Add ``entry`` to the registry; a one-line ``ValueError`` names what is wrong with it."""
    wrong = problems(entry)
    if wrong:
        raise ValueError(f"learner {entry.name!r}: {'; '.join(wrong)}")
    if entry.name in _REGISTRY:
        raise ValueError(f"learner {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove the learner ``name`` (one a test registered)."""
    del _REGISTRY[name]


def algorithm(name: str) -> Algorithm:
    """The registered learner ``name``; ``ValueError`` lists the registered ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; expected one of {', '.join(_REGISTRY)}") from None


def algorithms() -> tuple[Algorithm, ...]:
    """Every registered learner, in registration order."""
    return tuple(_REGISTRY.values())


for _entry in (
    MAML(),
    FirstOrderMAML(),
    MetaSGD(),
    ANIL(),
    ProximalANIL(),
    ProtoMAML(),
    LearnedOptimizer(),
    FirstOrderLearnedOptimizer(),
    CNP(),
    ProtoNet(),
):
    register(_entry)
