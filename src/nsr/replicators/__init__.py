"""The three replicator architectures of the paper, over whole populations ``[P, W]``.

>>> from nsr.replicators import Weightwise
>>> rep = Weightwise(width=2, depth=2)
>>> w = rep.identity_genome()
>>> bool((rep.apply(w, w) == w).all())
True
"""
import importlib

from nsr.replicators.aggregating import Aggregating
from nsr.replicators.base import ACTIVATIONS, ORTHOGONAL, Replicator, mse
from nsr.replicators.recurrent import Recurrent
from nsr.replicators.weightwise import Weightwise

ARCHITECTURES = {"weightwise": Weightwise, "aggregating": Aggregating, "recurrent": Recurrent}


def from_config(config: dict) -> Replicator:
    """Rebuild a replicator from ``{"class_path": ..., "init_args": {...}}``.

    ``class_path`` is a short name (``weightwise``, ``aggregating``, ``recurrent``), a built-in's
    public path (``nsr.replicators.Weightwise``) or the dotted import path of any subclass of
    :class:`Replicator` (e.g. ``mypackage.MyReplicator``); anything else is a one-line ``ValueError``.
    """
    path = config.get("class_path", "")
    if not isinstance(path, str) or not path:
        raise ValueError(f"class_path must name a replicator class, got {path!r}")
    module, _, name = path.rpartition(".")
    if not module or module == "nsr.replicators":
        if name.lower() not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {path!r}: expected one of {', '.join(ARCHITECTURES)} "
                             f"or the import path of a Replicator subclass")
        cls = ARCHITECTURES[name.lower()]
    else:
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"class_path {path!r} does not import: {type(e).__name__}: {e}") from None
        if not (isinstance(cls, type) and issubclass(cls, Replicator)):
            raise ValueError(f"class_path {path!r} is not a subclass of nsr.replicators.Replicator")
    return cls(**config.get("init_args", {}))


__all__ = ["Replicator", "Weightwise", "Aggregating", "Recurrent", "ARCHITECTURES", "ACTIVATIONS", "ORTHOGONAL", "from_config", "mse"]
