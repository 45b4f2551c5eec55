"""A separate critic's training passes in a forked worker process, beside the actor's in this one.

Two Python threads share one GIL, and a minibatch's passes are many small NumPy calls that hold it: with the critic on
a second thread a minibatch of the minatar preset took 1.6-1.8 ms instead of 2.2 ms alone, while its matrix products
alone would allow about 1.1 ms. A process has its own interpreter. Once per update this process copies the rollout's
training inputs, old values and returns into shared memory; for each minibatch it writes the row indices and
signals, runs the actor's passes while the worker runs the critic's forward pass, value loss and backward pass, then
waits. The worker reads the critic's weights and writes its gradients through shared memory (the engine keeps the
parameters and the gradient buffer there), so the arithmetic and the results are those of one process, bit for bit
(tests/test_fast.py). Signals are :mod:`symrl.envs.split`'s: a counter in shared memory to spin on, then a pipe.
"""

from __future__ import annotations

import signal
import sys
import weakref
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..envs.split import _context, _signal, _wait, worker_failure
from ..errors import SymrlError
from .losses import value_loss_and_grad

_LOAD, _STEP, _CLOSE = 1, 2, 3  # commands
_OK, _ERROR = 0, 1  # replies
_COMMAND, _KIND, _DONE, _REPLY, _WORKER_ASLEEP, _MAIN_ASLEEP, _ROWS, _COLUMNS, _ACTIVE, _MINIBATCH = range(10)
_CLIP, _COEF, _RESULT = range(3)
FORK = sys.platform == "linux"  # the worker shares this process's arrays by forking (split.py forks there too)


@dataclass
class ValueLoss:
    """The value loss of a minibatch with its gradient, scaled by the loss's coefficient: ``(loss, d_values)``."""

    old_values: np.ndarray
    returns: np.ndarray
    clip: Optional[float]
    coef: float

    def __call__(self, values: np.ndarray) -> tuple[float, np.ndarray]:
        loss, d_values = value_loss_and_grad(values, self.old_values, self.returns, self.clip)
        return loss, d_values * self.coef


class _Shared:
    """The shared arrays of one worker: control counters, the update's data and a minibatch's row indices."""

    def __init__(self, rows: int, columns: int):
        context = _context()
        sizes = {"control": (10, np.int64), "scalars": (3, np.float64), "inputs": (rows * columns, np.float32),
                 "cols": (columns, np.int64), "old_values": (rows, np.float32), "returns": (rows, np.float32),
                 "index": (rows, np.int64)}
        self.rows, self.columns = rows, columns
        for name, (size, dtype) in sizes.items():
            raw = context.RawArray("b", max(1, size * np.dtype(dtype).itemsize))
            setattr(self, name, np.frombuffer(raw, dtype, size))


class CriticWorker:
    """The main process's handle on the critic's worker process, for updates of up to ``rows`` rows of observations
    with ``width`` columns. The process forks here, once: a fork makes every memory page of this process copy-on-write,
    and forking at each update would copy the rollout buffers' pages again and again."""

    def __init__(self, net, rows: int, width: int):
        if not FORK:
            raise ValueError("the critic's worker process needs fork (Linux): a spawned one would work on copies")
        self.net = net  # a NumpyActorCritic whose parameters and gradient buffer live in shared memory
        self.rows = rows
        self.shared = _Shared(rows, width)
        context = _context()
        self.wake, child_wake = context.Pipe()
        self.data, child_data = context.Pipe(duplex=False)
        self.sent = 0
        self.process = context.Process(target=_serve, args=(net, self.shared, child_wake, child_data), daemon=True,
                                       name="symrl-critic")
        self.process.start()
        child_wake.close()
        child_data.close()
        self._stop = weakref.finalize(self, _stop, [self.process, self.shared, self.wake, self.data])

    def load(self, inputs: np.ndarray, cols: Optional[np.ndarray], old_values: np.ndarray, returns: np.ndarray,
             clip: Optional[float], coef: float) -> None:
        """Copy an update's data into shared memory, for the minibatches that follow."""
        rows, columns = inputs.shape
        s = self.shared
        s.inputs[: rows * columns] = inputs.reshape(-1)
        s.control[_ROWS], s.control[_COLUMNS] = rows, columns
        s.control[_ACTIVE] = -1 if cols is None else len(cols)
        if cols is not None:
            s.cols[: len(cols)] = cols
        s.old_values[:rows], s.returns[:rows] = old_values, returns
        s.scalars[_CLIP], s.scalars[_COEF] = np.nan if clip is None else clip, coef
        self._command(_LOAD)
        self.result()

    def start(self, index: np.ndarray) -> "CriticWorker":
        """Start the critic's passes on the minibatch of these rows of the loaded data; :meth:`result` waits."""
        self.shared.index[: len(index)] = index
        self.shared.control[_MINIBATCH] = len(index)
        self._command(_STEP)
        return self

    def result(self) -> float:
        """Wait for the last command; the value loss of a minibatch."""
        s = self.shared
        try:
            _wait(s.control, _DONE, self.sent - 1, _MAIN_ASLEEP, self.wake, self._check)
        except (EOFError, OSError):
            raise self._failed() from None
        if s.control[_REPLY] == _ERROR:
            raise self._failed()
        return float(s.scalars[_RESULT])

    def close(self) -> None:
        """Stop the worker."""
        self._stop()

    def _command(self, kind: int) -> None:
        self.shared.control[_KIND] = kind
        self.sent += 1
        try:
            _signal(self.shared.control, _COMMAND, self.sent, _WORKER_ASLEEP, self.wake)
        except OSError:  # the worker is gone; result() says why
            pass

    def _check(self) -> None:
        if not self.process.is_alive():
            raise self._failed()

    def _failed(self) -> SymrlError:
        return worker_failure(self.process, self.data, "the critic's worker process",
                              "rerun, or set torch_threads=1 to keep the update in one process")


def _stop(handles: list) -> None:
    """Close a worker (also when its handle is collected without close())."""
    if not handles:
        return
    process, shared, wake, data = handles
    handles.clear()
    if process.is_alive():
        shared.control[_KIND] = _CLOSE
        try:
            _signal(shared.control, _COMMAND, int(shared.control[_COMMAND]) + 1, _WORKER_ASLEEP, wake)
        except OSError:
            pass
    # not joined: its exit (unmapping a copy of this process's page tables) takes about 10 ms that nothing needs to
    # wait for; multiprocessing reaps it later, and stops it at exit at the latest (a daemon)
    wake.close()
    data.close()


def _serve(net, shared: _Shared, wake, data) -> None:
    """The worker process: the critic's passes on the minibatches the main process names."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    control, seen = shared.control, 0
    # a first pass on zeros, while the main process collects its first rollout: a new process's first passes fault in
    # its memory (about 10 ms); the gradients it writes are the critic's own, rewritten by every real pass
    warm = min(shared.rows, 1024)
    with np.errstate(all="ignore"):
        net._critic_passes(np.zeros((warm, shared.columns), np.float32), None,
                           ValueLoss(np.zeros(warm, np.float32), np.zeros(warm, np.float32), None, 0.0))
    inputs = cols = old_values = returns = None
    clip = coef = 0.0
    try:
        while True:
            seen = _wait(control, _COMMAND, seen, _WORKER_ASLEEP, wake, lambda: None)
            kind = control[_KIND]
            if kind == _CLOSE:
                break
            with np.errstate(over="ignore", invalid="ignore"):  # as the engine's update: a non-finite loss is caught there
                if kind == _LOAD:
                    rows, columns, active = (int(control[i]) for i in (_ROWS, _COLUMNS, _ACTIVE))
                    inputs = shared.inputs[: rows * columns].reshape(rows, columns)
                    cols = None if active < 0 else shared.cols[:active].copy()
                    old_values, returns = shared.old_values[:rows], shared.returns[:rows]
                    clip = None if np.isnan(shared.scalars[_CLIP]) else float(shared.scalars[_CLIP])
                    coef = float(shared.scalars[_COEF])
                else:
                    index = shared.index[: int(control[_MINIBATCH])]
                    loss = ValueLoss(old_values[index], returns[index], clip, coef)
                    shared.scalars[_RESULT] = net._critic_passes(inputs[index], cols, loss)
            control[_REPLY] = _OK
            _signal(control, _DONE, seen, _MAIN_ASLEEP, wake)
    except (EOFError, BrokenPipeError, KeyboardInterrupt):  # the main process is gone
        return
    except Exception as exc:  # noqa: BLE001  (reported to the main process, which raises it)
        try:
            control[_REPLY] = _ERROR
            data.send(f"{type(exc).__name__}: {exc}")
            _signal(control, _DONE, -1, _MAIN_ASLEEP, wake)
        except OSError:
            return
