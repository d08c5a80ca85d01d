"""Joining a Ray cluster and running a list of tasks on it.

``connect("local")`` starts a Ray instance on this machine (no dashboard; Ray 2.60 turns a loopback node address
into the machine's own and listens on all interfaces, with its token authentication on); ``connect("HOST:PORT")``
joins a running cluster (``ray start --head`` on one machine, ``ray start --address HOST:PORT`` on the others; see
docs/scale-out.md). Every node needs the same checkout with its environments at the same path and the data
folders (datasets, caches, outputs) on storage all nodes share: tasks read and write files by path.

:func:`run_tasks` submits one Ray task per item with the resources of :class:`TaskResources`. A task whose
worker process dies (killed, out of memory, node preempted) is retried by Ray up to ``max_retries`` times; a
task that raises one of the retryable errors (a Blender process that crashed, an I/O error) is retried as well.
The work itself is resumable (files appear only complete), so a retry redoes only what was not finished.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["TaskResources", "connect", "active", "shutdown", "resources", "run_tasks", "ShardError",
           "add_ray_arguments", "connect_from_args"]


class ShardError(RuntimeError):
    """A task failed after its retries (message names the shard and the cause)."""


@dataclass
class TaskResources:
    """What one task asks of the cluster (Ray schedules it on a node that has it free)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 3  # retries after the worker died or a retryable error was raised
    batch: Optional[int] = None  # frames or photos per task (None: each sharded function's default)


_STATE: dict = {"resources": TaskResources(), "started_here": False}


def connect(address: str, num_cpus: Optional[int] = None, task: Optional[TaskResources] = None) -> None:
    """Start (``"local"``) or join (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``) a Ray cluster for this process.

    ``num_cpus``: CPUs of a local instance (default: all of this machine's); ``task``: the resources each task
    asks for (default 1 CPU, no GPU, 3 retries)."""
    import ray

    if task is not None:
        _STATE["resources"] = task
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address == "local":
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        _STATE["started_here"] = True
    else:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)


def active() -> bool:
    """True when this process is connected to a Ray cluster (the sharded paths are used); never imports Ray."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def shutdown() -> None:
    """Leave the cluster (stops the instance :func:`connect` started locally)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    _STATE["started_here"] = False


def resources() -> TaskResources:
    """The per-task resources set by :func:`connect`."""
    return _STATE["resources"]


def run_tasks(fn: Callable, items: Sequence[tuple], names: Sequence[str], desc: str = "tasks",
              progress: bool = True, retry_exceptions: Sequence[type] = (), task: Optional[TaskResources] = None,
              on_result: Optional[Callable[[int, Any], None]] = None) -> list:
    """Run ``fn(*item)`` for every item as a Ray task; returns the results in the order of ``items``.

    Args:
        fn: a module-level function (importable on every node).
        items: the argument tuples, one task each; ``names``: what each task is called in errors.
        retry_exceptions: exception types that make Ray retry the task (the worker dying always does).
        task: resources per task (default: those set by :func:`connect`).
        on_result: called with ``(index, result)`` as each task finishes (in completion order).

    Raises:
        ShardError: a task failed after ``max_retries`` retries (the first one to fail; the others are
            cancelled).
    """
    import ray
    from ray.exceptions import RayError, RayTaskError

    from ..progress import progress_bar

    res = task or resources()
    remote = ray.remote(fn).options(num_cpus=res.num_cpus, num_gpus=res.num_gpus, max_retries=res.max_retries,
                                    retry_exceptions=list(retry_exceptions) or False)
    refs = [remote.remote(*item) for item in items]
    index = {r: i for i, r in enumerate(refs)}
    out: list = [None] * len(refs)
    pending = list(refs)
    bar = progress_bar(total=len(refs), desc=desc, unit="task", disable=not progress)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=None)
            for r in done:
                i = index[r]
                try:
                    out[i] = ray.get(r)
                except RayTaskError as e:  # the task's own exception, after its retries
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    retried = isinstance(cause, tuple(retry_exceptions)) and res.max_retries > 0
                    raise ShardError(f"{desc} task {names[i]} failed"
                                     + (f" after {res.max_retries} retries" if retried else "")
                                     + f": {type(cause).__name__}: {cause}") from None
                except RayError as e:  # the worker died on every attempt
                    raise ShardError(f"{desc} task {names[i]} failed after {res.max_retries} retries: "
                                     f"{type(e).__name__}: {e}") from None
                if on_result is not None:
                    on_result(i, out[i])
                bar.update(1)
    except BaseException:
        for r in pending:
            ray.cancel(r, force=True)
        raise
    finally:
        bar.close()
    return out


def add_ray_arguments(p) -> None:
    """``--ray ADDRESS|local`` and the per-task resources, for the commands that can run sharded."""
    p.add_argument("--ray", default=None, metavar="ADDRESS|local",
                   help="run rendering, database building and localization as Ray tasks: 'local' starts Ray on "
                        "this machine for this command, HOST:PORT joins a cluster (default: no Ray, one machine)")
    p.add_argument("--ray-task-cpus", type=float, default=1.0, help="CPUs each Ray task asks for (default 1)")
    p.add_argument("--ray-task-gpus", type=float, default=0.0,
                   help="GPUs each Ray task asks for (default 0; e.g. 1 for Cycles on a GPU per Blender)")
    p.add_argument("--ray-max-retries", type=int, default=3, help="retries of a failed or preempted task")
    p.add_argument("--ray-batch", type=int, default=None, help="frames or photos per task (default: 8 frames to "
                   "render, 16 reference frames to a database, 5 photos to localize); larger on big clusters")


def connect_from_args(args) -> bool:
    """Connect when ``args.ray`` is set (see :func:`add_ray_arguments`); returns whether it did."""
    if not getattr(args, "ray", None):
        return False
    if args.ray_task_cpus <= 0 or args.ray_task_gpus < 0 or args.ray_max_retries < 0 or \
            (args.ray_batch is not None and args.ray_batch < 1):
        raise ValueError("--ray-task-cpus and --ray-batch must be positive, --ray-task-gpus and --ray-max-retries "
                         "not negative")
    connect(args.ray, task=TaskResources(args.ray_task_cpus, args.ray_task_gpus, args.ray_max_retries,
                                         args.ray_batch))
    return True
