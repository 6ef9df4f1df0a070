"""An experiment's trainings as tasks: on Ray (this machine or a cluster) or in this process.

An experiment states its trainings as *chains* (:data:`Chain`): generators that yield rounds
of :class:`Training` and receive each round's results before they yield the next. The chains
are the experiment's dependency graph: a round waits for the rounds before it in its chain
(the ν search's next round waits for the SI of the last; the chosen ν's seeds wait for the
search), and chains are independent of each other (WT and DA do not wait for the search).
:func:`run_chains` runs every chain's rounds on an executor, as soon as their dependencies
are done:

* :class:`RayExecutor`: every training a Ray task that declares its CPUs and GPUs. Local by
  default (``ray.init`` with this machine's cores, or ``workers`` of them), a cluster by
  ``address`` (or ``RAY_ADDRESS``). Usage statistics are off (no network) and the workers'
  output stays in their logs.
* :class:`InProcess`: one training at a time in this process.

Each finished training prints one line (model, seed, ν, seconds, where it ran); a failed one
stops the experiment with :class:`TrainingFailed`, naming the model and the file that holds
its traceback. The trainings write their models to the model cache
(:func:`invreg.experiments.core.train`), where the experiment's evaluation, run afterwards in
this process, finds them: evaluation never starts before the models it reads exist.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the optional extra that brings Ray
RAY_EXTRA = "pip install 'invreg[ray]'"


@dataclass(frozen=True)
class Training:
    """One training of an experiment: one model, one seed, one ν.

    ``function(settings, *args)`` trains it (into the model cache) and returns what the
    chain needs back (a validation SI, the seconds it took, ...); it is a module-level
    function, so a Ray worker imports it by name. ``after``: the :attr:`label` of every
    training whose model this one reads or whose result decided it (the dependency edges);
    each must be finished before this one starts. ``stage``: where it sits in its chain
    (``"ν search round 1"``), for the log.
    """

    name: str
    seed: int
    nu: float
    function: Callable[..., Any]
    args: tuple = ()
    after: tuple[str, ...] = ()
    stage: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} seed {self.seed}"

    def log_folder(self, out: Path) -> Path:
        """Where its Lightning logs go (:func:`invreg.experiments.core.train`) and, when it
        fails, ``error.log`` with its traceback."""
        return Path(out) / "runs" / self.name / f"seed{self.seed}"


#: a chain of rounds: yields ``list[Training]``, receives the list of their results
Chain = Generator[list[Training], list[Any], None]


@dataclass
class Finished:
    """A training's outcome as the graph records it: its result, seconds, where it ran,
    and when it was submitted, started and finished (``time.time()`` on the machine that ran
    it for ``started``/``finished``)."""

    training: Training
    result: Any = None
    seconds: float = 0.0
    where: str = ""
    submitted: float = 0.0
    started: float = 0.0
    finished: float = 0.0


@dataclass
class Graph:
    """What :func:`run_chains` ran: every training by label, in the order they finished."""

    done: dict[str, Finished] = field(default_factory=dict)
    rounds: list[tuple[str, list[str]]] = field(default_factory=list)  # (stage, labels)

    def where(self) -> set[str]:
        return {f.where for f in self.done.values()}


class TrainingFailed(RuntimeError):
    """A training of the experiment failed; the message names the model and its log."""


class GraphError(RuntimeError):
    """A training was submitted before a training it depends on had finished."""


def _task(training: Training, settings, threads: int, where: str) -> Finished:
    """Run one training (in a Ray worker or in this process) with ``threads`` torch threads;
    on failure write its traceback to ``error.log`` in its log folder and raise."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.time()
    try:
        result = training.function(settings, *training.args)
    except BaseException:
        folder = training.log_folder(settings.out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "error.log").write_text(traceback.format_exc())
        raise
    finally:
        torch.set_num_threads(previous)
    finished = time.time()
    return Finished(training, result, finished - started, where, 0.0, started, finished)


def _silent(message: str) -> None:
    """The progress callback of a task: its lines stay in its worker."""


class InProcess:
    """Trains one model at a time in this process, in submission order."""

    name = "in-process"

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self._queue: list[tuple[int, Training, Any]] = []
        self._count = 0

    def submit(self, training: Training, settings) -> int:
        self._count += 1
        self._queue.append((self._count, training, settings))
        return self._count

    def wait(self, handles: list[int]) -> tuple[int, Finished]:
        import torch

        index = next(i for i, item in enumerate(self._queue) if item[0] in handles)
        handle, training, settings = self._queue.pop(index)
        threads = self.threads or torch.get_num_threads()
        try:
            return handle, _task(training, settings, threads, "this process")
        except Exception as error:
            raise _failed(training, settings, error) from error

    def cancel(self, handles: list[int]) -> None:
        self._queue = [item for item in self._queue if item[0] not in handles]

    def close(self) -> None:
        pass


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def init_ray(address: str | None = None, workers: int | None = None,
             gpus: float | None = None) -> bool:
    """Connect to Ray quietly: usage statistics off (no network), no dashboard, the workers'
    output in their log files, Ray's own logging at errors only. ``address`` (or
    ``RAY_ADDRESS``) joins a cluster; else a local instance with ``workers`` CPUs (default:
    this machine's cores), ``gpus`` GPUs (default: the ones Ray finds) and its workers at
    niceness 0 (``RAY_worker_niceness``; Ray's default is 15). An instance this
    process already joined is reused. Returns whether this call started the connection
    (then :func:`shutdown_ray` is the caller's)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 configure_logging=True)
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        quiet.pop("include_dashboard")  # the cluster's head decides
        ray.init(address=address, **quiet)
    else:
        # Ray starts its workers at niceness 15: on a machine shared with other work the
        # trainings would run behind it; they are this run's work (override: set it)
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(num_cpus=workers, num_gpus=gpus, **quiet)
    return True


def shutdown_ray() -> None:
    import ray

    ray.shutdown()


class RayExecutor:
    """Every training a Ray task with ``cpus_per_training`` CPUs (and torch threads) and
    ``gpus_per_training`` GPUs. See :func:`init_ray` for ``address`` and ``workers``."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 cpus_per_training: int = 1, gpus_per_training: float = 0.0):
        import ray

        self.address = address
        self.cpus, self.gpus = cpus_per_training, gpus_per_training
        self._owner = init_ray(address, workers, None)
        if gpus_per_training:
            have = ray.cluster_resources().get("GPU", 0.0)
            if have < gpus_per_training:
                self.close()
                raise ValueError(f"gpus_per_training: each training asks for "
                                 f"{gpus_per_training:g} GPU but the Ray cluster has {have:g}; "
                                 "pass 0 or join a cluster with GPUs (--address)")
        self._remote = ray.remote(_ray_task).options(num_cpus=cpus_per_training,
                                                     num_gpus=gpus_per_training, max_retries=0)
        self._trainings: dict[Any, tuple[Training, Any]] = {}

    def submit(self, training: Training, settings) -> Any:
        handle = self._remote.remote(training, settings, self.cpus)
        self._trainings[handle] = (training, settings)
        return handle

    def wait(self, handles: list[Any]) -> tuple[Any, Finished]:
        import ray

        ready, _ = ray.wait(handles, num_returns=1)
        handle = ready[0]
        training, settings = self._trainings.pop(handle)
        try:
            return handle, ray.get(handle)
        except Exception as error:
            cause = getattr(error, "cause", None) or error
            raise _failed(training, settings, cause) from None

    def cancel(self, handles: list[Any]) -> None:
        import ray

        for handle in handles:
            ray.cancel(handle, force=True)
            self._trainings.pop(handle, None)

    def close(self) -> None:
        if self._owner:
            shutdown_ray()
            self._owner = False


def _ray_task(training: Training, settings, threads: int) -> Finished:
    import ray

    node = ray.get_runtime_context().get_node_id()[:8]
    return _task(training, settings, threads, f"{socket.gethostname()} (node {node})")


def _failed(training: Training, settings, error: BaseException) -> TrainingFailed:
    log = training.log_folder(settings.out)
    text = [line.strip() for line in str(error).splitlines() if line.strip()]
    first = text[0] if text else ""
    first = first if len(first) <= 200 else first[:197] + "..."
    return TrainingFailed(
        f"training {training.name} (seed {training.seed}, ν = {training.nu:g}) failed: "
        f"{type(error).__name__}: {first}; its log: {log} (error.log: the "
        "traceback); the experiment stopped, models finished so far are in the cache")


def run_chains(chains: list[Chain], settings, executor, progress: Callable[[str], None] = print,
               bar=None) -> Graph:
    """Run every chain's rounds on ``executor``; a round is submitted when the one before it
    in its chain has finished (its results are sent back into the chain). Each finished
    training prints one line through ``progress``; ``bar`` (a tqdm bar, optional) counts the
    trainings. Returns the :class:`Graph` of what ran.

    Raises:
        TrainingFailed: a training failed; the others are cancelled.
        GraphError: a training's ``after`` names a training that has not finished.
    """
    graph = Graph()
    task_settings = dataclasses.replace(settings, progress=_silent)
    active: dict[Any, tuple[int, Training, float]] = {}
    waiting: dict[int, list[str]] = {}  # chain -> labels of its running round
    results: dict[int, dict[str, Any]] = {}

    def advance(index: int, sent: list | None) -> None:
        while True:
            try:
                round_ = next(chains[index]) if sent is None else chains[index].send(sent)
            except StopIteration:
                return
            if round_:
                break
            sent = []
        labels = [t.label for t in round_]
        graph.rounds.append((round_[0].stage, labels))
        waiting[index], results[index] = labels, {}
        for training in round_:
            missing = [label for label in training.after if label not in graph.done]
            if missing:
                raise GraphError(f"{training.label} depends on {missing}, not finished")
            active[executor.submit(training, task_settings)] = (index, training, time.time())
        if bar is not None:
            bar.total = (bar.total or 0) + len(round_)
            bar.refresh()

    try:
        for index in range(len(chains)):
            advance(index, None)
        while active:
            handle, finished = executor.wait(list(active))
            index, training, submitted = active.pop(handle)
            finished.submitted = submitted
            graph.done[training.label] = finished
            results[index][training.label] = finished.result
            where = f" on {finished.where}" if finished.where else ""
            stage = f" [{training.stage}]" if training.stage else ""
            progress(f"trained {training.name} seed {training.seed} ν={training.nu:g} in "
                     f"{finished.seconds:.1f} s{where}{stage}")
            if bar is not None:
                bar.update(1)
            if len(results[index]) == len(waiting[index]):
                sent = [results[index][label] for label in waiting[index]]
                advance(index, sent)
    except BaseException:
        executor.cancel(list(active))
        for chain in chains:
            chain.close()
        raise
    return graph
