"""Workers beyond one process: a planner's workers as Ray actors (issue 14, item 2).

================================  ==============================================================
:mod:`~aster_nb.actors.remote`    :class:`RemoteWorker`: the worker as the driver's planner
                                  sees it; syncs with its actor, restarts it if it dies
:mod:`~aster_nb.actors.host`      :class:`WorkerHost`: the actor, a real worker restored from
                                  a snapshot of the run's store
:mod:`~aster_nb.actors.journal`   what the actor writes, applied by the driver in order (the
                                  store keeps one writer; events follow their writes)
:mod:`~aster_nb.actors.service`   the run's one Ray executor in an actor, shared by the driver
                                  and every worker actor
================================  ==============================================================

Choose it with ``Run.create(..., executor="ray", worker_actors=True)`` or
``python -m aster_nb run TASK --executor ray --worker-actors``. Ray is imported only when
a run with worker actors starts.
"""

from .remote import RemoteWorker, WorkerLost
from .service import ServiceExecutor

__all__ = ["RemoteWorker", "ServiceExecutor", "WorkerLost"]
