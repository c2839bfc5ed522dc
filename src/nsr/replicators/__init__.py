"""The three replicator architectures of the paper, over whole populations ``[P, W]``.

>>> from nsr.replicators import Weightwise
>>> rep = Weightwise(width=2, depth=2)
>>> w = rep.identity_genome()
>>> bool((rep.apply(w, w) == w).all())
True
"""
from nsr.replicators.aggregating import Aggregating
from nsr.replicators.base import ACTIVATIONS, Replicator, mse
from nsr.replicators.recurrent import Recurrent
from nsr.replicators.weightwise import Weightwise

ARCHITECTURES = {"weightwise": Weightwise, "aggregating": Aggregating, "recurrent": Recurrent}


def from_config(config: dict) -> Replicator:
    """Rebuild a replicator from ``{"class_path": ..., "init_args": {...}}`` (or a short name)."""
    path = config.get("class_path", "")
    name = path.rsplit(".", 1)[-1].lower()
    if name not in ARCHITECTURES:
        cls = _import_replicator(path)
        if cls is None:
            raise ValueError(f"unknown architecture {path!r}: expected one of {', '.join(ARCHITECTURES)}")
        return cls(**config.get("init_args", {}))
    return ARCHITECTURES[name](**config.get("init_args", {}))


def _import_replicator(path: str):
    """The Replicator subclass at the full import path ``path`` (e.g. ``nsr.organism.Particle``), or None."""
    import importlib

    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name) if module else None
    except (ImportError, AttributeError, ValueError):
        return None
    return cls if isinstance(cls, type) and issubclass(cls, Replicator) else None


__all__ = ["Replicator", "Weightwise", "Aggregating", "Recurrent", "ARCHITECTURES", "ACTIVATIONS", "from_config", "mse"]
