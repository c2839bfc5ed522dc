"""The LightningModules of nsr. Each exposes ``replicator``, ``epsilon``, ``population`` (this
process's ``[P_local, W]`` genomes, detached), ``gather_population()`` (the whole ``[P, W]``) and
``particle_ids``, which is all the callbacks in ``nsr.callbacks`` rely on."""
from nsr.modules.replicator import PopulationSGD, ReplicatorModule
from nsr.modules.soup import SoupModule
from nsr.modules.task import TaskReplicatorModule

__all__ = ["ReplicatorModule", "PopulationSGD", "SoupModule", "TaskReplicatorModule"]
