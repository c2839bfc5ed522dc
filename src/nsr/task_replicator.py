"""TaskWeightwise: a weightwise replicator with a secondary task beside its replication interface.

Defined with the public extension API (``nsr.replicators.Replicator``: ``shapes``, ``samples``,
``forward``, ``apply`` in torch; ``docs/tasks.md``). The network has two input groups and two
output groups that share every hidden layer::

    inputs   [w_k, layer_id, cell_id, weight_id | task x_1 .. x_n]     (4 + n)
    hidden   width -> ... -> width                                    (depth layers, shared)
    outputs  [new w_k | task y_1 .. y_m]                               (1 + m)

A replication sample feeds zeros to the task inputs and reads only the first output; a task sample
feeds zeros to the four replication inputs and reads only the task outputs. So ``forward``,
``samples`` and ``apply`` are the replication interface (self-application, fixpoint classes,
self-training, attack, learn_from are the usual ones); :meth:`task_forward` is the task interface.
The genome is every weight, task weights included: a fixpoint must reproduce those too.

>>> rep = TaskWeightwise(task_inputs=2, task_outputs=1)
>>> rep.num_weights                      # 6*2 + 2*2 + 2*2
20
>>> w = rep.identity_genome()
>>> bool((rep.apply(w, w) == w).all())
True
"""
from __future__ import annotations

import torch

from nsr.replicators import Replicator
from nsr.replicators.weightwise import position_ids, weightwise_inputs
from nsr.replicators.base import ACTIVATIONS, activate, check_choice, check_positive_int

REPLICATION_INPUTS = 4  # w_k, layer_id, cell_id, weight_id


class TaskWeightwise(Replicator):
    """Weightwise replicator with ``task_inputs`` extra input units and ``task_outputs`` extra
    output units sharing the ``depth`` hidden layers of ``width`` units (no biases)."""

    def __init__(self, task_inputs: int = 2, task_outputs: int = 1, width: int = 2, depth: int = 2,
                 activation: str = "linear"):
        self.task_inputs = check_positive_int("task_inputs", task_inputs)
        self.task_outputs = check_positive_int("task_outputs", task_outputs)
        self.width = check_positive_int("width", width)
        self.depth = check_positive_int("depth", depth)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.shapes = ([(REPLICATION_INPUTS + task_inputs, width)] + [(width, width)] * (depth - 1)
                       + [(width, 1 + task_outputs)])

    @classmethod
    def for_task(cls, task, **kwargs) -> "TaskWeightwise":
        """The task replicator sized for ``task`` (an ``nsr.tasks.Task``)."""
        return cls(task_inputs=task.num_inputs, task_outputs=task.num_outputs, **kwargs)


    # ---- the replication interface ---------------------------------------------------------------
    def identifiers(self, device=None) -> torch.Tensor:
        """``[W, 3]`` normalised (layer_id, cell_id, weight_id) of every genome position (as Weightwise)."""
        return position_ids(self.shapes, device)

    def encode(self, b: torch.Tensor) -> torch.Tensor:
        """``[P, W, 4]`` replication inputs asking for every weight of genomes ``b`` ``[P, W]``."""
        return weightwise_inputs(b, self.shapes)

    def samples(self, w):
        self.check_weights(w)
        return self.encode(w), w[:, :, None].clone()  # [P, W, 4], [P, W, 1]

    def _hidden(self, first: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Hidden activations after the shared layers, given the first layer's pre-activations."""
        h = activate(self.activation, first)
        for K in self.kernels(w)[1:-1]:
            h = activate(self.activation, torch.bmm(h, K))  # [P, S, width]
        return h

    def forward(self, w, x):
        """Replication outputs ``[P, S, 1]`` of networks ``w`` on replication inputs ``x`` ``[P, S, 4]``
        (the task inputs are zero: only the first four rows of the input kernel take part)."""
        Ks = self.kernels(w)
        h = self._hidden(torch.bmm(x, Ks[0][:, :REPLICATION_INPUTS]), w)
        return activate(self.activation, torch.bmm(h, Ks[-1][:, :, :1]))  # [P, S, 1]

    # apply (self-application): Replicator's default, the outputs on the genome's samples, one per weight

    # ---- the task interface ----------------------------------------------------------------------
    def task_forward(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Task outputs ``[P, B, task_outputs]`` of networks ``w`` ``[P, W]`` on task inputs ``x``
        ``[B, task_inputs]`` (the same batch for every particle) or ``[P, B, task_inputs]``
        (the replication inputs are zero)."""
        Ks = self.kernels(w)
        K0 = Ks[0][:, REPLICATION_INPUTS:]  # [P, n, width]
        first = torch.matmul(x, K0) if x.dim() == 2 else torch.bmm(x, K0)  # [P, B, width]
        h = self._hidden(first, w)
        return activate(self.activation, torch.bmm(h, Ks[-1][:, :, 1:]))  # [P, B, m]

    def identity_genome(self) -> torch.Tensor:
        """``[1, W]``: every kernel's [0, 0] is 1, all else 0: copies w_k, reproduces any genome
        (a non-trivial fixpoint) and answers 0 to every task input."""
        w = torch.zeros(1, self.num_weights)
        w[0, self.offsets] = 1.0
        return w





class PlainTaskNetwork(Replicator):
    """The task path of a :class:`TaskWeightwise` alone: a plain network ``task_inputs -> width ->
    ... -> task_outputs`` (no biases, glorot-uniform init, no replication units), the reference a
    task replicator is compared with. Population ``[P, W]`` as everywhere in nsr."""

    def __init__(self, task_inputs: int = 2, task_outputs: int = 1, width: int = 2, depth: int = 2,
                 activation: str = "linear"):
        self.task_inputs = check_positive_int("task_inputs", task_inputs)
        self.task_outputs = check_positive_int("task_outputs", task_outputs)
        self.width = check_positive_int("width", width)
        self.depth = check_positive_int("depth", depth)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.shapes = [(task_inputs, width)] + [(width, width)] * (depth - 1) + [(width, task_outputs)]


    def task_forward(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``[P, B, task_outputs]`` on task inputs ``x`` ``[B, n]`` or ``[P, B, n]``."""
        h = x
        for K in self.kernels(w):
            h = activate(self.activation, torch.matmul(h, K) if h.dim() == 2 else torch.bmm(h, K))
        return h


__all__ = ["TaskWeightwise", "PlainTaskNetwork", "REPLICATION_INPUTS"]
