"""An independent check of a trained proximal-head learner (``anil_proximal``), written apart from the project.

Fresh sinusoid tasks from a seed the project never used; the network and the ridge head in numpy (float64),
from the saved weights alone, solving the head's normal equations in its H + 1 dimensions (not the project's
K x K form). It reads ``models/tuned`` of a project whose pipeline has run::

    python benchmarks/proximal_check.py . 987654321

Prints grid MSE ± 95% CI (2,000 tasks per row) at K = 5, 10 and 20 after one step, at K = 10 after two, and out
of distribution.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

root, seed = sys.argv[1], int(sys.argv[2])
state = {k: v.double().numpy() for k, v in torch.load(f"{root}/models/tuned/model.pt", weights_only=True).items()}
config = json.loads(Path(f"{root}/models/tuned/config.json").read_text())["learner"]
rate = float(np.exp(state["inner_lrs.log_rate"][0]))
rng = np.random.default_rng(seed)


def features(x):
    h = np.maximum(x @ state["weights.w0"] + state["weights.b0"], 0)
    h = np.maximum(h @ state["weights.w1"] + state["weights.b1"], 0)
    return np.hstack([h, np.ones((len(x), 1))])


def run(n, amplitude, phase, shots, steps):
    grid = np.linspace(-5, 5, 100)[:, None]
    errors = []
    for _ in range(n):
        a, p = rng.uniform(*amplitude), rng.uniform(*phase)
        x = rng.uniform(-5, 5, (shots, 1))
        f = features(x)
        head = np.vstack([state["weights.w2"], state["weights.b2"]])
        scale = 2.0 / shots
        for _ in range(steps):
            head = np.linalg.solve(
                scale * f.T @ f + np.eye(len(head)) / rate, scale * f.T @ (a * np.sin(x - p)) + head / rate
            )
        errors.append(np.mean((features(grid) @ head - a * np.sin(grid - p)) ** 2))
    e = np.array(errors)
    return f"{e.mean():.3g} ± {1.96 * e.std(ddof=1) / np.sqrt(n):.2g}"


print("rate", rate, "config", config["algorithm"], config["hidden"], config["inner_steps"])
for shots in (5, 10, 20):
    print(f"K={shots}, 1 step, in distribution:", run(2000, (0.1, 5.0), (0, np.pi), shots, 1))
print("K=10, 2 steps:", run(2000, (0.1, 5.0), (0, np.pi), 10, 2))
print("K=10, 1 step, out of distribution:", run(2000, (5.0, 7.5), (np.pi, 1.5 * np.pi), 10, 1))
