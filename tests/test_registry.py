"""The learner registry is the one place a learner is described: the name lists derive from it, the
meta-learner reads what each entry declares and nothing else, and a learner defined in one file (here, in
this test module) trains through the public path."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import torch

import metahpo
from metahpo.learners import (
    ALGORITHMS,
    ARCHITECTURES,
    FIRST_ORDER_ALGORITHMS,
    GRADIENT_ALGORITHMS,
    KINDS,
    LEARNED_RULE_ALGORITHMS,
    LEARNER_ALGORITHMS,
    LSLR_ALGORITHMS,
    SECOND_ORDER_ALGORITHMS,
    USED_ONLY_BY,
)
from metahpo.learners.algorithms import registry
from metahpo.learners.algorithms.base import OPTIONAL_KEYS, STEP_KEYS, Algorithm
from metahpo.learners.cost import meta_iteration_macs
from metahpo.learners.memory import meta_step_bytes
from metahpo.learners.meta_learner import LearnerConfig, MetaLearner
from metahpo.learners.mlp import head_names
from metahpo.params import validate
from metahpo.sources import SRC

ROOT = Path(__file__).resolve().parents[1]
# Comparisons with a learner's name that remain outside the registry, each with its reason.
KNOWN_NAME_COMPARISONS = {
    ("metahpo/search/final_training.py", "protonet"): "the name of the trained baseline (models/protonet), "
    "not its algorithm",
}


class NormalisedStepMAML(Algorithm):
    """MAML whose inner step moves each weight tensor of a task by ``inner_lr`` along its unit-norm gradient."""

    name = "normalised_maml"
    label = "normalised-step MAML"
    reference = "a test of the registry"
    reads = (*STEP_KEYS, "first_order_fraction")

    def step(self, learner, current, grads, step):
        norms = [g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (g.dim() - 1)) for g in grads]
        return [w - learner.config.inner_lr * g / n for w, g, n in zip(current, grads, norms)]


@pytest.fixture
def normalised():
    entry = registry.register(NormalisedStepMAML())
    yield entry
    registry.unregister(entry.name)


def test_the_name_lists_keep_their_values():
    gradient = ("maml", "fomaml", "metasgd", "anil", "anil_proximal", "protomaml", "learned_optimizer",
                "learned_optimizer_fo")  # fmt: skip
    assert gradient == GRADIENT_ALGORITHMS
    assert (*gradient, "cnp") == ALGORITHMS and (*ALGORITHMS, "protonet") == LEARNER_ALGORITHMS
    assert LEARNED_RULE_ALGORITHMS == ("learned_optimizer", "learned_optimizer_fo")
    assert FIRST_ORDER_ALGORITHMS == ("fomaml", "learned_optimizer_fo")
    assert SECOND_ORDER_ALGORITHMS == ("maml", "metasgd", "anil", "anil_proximal", "protomaml", "learned_optimizer")
    assert LSLR_ALGORITHMS == ("maml", "fomaml", "metasgd", "anil", "protomaml")
    assert list(KINDS.items()) == [
        ("maml_family", ("maml", "fomaml", "metasgd", "anil", "anil_proximal", "protomaml")),
        ("learned_optimizer", LEARNED_RULE_ALGORITHMS),
        ("cnp", ("cnp",)),
    ]
    assert list(USED_ONLY_BY.items()) == [
        ("inner_lr", gradient),
        ("inner_steps", gradient),
        ("representation", ("cnp",)),
        ("rule_hidden", LEARNED_RULE_ALGORITHMS),
        ("inner_rates", LSLR_ALGORITHMS),
        ("multi_step_loss", gradient),
        ("first_order_fraction", SECOND_ORDER_ALGORITHMS),
    ]


def _conv_only(name: str) -> bool:
    return "mlp" not in registry.algorithm(name).architectures  # Proto-MAML: image classification


def _classifies(name: str) -> bool:
    return name == "protonet" or _conv_only(name)  # the prototypical network classifies only


def _learner(name: str, **changes) -> MetaLearner:
    classify, conv = _classifies(name), _conv_only(name)
    shape = (4, 4) if conv else (4,) if classify else (1,)
    config = LearnerConfig(name, 6, 2, 0.1, 2, "conv" if conv else "mlp", shape, 3 if classify else 1,
                           "cross_entropy" if classify else "mse", 5, 4, "fixed")  # fmt: skip
    return MetaLearner(LearnerConfig(**{**config.__dict__, **changes}), torch.Generator().manual_seed(0)).double()


def _batch(name: str):
    g = torch.Generator().manual_seed(1)
    if _classifies(name):
        labels = torch.arange(3).repeat(2).expand(2, -1).contiguous()
        shape = (2, 6, 4, 4) if _conv_only(name) else (2, 6, 4)
        return (
            torch.rand(*shape, generator=g, dtype=torch.float64),
            labels,
            torch.rand(*shape, generator=g, dtype=torch.float64),
            labels,
        )
    x = torch.rand(2, 10, 1, generator=g, dtype=torch.float64) * 10 - 5
    return x[:, :5], torch.sin(x[:, :5]), x[:, 5:], torch.sin(x[:, 5:])


def _outcome(learner: MetaLearner, batch, **options) -> tuple:
    """Everything a key could change: the meta-parameters' names and shapes, the meta-loss and its gradient."""
    loss = learner.meta_loss(*batch, **options)
    names, params = zip(*learner.named_parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    shapes = tuple((n, tuple(p.shape)) for n, p in zip(names, params))
    return shapes, loss.item(), tuple(None if g is None else g.tolist() for g in grads)


def _reads(name: str, key: str) -> bool:
    """Whether changing ``key`` changes anything about the learner ``name`` (observed, not declared)."""
    batch = _batch(name)
    base = _outcome(_learner(name), batch)
    if key == "multi_step_loss":  # the multi-step loss, equal weights on both inner steps, changes the loss
        # (the gradient of two equal halves of a stepless learner's loss differs from its own in rounding only)
        return _outcome(_learner(name), batch, step_weights=[0.5, 0.5])[:2] != base[:2]
    if key == "first_order_fraction":  # derivative-order annealing: the first-order phase
        return _outcome(_learner(name), batch, first_order=True) != base
    changed = {"inner_lr": 0.3, "inner_steps": 3, "representation": 7, "rule_hidden": 6, "inner_rates": "lslr"}
    return _outcome(_learner(name, **{key: changed[key]}), batch) != base


@pytest.mark.parametrize("name", [*LEARNER_ALGORITHMS, "normalised_maml"])
def test_every_learner_reads_exactly_the_keys_it_declares(name, request):
    if name == "normalised_maml":
        request.getfixturevalue("normalised")
    entry = registry.algorithm(name)
    assert {key: _reads(name, key) for key in OPTIONAL_KEYS} == {key: key in entry.reads for key in OPTIONAL_KEYS}


@pytest.mark.parametrize("name", LEARNER_ALGORITHMS)
def test_what_adapts_and_the_step_flags_are_what_the_learner_does(name):
    entry, learner = registry.algorithm(name), _learner(name)
    batch = _batch(name)
    trajectory = list(learner.trajectory(batch[0], batch[1], 1))
    moved = [n for n in learner.weights if not torch.equal(trajectory[0][n], trajectory[1][n])]
    expected = {"all": list(learner.weights), "head": list(head_names(learner.weights)), "none": []}[entry.adapts]
    assert sorted(moved) == sorted(expected)
    assert entry.takes_steps == bool(moved)
    assert learner.second_order == (not entry.first_order)
    assert bool(learner.rule) == entry.learned_rule


def test_a_learner_in_its_own_file_trains_through_the_public_path(normalised):
    assert "normalised_maml" not in ALGORITHMS  # registered after the lists were made: the search cannot draw it
    config = LearnerConfig("normalised_maml", hidden=40, layers=2, inner_lr=0.5, inner_steps=1)
    learner = metahpo.build_learner(config, 0, "cpu")
    assert learner.algorithm is normalised
    pool = metahpo.sinusoid_pool(n_tasks=100, points=20, seed=0)
    batch = pool.sample(25, 10, 10, torch.Generator().manual_seed(1))
    # Its own inner step, not MAML's: every task's weights move by exactly inner_lr (as a whole).
    before, after = list(learner.trajectory(batch[0], batch[1], 1))
    moved = torch.stack([(after[n] - before[n]).flatten(1).norm(dim=1) for n in learner.adapted])
    assert torch.allclose(moved, torch.full_like(moved, 0.5), rtol=1e-5)
    start = learner.meta_loss(*batch).item()
    settings = metahpo.TrainSettings(iterations=100, meta_batch_size=10, outer_lr=1e-3, outer_schedule="constant",
                                     shots=10, query=10)  # fmt: skip
    metahpo.meta_train(learner, pool, settings, seed=0)
    assert learner.meta_loss(*batch).item() < start
    # The cost model and the memory guard take its terms (MAML's, by default).
    setting = {"algorithm": "normalised_maml", "hidden": 40, "layers": 2, "inner_steps": 1, "meta_batch_size": 25}
    assert meta_iteration_macs(setting, 10, 10) == meta_iteration_macs({**setting, "algorithm": "maml"}, 10, 10)
    assert meta_step_bytes(setting, 20) == meta_step_bytes({**setting, "algorithm": "maml"}, 20)


def test_a_bad_learner_is_refused_with_what_is_wrong(normalised):
    with pytest.raises(ValueError, match="'normalised_maml' is already registered"):
        registry.register(NormalisedStepMAML())

    class Bad(Algorithm):
        name, kind, adapts, reads = "bad", "bayesian", "some", ("inner_lr", "temperature")

    with pytest.raises(ValueError, match="kind 'bayesian' is not one of.*adapts 'some'.*reads temperature"):
        registry.register(Bad())

    class Stepless(Algorithm):
        name, takes_steps, lslr = "stepless", False, True

    with pytest.raises(ValueError, match="takes_steps False does not agree with adapts 'all'; lslr"):
        registry.register(Stepless())
    assert "bad" not in LEARNER_ALGORITHMS and [a.name for a in registry.algorithms()][-1] == "normalised_maml"
    with pytest.raises(ValueError, match="unknown algorithm 'reptile'; expected one of maml, fomaml"):
        MetaLearner(LearnerConfig("reptile", 8, 1, 0.1, 1), torch.Generator().manual_seed(0))


def _name_comparisons(path: Path) -> set[str]:
    """Learner names compared with something (``==``, ``!=``, ``in``) anywhere in ``path``."""

    def strings(node) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(set(), *(strings(e) for e in node.elts))
        return set()

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            found |= set().union(*(strings(n) for n in [node.left, *node.comparators])) & set(LEARNER_ALGORITHMS)
    return found


def test_no_module_outside_the_registry_compares_learner_names():
    package = SRC / "metahpo"
    found = {
        (str(path.relative_to(SRC)), name)
        for path in sorted(package.rglob("*.py"))
        if "algorithms" not in path.relative_to(package).parts[:2]
        for name in _name_comparisons(path)
    }
    assert found == set(KNOWN_NAME_COMPARISONS), "ask the learner's registry entry instead: " + ", ".join(
        f"{p} compares {n!r}" for p, n in sorted(found - set(KNOWN_NAME_COMPARISONS))
    )


def test_the_scan_finds_a_comparison(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('def f(setting):\n    return setting["algorithm"] in ("maml", "anil") or 1 == 1\n')
    assert _name_comparisons(module) == {"maml", "anil"}


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("name", ALGORITHMS)
def test_params_refuse_exactly_the_architectures_a_learner_does_not_run_on(name, arch, tiny_params):
    tiny_params["meta"]["algorithm"], tiny_params["model"]["arch"] = name, arch
    problems = "\n".join(validate(tiny_params))
    refused = f"meta.algorithm: {name} needs model.arch" in problems
    assert refused == (arch not in registry.algorithm(name).architectures)


@pytest.mark.parametrize("family", ["sinusoid", "digits"])
@pytest.mark.parametrize("name", ALGORITHMS)
def test_params_refuse_exactly_the_tasks_a_learner_does_not_run_on(name, family, tiny_params):
    tiny_params["tasks"]["family"] = family
    tiny_params["search"]["space"]["algorithm"] = {"type": "categorical", "values": ["maml", name]}
    messages = {"meta.algorithm": f"meta.algorithm: {name} does not run on",
                "search.space.algorithm": f"search.space.algorithm: {name} does not run on"}  # fmt: skip
    for key, message in messages.items():
        params = copy.deepcopy(tiny_params)
        if key == "meta.algorithm":
            params["meta"]["algorithm"] = name
        problems = "\n".join(validate(params))
        loss = "cross_entropy" if family == "digits" else "mse"
        assert (message in problems) == (loss not in registry.algorithm(name).losses), key


def test_the_learners_page_has_a_line_for_every_learner():
    page = (ROOT / "docs/learners.md").read_text(encoding="utf-8")
    missing = [a.name for a in registry.algorithms() if f"`{a.name}`" not in page]
    assert not missing, f"docs/learners.md: no line for {', '.join(missing)}"
