"""Scale-out on a Ray cluster: rendering, feature databases, batch localization and training as Ray tasks.

Behind ``--ray ADDRESS|local`` of the CLIs (see :mod:`.cluster`); without it nothing here is imported and every
command runs on one machine as before. Each sharded function takes the arguments of its single-machine
counterpart and produces the same result:

- :func:`.render.render_dataset` -- ``blender_runner.render_dataset``: frame ranges rendered by Blender
  processes in parallel, merged into one dataset.
- :func:`.features.build_database` -- ``database.build_database``: reference frames in chunks, merged with
  digest checks.
- :func:`.localize.localize_photos` -- ``localize_photos.localize_photos``: photos in chunks, the method opened
  once per task.
- :mod:`.train` -- regression training with Ray Train's ``TorchTrainer`` (DDP), checkpoints the single-machine
  ``regression train --resume`` continues.

See docs/scale-out.md for starting a cluster and the plan for many machines.
"""
from .cluster import ShardError, TaskResources, active, connect, shutdown

__all__ = ["ShardError", "TaskResources", "active", "connect", "shutdown"]
