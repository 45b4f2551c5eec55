"""Run a sweep's cells on this machine (a process pool) or on Ray, idempotently.

Each cell is an ordinary run directory. What happens to a cell depends only on what its directory holds,
so re-running a sweep is always safe:

- ``finished`` with at least the requested steps: skipped;
- interrupted (a checkpoint, state not ``failed``): resumed from its checkpoint, or extended when the
  sweep now asks for more steps;
- ``failed``, or started without a checkpoint: run again from the start;
- empty: run.

A directory whose saved config differs from the cell's (other than ``total_steps``) is never touched: the
sweep stops before starting anything and says which field differs. A failing cell is recorded with its
error and does not stop the others. ``sweep.json`` in the out folder summarises the last invocation.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing import connection, get_context
from pathlib import Path
from typing import Callable, Optional

from tqdm import tqdm

from .. import runs
from ..errors import SymrlError, first_line
from .spec import Cell, Sweep, budget, is_rlhf

OUTCOMES = ("done", "skipped", "resumed", "failed")
IGNORED_FIELDS = {"total_steps", "iterations", "progress", "tensorboard", "info"}  # may differ: results are the same


@dataclass
class SweepSummary:
    name: str
    cells: int
    outcomes: dict[str, str] = field(default_factory=dict)  # cell key -> done/skipped/resumed/failed
    errors: dict[str, str] = field(default_factory=dict)  # cell key -> one-line error
    seconds: float = 0.0
    stopped: Optional[str] = None  # why the sweep stopped before every cell had an outcome (e.g. interrupted)

    def count(self, outcome: str) -> int:
        return sum(1 for value in self.outcomes.values() if value == outcome)

    def line(self) -> str:
        counts = ", ".join(f"{outcome} {self.count(outcome)}" for outcome in OUTCOMES)
        return f"sweep {self.name}: {self.cells} cells: {counts} ({self.seconds:.0f} s)"

    def to_dict(self) -> dict:
        return {"name": self.name, "cells": self.cells, "counts": {o: self.count(o) for o in OUTCOMES},
                "outcomes": self.outcomes, "errors": self.errors, "seconds": round(self.seconds, 1),
                "stopped": self.stopped}


# -- what a cell's directory asks for -------------------------------------------------------------------


def _saved_config(run_dir: Path, cell: Cell) -> dict:
    """The config a run directory holds, as a dict, validated and with the defaults of fields it predates."""
    return type(cell.config).from_file(run_dir / runs.CONFIG).to_dict()


def plan(run_dir: Path, cell: Cell) -> str:
    """'skip', 'resume', 'restart' or 'new' for this cell, from what ``run_dir`` holds."""
    if not runs.holds_run(run_dir):
        return "new"
    state = runs.read_status(run_dir).get("state")
    checkpoint = (run_dir / runs.CHECKPOINT).is_file()
    if state == "finished" and (run_dir / runs.CONFIG).is_file():
        saved = _saved_config(run_dir, cell)
        if saved.get(cell.config.BUDGET, 0) >= budget(cell.config):
            return "skip"
        return "resume" if checkpoint else "restart"
    if state != "failed" and checkpoint:
        return "resume"
    return "restart"


def check_compatible(sweep: Sweep) -> None:
    """Refuse, before anything runs, an ``out`` folder that cannot be made and directories that hold a run of a
    different config."""
    runs.check_folder(sweep.out, "a folder for the sweep's runs", "`out`")
    for cell in sweep.cells:
        run_dir = sweep.run_dir(cell)
        if not (run_dir / runs.CONFIG).is_file():
            continue
        saved = _saved_config(run_dir, cell)
        wanted = cell.config.to_dict()
        different = sorted(k for k in wanted if k not in IGNORED_FIELDS and saved.get(k) != wanted[k])
        if different:
            k = different[0]
            raise SymrlError(f"{run_dir} holds a run with a different config ({k}: {saved.get(k)!r} there, "
                             f"{wanted[k]!r} in the sweep); use another `out` folder or delete that directory")


# -- one cell, in a worker ------------------------------------------------------------------------------


def run_cell(run_dir: str, config: dict, labels: dict, threads: int) -> dict:
    """Train one cell (a Gymnasium or a language-model run); never raises for a failing run (the error is
    returned). Top-level for pickling."""
    import torch  # noqa: PLC0415

    if threads > 0:
        torch.set_num_threads(threads)
    path = Path(run_dir)
    if is_rlhf(config):
        from ..rlhf.config import RLHFConfig  # noqa: PLC0415

        cfg = RLHFConfig(**config)
    else:
        from ..config import Config  # noqa: PLC0415

        cfg = Config(**config)
    # two sweeps over one ``out`` (or one started twice, or a `symrl train --resume` of the cell) must not train,
    # restart or resume the same cell at once; the trainer takes the same lock again inside this process
    lock = runs.RunLock(path)
    if not lock.acquire(blocking_error=False):
        return {"outcome": "failed", "seconds": 0.0,
                "error": "another symrl process is running this cell now; run this sweep again once it has finished"}
    try:
        return _run_locked_cell(path, cfg, labels)
    finally:
        lock.release()


def _run_locked_cell(path: Path, cfg, labels: dict) -> dict:
    action = plan(path, Cell(key="", labels=labels, config=cfg))
    outcome = {"skip": "skipped", "resume": "resumed"}.get(action, "done")
    start = time.time()
    if action == "skip":
        return {"outcome": outcome, "seconds": 0.0}
    try:
        runs.atomic_write_text(path / runs.LABELS, json.dumps(labels, indent=1))
        steps, final_return = (_train_rlhf if is_rlhf(cfg) else _train)(path, cfg, resume=action == "resume")
        return {"outcome": outcome, "final_return": final_return, "steps": steps, "seconds": time.time() - start}
    except BaseException as exc:  # noqa: BLE001 - a failing cell must not stop the sweep
        if runs.is_stop(exc):  # the run said "interrupted"; the worker stops
            raise
        message = _describe(exc)
        # a run that refuses to resume (e.g. the sweep's steps now below its progress) keeps its state: marked
        # failed, the next sweep would restart it from zero and lose what it trained
        refused = action == "resume" and isinstance(exc, SymrlError)
        if not refused and runs.read_status(path).get("state") != "failed":
            runs.write_status(path, "failed", error=message, traceback=traceback.format_exc(limit=8))
        return {"outcome": "failed", "error": message, "seconds": time.time() - start}


def _describe(exc: BaseException) -> str:
    """What a sweep's summary says about a failed cell: the exception's class and first line."""
    return f"{exc.__class__.__name__}: {first_line(exc)}" if str(exc).strip() else exc.__class__.__name__


def _train(path: Path, cfg, resume: bool) -> tuple[int, float]:
    from ..trainer import train  # noqa: PLC0415

    if resume:
        result = train(out=path, resume=True, total_steps=cfg.total_steps, progress=False)
    else:
        result = train(cfg, out=path, overwrite=True)
    return result.steps, result.final_return


def _train_rlhf(path: Path, cfg, resume: bool) -> tuple[int, float]:
    from ..rlhf.run import train_rlhf  # noqa: PLC0415

    quiet = lambda _: None  # noqa: E731
    if resume:
        trainer = train_rlhf(out=path, resume=True, iterations=cfg.iterations, log=quiet)
    else:
        trainer = train_rlhf(cfg, out=path, overwrite=True, log=quiet)
    return trainer.iteration, trainer.history_eval[-1]["mean_return"] if trainer.history_eval else float("nan")


# -- progress across the sweep ---------------------------------------------------------------------------


def _last_step(run_dir: Path) -> int:
    """The step of the last row of ``metrics.csv`` (0 when there is none); reads only the file's end."""
    path = run_dir / runs.METRICS
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            lines = handle.read().decode(errors="ignore").splitlines()
    except OSError:
        return 0
    for line in reversed(lines[1:] if len(lines) > 1 else []):
        head = line.split(",", 1)[0]
        if head.replace(".", "", 1).isdigit():
            return int(float(head))
    return 0


class Progress:
    """A bar over the steps of the whole sweep (tqdm shows steps/s and time left) with the cells done.

    Steps are read from the run directories, so the bar works the same for both backends.
    """

    def __init__(self, sweep: Sweep, enabled: bool = True):
        self.sweep = sweep
        total = sum(budget(cell.config) for cell in sweep.cells)
        self.bar = tqdm(total=total, initial=self.steps(), unit="step", disable=not enabled,
                        dynamic_ncols=True, file=sys.stderr, smoothing=0.1)

    def steps(self) -> int:
        return sum(min(_last_step(self.sweep.run_dir(cell)), budget(cell.config)) for cell in self.sweep.cells)

    def update(self, summary: SweepSummary) -> None:
        if self.bar.disable:
            return
        # never backwards: a run resumed from its checkpoint first drops the metrics rows logged after it
        self.bar.update(max(0, self.steps() - self.bar.n))
        self.bar.set_postfix_str(f"cells {len(summary.outcomes)}/{summary.cells}, failed {summary.count('failed')}")

    def close(self) -> None:
        self.bar.close()


# -- backends ---------------------------------------------------------------------------------------------


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _thread_env(threads: int) -> dict[str, str]:
    """Thread limits for the math libraries of a worker process (those the user set are kept).

    They must be in the environment before NumPy loads its BLAS: with one BLAS thread pool per core in every
    worker, concurrent runs spin on each other's cores and a sweep ran three times slower.
    """
    return {name: os.environ.get(name, str(threads)) for name in THREAD_VARIABLES}


def _record(summary: SweepSummary, key: str, result: dict) -> None:
    summary.outcomes[key] = result["outcome"]
    if result.get("error"):
        summary.errors[key] = result["error"]


def _run_local(sweep: Sweep, todo: list[Cell], workers: int, summary: SweepSummary, tick: Callable[[], None]) -> None:
    threads = _threads_per_worker(workers)
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update(_thread_env(threads))  # inherited by the workers the pool spawns
    try:
        _submit_local(sweep, todo, workers, threads, summary, tick)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


RETRIES = 3  # a cell whose worker process dies runs again (from its checkpoint) this many times, as on Ray
INTERRUPT_GRACE = 10.0  # seconds interrupted workers get to write their cells' status before they are terminated


class _CellWorker:
    """A worker process that trains the cells it is sent, one at a time, so a dead worker names its cell."""

    def __init__(self, threads: int):
        context = get_context("spawn")  # a fresh interpreter: no PyTorch thread pools copied from this process
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve_cells, args=(child, threads), name="symrl-sweep-worker")
        self.process.start()
        child.close()
        self.cell: Optional[Cell] = None

    def start(self, sweep: Sweep, cell: Cell) -> None:
        self.cell = cell
        self.conn.send((str(sweep.run_dir(cell)), cell.config.to_dict(), cell.labels))

    def result(self) -> Optional[dict]:
        """The finished cell's result, or None if the worker died (or has nothing to say yet)."""
        try:
            return self.conn.recv() if self.conn.poll() else None
        except (EOFError, OSError):
            return None

    def stop(self, now: bool) -> None:
        if not now:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()  # SIGTERM: the worker records "interrupted" (once; a second one it ignores)
            self.process.join(timeout=5)
        if self.process.is_alive():  # stuck, or it already ignores SIGTERM
            self.process.kill()
            self.process.join()
        self.conn.close()


def _serve_cells(conn, threads: int) -> None:
    with runs.signals_stop_runs(), contextlib.suppress(KeyboardInterrupt):  # a stop that came while it waited
        _serve(conn, threads)  # the sweep stops its workers with SIGTERM when a stop reached it alone


def _serve(conn, threads: int) -> None:
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the sweep is gone
            return
        if job is None:
            return
        try:
            result = run_cell(*job, threads)
        except KeyboardInterrupt:  # Ctrl-C reached this process too; the sweep stops its workers
            return
        except SystemExit as exc:  # the run's own code called sys.exit: here a failure (on Ray, its teardown)
            error = f"SystemExit: the run called sys.exit({exc.code!r})"
            runs.write_status(Path(job[0]), "failed", step=runs.read_status(Path(job[0])).get("step", 0), error=error)
            result = {"outcome": "failed", "error": error, "seconds": 0.0}
        conn.send(result)


def _submit_local(sweep: Sweep, todo: list[Cell], workers: int, threads: int, summary: SweepSummary,
                  tick: Callable[[], None]) -> None:
    """Run ``todo`` on ``workers`` worker processes. A cell whose worker dies (killed, out of memory, a crash in
    a simulator) runs again in a new worker, resuming from its checkpoint, up to RETRIES times, then counts as
    failed; the other cells go on. Ctrl-C stops every worker at once: each marks its cell "interrupted" (within
    INTERRUPT_GRACE seconds, or it is terminated) and the cells resume on the next run."""
    queue, retries = list(todo), dict.fromkeys((c.key for c in todo), 0)
    pool: list[_CellWorker] = []
    try:
        pool = [_CellWorker(threads) for _ in range(min(workers, len(queue)))]
        while queue or any(w.cell is not None for w in pool):
            for worker in pool:
                if worker.cell is None and queue:
                    worker.start(sweep, queue.pop(0))
            busy = [w for w in pool if w.cell is not None]
            connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=2.0)
            for index, worker in enumerate(pool):
                cell = worker.cell
                if cell is None:
                    continue
                result = worker.result()
                if result is not None:
                    _record(summary, cell.key, result)
                    worker.cell = None
                elif not worker.process.is_alive():
                    code = worker.process.exitcode
                    worker.stop(now=True)
                    pool[index] = _CellWorker(threads)
                    if retries[cell.key] < RETRIES:
                        retries[cell.key] += 1
                        queue.insert(0, cell)
                    else:
                        error = (f"worker died: its process stopped with exit code {code} (killed, out of memory or a "
                                 f"crash) {RETRIES + 1} times")
                        _record(summary, cell.key, {"outcome": "failed", "error": error})
            tick()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):  # let the workers record "interrupted" (once each: see stop_on_signals)
            deadline = time.time() + INTERRUPT_GRACE
            for worker in pool:  # Ctrl-C may have reached them too; a SIGTERM or a SIGINT to this process alone did not
                if worker.process.is_alive() and worker.process.pid is not None:
                    with contextlib.suppress(OSError):
                        os.kill(worker.process.pid, signal.SIGTERM)
            for worker in pool:
                worker.process.join(timeout=max(deadline - time.time(), 0.0))
        for worker in pool:
            worker.stop(now=True)
        raise
    for worker in pool:
        worker.stop(now=False)


def _init_local_ray(ray, workers: int) -> None:
    """Start a private Ray on this machine whose servers listen on the loopback interface only.

    Ray replaces a loopback ``_node_ip_address`` with the machine's network address, and its GCS, raylet and
    worker servers then listen on every interface, unless its "no clusters" switch (the default on macOS and
    Windows) is off while it starts. ``address="local"``: a new instance even where a cluster started with
    ``ray start`` runs on this machine (``ray.init()`` would join that one, refusing ``num_cpus``).
    """
    from ray._private import ray_constants  # noqa: PLC0415

    cluster_switch = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False, configure_logging=False)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_switch


def _check_reachable(address: str, seconds: float = 5.0) -> None:
    """Fail fast on a ``host:port`` (or ``ray://host:port``) nobody answers at: ``ray.init`` would retry for
    minutes. ``auto`` and other forms are left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as exc:
        raise SymrlError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc.__class__.__name__}); "
                         "check the address, or drop --address to start a local Ray") from None


RAY_JOIN_SECONDS = 60.0  # how long joining a cluster may take; SYMRL_RAY_JOIN_SECONDS overrides it


class _JoinTimeout(BaseException):  # not an Exception: Ray's connection retries catch those and go on
    pass


@contextlib.contextmanager
def _deadline(seconds: float):
    """Raise :class:`_JoinTimeout` in the block once ``seconds`` have passed, by a timer signal: in the main thread
    of a Unix process only (elsewhere the block runs without a deadline). It takes effect when the block returns
    to Python from C code. A timer set before (a test runner's, say) is put back with the time it had left."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def give_up(*_):
        raise _JoinTimeout

    previous = signal.signal(signal.SIGALRM, give_up)
    start = time.time()
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.time() - start), 1e-3))


def _join_ray(ray, address: str) -> None:
    """``ray.init(address=...)``, given up after ``SYMRL_RAY_JOIN_SECONDS`` (default 60): at a port that answers but
    is not a Ray cluster's (the dashboard's 8265 instead of the GCS port 6379, say) Ray retries for minutes. The
    deadline applies in the main thread of a Unix process and once Ray's attempt under way returns to Python (its
    first one waits 40 s at such a port)."""
    text = os.environ.get("SYMRL_RAY_JOIN_SECONDS", str(RAY_JOIN_SECONDS))
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise SymrlError(f"SYMRL_RAY_JOIN_SECONDS must be a positive number of seconds, got {text!r}")
    start = time.time()
    try:
        with _deadline(seconds):
            ray.init(address=address, log_to_driver=False)
    except _JoinTimeout:  # raised once Ray's current attempt returns to Python: after the deadline, not at it
        with contextlib.suppress(Exception):
            ray.shutdown()
        raise SymrlError(f"no Ray cluster joined at {address} in {time.time() - start:.0f} s; give its GCS address "
                         "(the head's port 6379 by default, not the dashboard's 8265), set SYMRL_RAY_JOIN_SECONDS "
                         "higher for a slow cluster, or drop --address to start a local Ray") from None
    except ray.exceptions.AuthenticationError as exc:
        raise SymrlError(f"the Ray cluster at {address} wants its token ({first_line(exc)}); copy the head node's "
                         "~/.ray/auth_token here, or set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH") from None
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        # Ray says only "failed to connect" when the cluster wants a token this process does not send
        token = "" if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" else (
            "; a cluster with token authentication (what `ray start` sets up where a token exists, e.g. "
            "~/.ray/auth_token) needs RAY_AUTH_MODE=token here too")
        raise SymrlError(f"cannot join the Ray cluster at {address} ({exc.__class__.__name__}){token}; check the "
                         "address, or drop --address to start a local Ray") from None


def _run_ray(sweep: Sweep, todo: list[Cell], workers: int, address: Optional[str], summary: SweepSummary,
             tick: Callable[[], None]) -> None:
    try:
        import ray  # noqa: PLC0415
    except ImportError:
        raise SymrlError("--backend ray needs Ray; install it with pip install 'symrl[ray]' or use --backend local") from None
    started = not ray.is_initialized()
    if started:
        if address is None:
            _init_local_ray(ray, workers)
        else:
            _check_reachable(address)
            _join_ray(ray, address)
    pending: list = []
    refs: dict = {}
    try:
        # max_retries: Ray re-runs a cell whose worker process died; the cell then resumes from its checkpoint
        threads = 1 if address else _threads_per_worker(workers)
        remote = ray.remote(num_cpus=1, max_retries=3, runtime_env={"env_vars": _thread_env(threads)})(run_cell)
        refs = {remote.remote(str(sweep.run_dir(c).resolve()), c.config.to_dict(), c.labels, threads): c for c in todo}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=2.0)
            for ref in done:
                cell = refs[ref]
                try:
                    _record(summary, cell.key, ray.get(ref))
                except Exception as exc:  # noqa: BLE001 - retries exhausted or the task was lost
                    error = _describe(exc)
                    _record(summary, cell.key, {"outcome": "failed", "error": error})
            tick()
    finally:
        if started:
            ray.shutdown()  # the driver's tasks end with it (their workers raise SystemExit: "interrupted")
            for ref in pending:  # a worker killed before it could say so still says "running"
                path = sweep.run_dir(refs[ref])
                status = runs.read_status(path)
                if status.get("state") != "running":
                    continue
                lock = runs.RunLock(path)  # not acquired: a live process (another sweep's) is running the cell
                if lock.acquire(blocking_error=False):
                    try:
                        runs.write_status(path, "interrupted", step=status.get("step", 0))
                    finally:
                        lock.release()


def run_sweep(sweep: Sweep, backend: str = "local", workers: Optional[int] = None, address: Optional[str] = None,
              progress: bool = True) -> SweepSummary:
    """Run every cell that is not finished; return (and write to ``OUT/sweep.json``) what happened to each."""
    if backend not in ("local", "ray"):
        raise SymrlError(f"unknown backend {backend!r}; use local or ray")
    if workers is not None and workers < 1:
        raise SymrlError(f"--workers must be at least 1, got {workers}")
    if address is not None and backend != "ray":
        raise SymrlError("--address joins a Ray cluster; add --backend ray")
    workers = workers or max(1, os.cpu_count() or 1)
    check_compatible(sweep)
    summary = SweepSummary(name=sweep.name, cells=len(sweep.cells))
    todo = []
    for cell in sweep.cells:
        if plan(sweep.run_dir(cell), cell) == "skip":
            summary.outcomes[cell.key] = "skipped"
        else:
            todo.append(cell)
    start = time.time()
    sweep.out.mkdir(parents=True, exist_ok=True)
    bar = Progress(sweep, enabled=progress)
    tick = lambda: bar.update(summary)  # noqa: E731
    skipped = len(summary.outcomes)
    try:
        tick()
        if todo and backend == "local":
            _run_local(sweep, todo, min(workers, len(todo)), summary, tick)
        elif todo:
            _run_ray(sweep, todo, workers, address, summary, tick)
    except BaseException as exc:
        summary.stopped = "interrupted" if runs.is_stop(exc) else first_line(exc)
        raise
    finally:
        bar.close()
        summary.seconds = time.time() - start
        # a sweep that an error stopped before it ran anything (e.g. no Ray cluster) keeps the last summary
        if summary.stopped in (None, "interrupted") or len(summary.outcomes) > skipped:
            runs.atomic_write_text(sweep.out / "sweep.json", json.dumps(summary.to_dict(), indent=1))
    return summary
