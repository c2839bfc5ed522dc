"""The LightningModules of nsr. All are :class:`PopulationModule` s: they expose ``replicator``,
``epsilon``, ``population`` (this process's ``[P_local, W]`` genomes, detached),
``gather_population()`` (the whole ``[P, W]``), ``particle_ids``, ``gather_particle_ids()``,
``particle_loss``, ``time_unit`` and ``kind``, which is all that ``nsr.callbacks`` and ``nsr.cli``
rely on (see :mod:`nsr.modules.population`). ``DenseModule`` is the dense reference network of the
organism experiments, not a population."""
from nsr.modules.organism import DenseModule, OrganismModule
from nsr.modules.population import PopulationModule
from nsr.modules.replicator import PopulationSGD, ReplicatorModule
from nsr.modules.soup import SoupModule

__all__ = ["PopulationModule", "ReplicatorModule", "PopulationSGD", "SoupModule", "OrganismModule", "DenseModule"]
