"""nsr: neural self-replication. Replicators whose weights, fed to themselves, reproduce those
same weights, studied alone and in soups of many interacting networks.

The science layer (``nsr.replicators``, ``nsr.fixpoints``, ``nsr.training``, ``nsr.soup``) is pure
torch over populations ``[P, W]``; the Lightning layer (``nsr.modules``, ``nsr.data``,
``nsr.callbacks``, ``nsr.cli``) trains and watches them.
"""
from nsr.fixpoints import FixpointClass, classify, distance
from nsr.replicators import Aggregating, Recurrent, Replicator, Weightwise

__version__ = "0.1.0"


def load_population(path):
    """``(replicator, weights [P, W])`` from any checkpoint nsr writes."""
    from nsr.checkpoint import load_population as _load

    return _load(path)


__all__ = ["Replicator", "Weightwise", "Aggregating", "Recurrent", "FixpointClass", "classify", "distance",
           "load_population", "__version__"]
