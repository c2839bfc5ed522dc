"""nsr: neural self-replication. Replicators whose weights, fed to themselves, reproduce those
same weights, studied alone and in soups of many interacting networks.

The science layer (``nsr.replicators``, ``nsr.fixpoints``, ``nsr.training``, ``nsr.soup``) is pure
torch over populations ``[P, W]``; the Lightning layer (``nsr.modules``, ``nsr.data``,
``nsr.callbacks``, ``nsr.cli``) trains and watches them. The names below are imported on first
use, so ``import nsr`` (and the ``nsr`` command's start-up) does not pay for torch.
"""
import importlib

__version__ = "0.1.0"

_LAZY = {"Replicator": "nsr.replicators", "Weightwise": "nsr.replicators", "Aggregating": "nsr.replicators",
         "Recurrent": "nsr.replicators", "FixpointClass": "nsr.fixpoints", "classify": "nsr.fixpoints",
         "distance": "nsr.fixpoints"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nsr' has no attribute {name!r}")


def load_population(path):
    """``(replicator, weights [P, W])`` from any checkpoint nsr writes."""
    from nsr.checkpoint import load_population as _load

    return _load(path)


__all__ = ["Replicator", "Weightwise", "Aggregating", "Recurrent", "FixpointClass", "classify", "distance",
           "load_population", "__version__"]
