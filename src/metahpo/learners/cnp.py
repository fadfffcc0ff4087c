"""A conditional neural process (Garnelo et al. 2018, "Conditional Neural Processes"), batched over tasks.

Model-based meta-learning: the learner adapts to a task by conditioning on its support set, with no
inner gradient step. An encoder MLP maps each support observation to a representation ``r_i``; the
representations are averaged; a decoder MLP maps a query input and the average ``r`` to the output.
Both MLPs have ``layers`` hidden layers of ``hidden`` units; ``r`` has ``representation`` values.

* regression: the encoder reads the pair ``(x, y)`` and ``r`` is the mean over the support set. The
  decoder outputs the predicted mean only and is trained by MSE, that is, the paper's Gaussian
  likelihood with its variance held fixed, so the CNP is scored by the same MSE as the other learners;
* classification: as in the paper's classification experiment, the representations are aggregated
  per class, one mean ``r_c`` per class of the images' encodings, so the label enters through the
  aggregation. The decoder scores every pair ``(x, r_c)`` with one logit, and the classes compete in a
  softmax; how the decoder combines a query with the class representations is this implementation's
  choice (the scores are not distances, unlike a prototypical network's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metahpo.learners.mlp import Weights, init_weights, layer_sizes, n_layers


def cnp_sizes(hidden: int, layers: int, representation: int, in_features: int, outputs: int) -> list[list[int]]:
    """Layer widths of the encoder and of the decoder.

    ``outputs`` is 1 for regression (the encoder also reads ``y``) or the number of classes (the encoder
    reads the image only and the decoder gives one logit per class representation).
    """
    return [
        layer_sizes(hidden, layers, in_features + (1 if outputs == 1 else 0), representation),
        layer_sizes(hidden, layers, in_features + representation, 1),
    ]


def init_cnp_weights(
    hidden: int, layers: int, representation: int, in_features: int, outputs: int, generator, device="cpu"
) -> Weights:
    """Encoder (``enc_`` names) and decoder (``dec_`` names) MLPs, initialised like the other networks."""
    encoder, decoder = cnp_sizes(hidden, layers, representation, in_features, outputs)
    weights = {f"enc_{n}": w for n, w in init_weights(encoder, generator, device).items()}
    return weights | {f"dec_{n}": w for n, w in init_weights(decoder, generator, device).items()}


def part(weights: Weights, prefix: str) -> Weights:
    """The weights of one MLP (``enc_`` or ``dec_``) under the names :func:`forward` expects."""
    return {n.removeprefix(prefix): w for n, w in weights.items() if n.startswith(prefix)}


def shared_forward(weights: Weights, x: torch.Tensor) -> torch.Tensor:
    """An MLP whose weights every task shares, on the rows of ``x`` ``[rows, in]``: one matrix product per layer.

    Points of every task are rows of one matrix, so a layer is one ``addmm`` and the graph holds no
    reshapes. The ReLU works in place: ``addmm``'s backward needs its inputs, not its output.
    """
    depth = n_layers(weights)
    h = x
    for i in range(depth):
        h = torch.addmm(weights[f"b{i}"], h, weights[f"w{i}"])
        if i < depth - 1:
            h = torch.relu_(h)
    return h


def class_means(values: torch.Tensor, labels: torch.Tensor, ways: int) -> torch.Tensor:
    """Mean of ``values`` ``[tasks, points, d]`` over the points of each class: ``[tasks, ways, d]``."""
    one_hot = F.one_hot(labels, ways).to(values.dtype)
    return torch.bmm(one_hot.transpose(1, 2), values) / one_hot.sum(dim=1).unsqueeze(-1)


def cnp_outputs(weights: Weights, support_x, support_y, query_x, ways: int | None = None) -> torch.Tensor:
    """Predictions ``[tasks, query points, 1]`` (regression) or logits ``[tasks, query points, ways]``.

    ``weights`` are the shared ones, without a task dimension: a CNP adapts no weight.
    """
    encoder, decoder = part(weights, "enc_"), part(weights, "dec_")
    sx, qx = support_x.flatten(2), query_x.flatten(2)
    tasks, points = qx.shape[:2]
    if ways is None:
        observations = torch.cat([sx, support_y], dim=-1)
        encoded = shared_forward(encoder, observations.view(-1, observations.shape[-1]))
        r = encoded.view(tasks, -1, encoded.shape[-1]).mean(dim=1, keepdim=True)
        pairs = torch.cat([qx, r.expand(-1, points, -1)], dim=-1)
        return shared_forward(decoder, pairs.view(tasks * points, -1)).view(tasks, points, 1)
    encoded = shared_forward(encoder, sx.reshape(-1, sx.shape[-1]))
    r = class_means(encoded.view(tasks, -1, encoded.shape[-1]), support_y, ways)
    pairs = torch.cat([qx.unsqueeze(2).expand(-1, -1, ways, -1), r.unsqueeze(1).expand(-1, points, -1, -1)], dim=-1)
    return shared_forward(decoder, pairs.view(tasks * points * ways, -1)).view(tasks, points, ways)
