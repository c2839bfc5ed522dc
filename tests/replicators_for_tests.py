"""A fourth architecture, written outside nsr (the example of docs/extending.md, verbatim)."""
import torch

from nsr.kernels import MLPKernel
from nsr.replicators import Replicator
from nsr.replicators.base import activate, check_positive_int


class Positional(Replicator):
    """Weight k is asked for as (w_k, k / (W - 1)), its value and its position in the genome;
    dense layers 2 -> width -> 1 without biases answer the new w_k."""

    def __init__(self, width: int = 3, activation: str = "linear"):
        self.width = check_positive_int("width", width)
        self.activation = activation
        self.shapes = [(2, width), (width, 1)]  # the genome: two kernels, row-major

    def samples(self, w):
        """One sample per weight: inputs [P, W, 2], targets [P, W, 1] (the genome itself)."""
        P, W = w.shape
        position = torch.linspace(0.0, 1.0, W, dtype=w.dtype, device=w.device).expand(P, W)
        return torch.stack([w, position], dim=2), w[:, :, None].clone()

    def forward(self, w, x):
        """Outputs [P, S, 1] of the networks w [P, W] on inputs x [P, S, 2]."""
        h = x
        for K in self.kernels(w):  # [P, inputs, outputs] views of the genome
            h = activate(self.activation, torch.bmm(h, K))
        return h

    # apply (self-application) is the default: the outputs on the samples, one per weight.


class FusedPositional(Positional):
    """The same network trained by the fused MLP kernels (samples still come from ``samples``)."""

    def __init__(self, width: int = 3, activation: str = "linear"):
        super().__init__(width, activation)
        self.kernel = MLPKernel(self.shapes, activation, num_samples=self.num_weights)
