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
        raise ValueError(f"unknown architecture {path!r}: expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](**config.get("init_args", {}))


__all__ = ["Replicator", "Weightwise", "Aggregating", "Recurrent", "ARCHITECTURES", "ACTIVATIONS", "from_config", "mse"]
