"""The run-directory format and atomic I/O.

A run directory holds::

    config.yaml         the fully resolved config
    metrics.csv         one row per update (losses, entropy, clip fraction, approx KL, sign-change ratio...)
    eval.csv            step,mean_return,std_return,episodes
    status.json         {"state": "running" | "finished" | "failed", "step": ..., "error": ...}
    labels.json         (sweeps only) the cell's labels: algorithm, env, noise
    checkpoints/last.pt the latest checkpoint (model, optimiser, normalisers, RNG states, counters)
    model.pt            the final model (policy, observation normaliser, config)
    tb/                 TensorBoard events

Files are replaced atomically (write to a temporary file, then ``os.replace``), so a killed run never
leaves a half-written checkpoint or CSV; CSV rows are appended and flushed one at a time.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping, Optional, Protocol

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl
    fcntl = None
import yaml

from .errors import SymrlError, first_line
from .yamlfile import read_yaml_file

CONFIG = "config.yaml"
METRICS = "metrics.csv"
EVAL = "eval.csv"
STATUS = "status.json"
LABELS = "labels.json"  # written by sweeps: what a report calls the run (algorithm, env, noise)
CHECKPOINT = "checkpoints/last.pt"
MODEL = "model.pt"
TENSORBOARD = "tb"
VIDEOS = "videos"  # symrl eval --video
SAMPLES = "samples"  # language-model runs: sampled responses

METRIC_COLUMNS = [
    "step", "updates", "time", "sps", "ep_return_mean", "ep_length_mean", "episodes",
    "loss", "policy_loss", "rl_loss", "reverse_loss", "value_loss", "entropy",
    "clip_fraction", "approx_kl", "active_fraction", "sign_change_ratio", "explained_variance",
    "grad_norm", "learning_rate", "clip_range", "action_prob",
]
EVAL_COLUMNS = ["step", "mean_return", "std_return", "episodes"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a temporary file, then a rename), readable as an ordinary file
    would be (``0666`` less the umask; ``mkstemp`` alone would make it private to its owner)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: Path) -> None:
    import torch  # noqa: PLC0415 (run folders are read without torch: `symrl --help`, reports)

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def safe_torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``; a missing or corrupt file becomes a :class:`SymrlError`."""
    import torch  # noqa: PLC0415

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SymrlError(f"{path} does not exist; is this a symrl run directory?") from None
    except Exception as exc:  # noqa: BLE001 (any unpickling failure means a corrupt file)
        raise SymrlError(f"{path} is corrupt or not a symrl file ({exc.__class__.__name__}); delete it and start the "
                         "run again (--overwrite; a sweep restarts such a cell when run again)") from None


class CsvLog:
    """An append-only CSV with a fixed header; each row is flushed as it is written."""

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns = Path(path), columns
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._handle = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        if new:
            self._writer.writeheader()
            self._handle.flush()

    def write(self, row: dict) -> None:
        self._writer.writerow({k: _fmt(row.get(k)) for k in self.columns})
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def whole_rows(path: Path) -> str:
    """A CSV log's text without a last line cut off by a killed writer (every whole row ends with a newline);
    empty if the file does not exist."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    return text[: text.rfind("\n") + 1]


def truncate_csv(path: Path, columns: list[str], max_step: int, key: str = "step") -> None:
    """Drop rows whose ``key`` column is past ``max_step`` (written after the checkpoint a resume restarts
    from), and a torn last line left by a killed process (no trailing newline or missing fields)."""
    try:
        reader = csv.DictReader(io.StringIO(whole_rows(path)))
        header = reader.fieldnames or []
        rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SymrlError(f"{path} is not a log symrl wrote ({exc.__class__.__name__}); move it out of the run folder "
                         "to resume, or start the run again with --overwrite") from None
    if header and (key not in header or not set(header) & (set(columns) - {key})):
        raise SymrlError(f"{path} is not this run's log (its columns: {', '.join(header[:5])}...); move it out of the run "
                         "folder to resume, or start the run again with --overwrite")
    keep = [row for row in rows if None not in row.values() and row.get(key) and int(float(row[key])) <= max_step]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(keep)
    atomic_write_text(path, out.getvalue())


def write_config(run_dir: Path, config: dict) -> None:
    atomic_write_text(Path(run_dir) / CONFIG, yaml.safe_dump(config, sort_keys=False))


def write_status(run_dir: Path, state: str, **fields: Any) -> None:
    """``status.json``; a NaN (e.g. the final return of a run without evaluations) is written as null, since
    JSON has no NaN."""
    fields = {k: None if isinstance(v, float) and v != v else v for k, v in fields.items()}
    atomic_write_text(Path(run_dir) / STATUS, json.dumps({"state": state, **fields}, indent=1))


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / STATUS).read_text())
    except (OSError, ValueError):
        return {}


# everything a run writes in its directory; --overwrite removes these and nothing else
RUN_OUTPUTS = (CONFIG, METRICS, EVAL, STATUS, Path(CHECKPOINT).parent.as_posix(), MODEL, TENSORBOARD, VIDEOS, SAMPLES)
# what symrl writes inside its folders: only these go with --overwrite (a user's files beside them stay)
RUN_FOLDER_FILES = {Path(CHECKPOINT).parent.as_posix(): Path(CHECKPOINT).name, TENSORBOARD: "events.out.tfevents.*",
                    VIDEOS: "*.mp4", SAMPLES: "iter_*.jsonl"}


def clear_run(run_dir: Path) -> None:
    """Remove a run's outputs from ``run_dir`` for ``--overwrite``; nothing where it holds no run. Only what symrl
    writes goes (its files, and inside its folders only its own files: ``checkpoints/last.pt``, TensorBoard event
    files, ``videos/*.mp4``, ``samples/iter_*.jsonl``; a folder left empty is removed). Other files stay: the
    directory may be a project folder, and a sweep writes the cell's ``labels.json`` before it (re)starts the run."""
    if not holds_run(run_dir):
        return
    for name in RUN_OUTPUTS:
        path = Path(run_dir) / name
        if name in RUN_FOLDER_FILES:
            if path.is_dir() and not path.is_symlink():
                for own in path.glob(RUN_FOLDER_FILES[name]):
                    if own.is_file() or own.is_symlink():
                        own.unlink()
                if not any(path.iterdir()):
                    path.rmdir()
            elif path.is_file() or path.is_symlink():  # a file where symrl's folder goes: it would block the run
                path.unlink()
        elif path.is_file() or path.is_symlink():
            path.unlink()


LOCK = ".sweep.lock"  # the name sweeps have used for it; the studies' .gitignore files leave it out
_HELD: dict[Path, list] = {}  # run directories whose lock this process holds -> [open lock file, holders]


class RunLock:
    """The exclusive lock of a run directory: one process trains (or restarts, or clears with ``--overwrite``) a
    run at a time, whether a sweep's cell, ``symrl train`` or ``symrl rlhf``. A POSIX lock (``lockf``) on
    ``.sweep.lock``, which the operating system releases when its holder exits, killed or not (and which processes it
    forks do not inherit; closing any other handle of the file in the holding process would release it: none does).
    Re-entrant within a process (a sweep worker holds its cell's lock while the trainer it calls takes it again);
    without ``fcntl`` (Windows) no protection. :meth:`acquire` makes the directory if needed; :meth:`release`
    removes it again if this lock made it and nothing but the lock file is in it (a run that failed its checks leaves
    no folder behind)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir).absolute()
        self.held = False
        self._made = False

    def acquire(self, blocking_error: bool = True) -> bool:
        """Take the lock; False (or, with ``blocking_error``, a :class:`SymrlError`) when another process has it."""
        if self.held:
            return True
        entry = _HELD.get(self.path)
        if entry is None:
            self._made = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(self.path / LOCK, "a")  # noqa: SIM115 - held open while the run trains
            if fcntl is not None:
                try:  # a POSIX record lock, not flock: the environment workers a run forks do not inherit it, so
                    # it dies with the process that took it even while its orphaned workers still wind down
                    fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except (BlockingIOError, PermissionError):
                    handle.close()
                    if blocking_error:
                        raise SymrlError(f"another symrl process is training in {self.path} now (a sweep's cell or a "
                                         "second run); wait until it has finished, or choose another --out") from None
                    return False
            entry = _HELD[self.path] = [handle, 0]
        entry[1] += 1
        self.held = True
        return True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        entry = _HELD[self.path]
        entry[1] -= 1
        if entry[1] == 0:
            entry[0].close()
            del _HELD[self.path]
            if self._made and [p.name for p in self.path.iterdir()] == [LOCK]:
                shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def signals_stop_runs() -> Iterator[None]:
    """Within the block, SIGTERM stops this process as Ctrl-C does (a ``KeyboardInterrupt``: the run records
    "interrupted" and resumes later), and only once: a second SIGINT or SIGTERM while the run writes its status is
    ignored. The previous handlers are put back when the block ends (the CLI called in-process, from a notebook or
    a test, leaves the host's handlers as they were). In the main thread only; elsewhere nothing is changed. A
    signal that was ignored (Ctrl-C in a background job) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [name for name in ("SIGINT", "SIGTERM") if signal.getsignal(getattr(signal, name)) is not signal.SIG_IGN]
    previous = {name: signal.getsignal(getattr(signal, name)) for name in names}

    def stop(signum, frame):
        for name in names:
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")

    for name in names:
        signal.signal(getattr(signal, name), stop)
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler if handler is not None else signal.SIG_DFL)


def record_stop(run_dir: Path, exc: BaseException, step: int) -> None:
    """The status of a run that an exception ended: "interrupted" (Ctrl-C, SIGTERM, a Ray teardown: it resumes)
    or "failed", with the exception's class and first line (the same words in every kind of run)."""
    with contextlib.suppress(OSError):  # a full or read-only disk: the exception that ended the run goes on
        write_status(run_dir, "interrupted" if is_stop(exc) else "failed", step=step,
                     error=f"{exc.__class__.__name__}: {first_line(exc)}")


def is_stop(exc: BaseException) -> bool:
    """Whether ``exc`` stops a run from outside: Ctrl-C, or ``SystemExit``, which a Ray worker raises when Ray
    tears it down (the driver stopped, ``ray.shutdown``). Such a run is "interrupted" and resumes from its
    checkpoint; "failed" would make a sweep restart it from zero."""
    return isinstance(exc, (KeyboardInterrupt, SystemExit))


# -- the two kinds of run ------------------------------------------------------------------------------------


class RunConfig(Protocol):
    """What sweeps, results and the CLI need of a run's config, Gymnasium (:class:`symrl.Config`) or language
    model (:class:`symrl.rlhf.RLHFConfig`), so that nothing tells them apart by the fields they happen to have."""

    KIND: ClassVar[str]  # "gym" or "rlhf" (RUN_KINDS)
    BUDGET: ClassVar[str]  # the field that says how long the run trains: total_steps or iterations
    RESUMABLE: ClassVar[frozenset]  # the fields a resume may change (the checkpoint fixes every other)

    @classmethod
    def from_file(cls, path: Path) -> "RunConfig": ...

    def to_dict(self) -> dict: ...

    def replace(self, **overrides: Any) -> "RunConfig": ...


RUN_KINDS = {"env": "gym", "task": "rlhf"}  # the key a saved config names its environment or task by -> the kind
RESUME_COMMAND = {"gym": "symrl train --resume --out {}", "rlhf": "symrl rlhf --resume --out {}"}


def run_kind(config: Any) -> Optional[str]:
    """The kind of run a config describes: "gym" or "rlhf"; a config object says so (``KIND``), a saved mapping by
    the key that names its environment or task. None for neither (not a symrl run's config)."""
    if not isinstance(config, Mapping):
        return getattr(config, "KIND", None)
    if "algo" not in config:
        return None
    return next((kind for key, kind in RUN_KINDS.items() if key in config), None)


def resume_config(run_dir: Path, schema: type, overrides: dict) -> Any:
    """The saved config of the run in ``run_dir`` as a ``schema`` (a :class:`RunConfig` class), with ``overrides``:
    those the run already has are accepted, a change is refused unless ``schema.RESUMABLE`` allows it; a run of the
    other kind is refused with the command that continues it. The one resume path of every kind of run."""
    run_dir = Path(run_dir)
    check_resume(run_dir)
    kind = _saved_kind(run_dir / CONFIG)
    if kind not in (None, schema.KIND):
        what = "a Gymnasium" if kind == "gym" else "a language-model"
        raise SymrlError(f"{run_dir} holds {what} run; continue it with {RESUME_COMMAND[kind].format(run_dir)}")
    saved = schema.from_file(run_dir / CONFIG)
    given = {key: value for key, value in overrides.items() if value is not None}
    return saved.replace(**resume_overrides(saved.to_dict(), given, may_change=set(schema.RESUMABLE)))


def _saved_kind(path: Path) -> Optional[str]:
    try:
        return run_kind(read_yaml_file(path))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # the schema's reading says what is wrong with it


def check_out(run_dir: Path, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse, before any work starts, an ``--out`` that is a file, that already holds a run (without ``resume``
    or ``overwrite``) or that cannot be created."""
    run_dir = Path(run_dir)
    config = run_dir / CONFIG
    if config.is_file() and not _is_run_config(config):
        raise SymrlError(f"{config} is not a symrl run's config (a file of yours?); choose another --out, or move it")
    if not resume and holds_run(run_dir) and not overwrite:
        raise SymrlError(f"{run_dir} already holds a run; pass --resume (resume=True) to continue it, --overwrite "
                         "(overwrite=True) to replace it, or choose another --out")
    check_folder(run_dir, "the run's directory", "--out",
                 fix="a resume writes into the run's folder: copy it somewhere writable and resume the copy" if resume
                 and holds_run(run_dir) else "")


def _is_run_config(path: Path) -> bool:
    """Whether ``path`` is a config.yaml that symrl wrote (a mapping naming an algorithm and an env or a task)."""
    return _saved_kind(path) is not None


def check_folder(folder: Path, what: str, flag: str, fix: str = "") -> None:
    """Refuse a folder that is a file, cannot be created or cannot be written in (a file or an unwritable folder on
    its path, a read-only file system); ``fix`` replaces the advice to choose another ``flag``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SymrlError(f"{folder} is a file; {flag} takes {what}")
    fix = fix or f"choose another {flag}"
    existing = next(path for path in (folder, *folder.absolute().parents) if path.exists())
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return
    if existing == folder:
        raise SymrlError(f"cannot write in {folder} (not writable: a read-only file system or no permission); {fix}")
    problem = "is a file" if not existing.is_dir() else "is not writable"
    raise SymrlError(f"cannot create {folder} ({existing} {problem}); {fix}")


def check_resume(run_dir: Path) -> None:
    """Refuse ``--resume`` of a directory without a config and a checkpoint."""
    run_dir = Path(run_dir)
    if not ((run_dir / CONFIG).is_file() and (run_dir / CHECKPOINT).is_file()):
        if holds_run(run_dir):
            raise SymrlError(f"{run_dir} has no {CHECKPOINT} to resume from (the run stopped before its first "
                             "checkpoint); start it again with --overwrite")
        raise SymrlError(f"{run_dir} holds no resumable run (config.yaml and {CHECKPOINT} are needed); "
                         "start it without --resume")


def resume_overrides(saved: dict, overrides: dict, may_change: set) -> dict:
    """The overrides of a resume that change something; settings the checkpoint fixes may not change.

    ``saved`` is the run's config resolved through its schema (so fields it predates have their defaults). A setting
    given with the value the run already has is accepted (re-running the command that started the run with
    ``--resume`` is what users type) and left out; values that differ are refused, each named with both values."""
    changing = {key: value for key, value in overrides.items() if key in may_change or not _same(saved.get(key), value)}
    refused = sorted(key for key in changing if key not in may_change)
    if refused:
        what = ", ".join(f"{key} (the run has {saved.get(key)!r}, given {changing[key]!r})" for key in refused)
        raise SymrlError(f"cannot change {what} when resuming; drop {'it' if len(refused) == 1 else 'them'} "
                         "or start a new run")
    return changing


def _same(saved: Any, given: Any) -> bool:
    """A saved config value equal to one given again: numbers by value (5e4 == 50000), a noise spec by its kind and
    number (gaussian:0.05 == gaussian:0.050); nothing else is equal unless it is the same value."""
    if saved == given:
        return True
    numbers = (int, float)
    if isinstance(saved, numbers) and isinstance(given, numbers) and not isinstance(saved, bool) \
            and not isinstance(given, bool):
        return float(saved) == float(given)
    if isinstance(saved, str) and isinstance(given, str) and ":" in saved and ":" in given:
        (kind_a, _, value_a), (kind_b, _, value_b) = saved.partition(":"), given.partition(":")
        try:
            return kind_a.strip() == kind_b.strip() and float(value_a) == float(value_b)
        except ValueError:
            return False
    return False


def holds_run(run_dir: Path) -> bool:
    """True when ``run_dir`` already holds results of a run (anything we would overwrite)."""
    run_dir = Path(run_dir)
    return any((run_dir / name).exists() for name in (CONFIG, METRICS, EVAL, CHECKPOINT, MODEL))

