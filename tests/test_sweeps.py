"""Sweeps: the file format and its errors, both backends, and skip / resume / re-run after a kill."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from symrl import runs
from symrl.errors import SymrlError
from symrl.results import final_evaluations, load_evaluations
from symrl.sweeps import load_sweep, parse_sweep, run_sweep

TINY = {"eval_freq": 256, "eval_episodes": 2, "tensorboard": False, "n_envs": 2, "n_steps": 64, "batch_size": 64,
        "n_epochs": 2}


def _spec(out: Path, **fields) -> dict:
    spec = {"out": str(out), "steps": 256, "seeds": 2, "algorithms": ["ppo", "sppo"], "envs": ["CartPole-v1"],
            "overrides": dict(TINY)}
    spec.update(fields)
    return spec


def _write(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _cli(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symrl.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, **kwargs)


# -- the file ---------------------------------------------------------------------------------------------


def test_grid_labels_folders_and_override_order(tmp_path):
    sweep = parse_sweep(_spec(
        tmp_path / "out",
        algorithms={"PPO": "ppo", "scaled PPO": {"algo": "ppo", "policy_coef": 1.5}},
        noise={"clean": None, "noisy": "gaussian:0.1"},
        seeds=[3, 7],
        envs={"CartPole-v1": {"gamma": 0.95}},
        cells=[{"where": {"algorithm": "scaled PPO", "noise": "noisy"}, "set": {"gamma": 0.9}},
               {"where": {"seed": 7}, "set": {"ent_coef": 0.01}}],
    ))
    assert len(sweep.cells) == 2 * 2 * 2
    by_key = {cell.key: cell for cell in sweep.cells}
    scaled = by_key["CartPole-v1/noisy/scaled_PPO/seed3"]
    assert scaled.labels == {"algorithm": "scaled PPO", "env": "CartPole-v1", "noise": "noisy"}
    assert (scaled.config.policy_coef, scaled.config.reward_noise, scaled.config.gamma) == (1.5, "gaussian:0.1", 0.9)
    assert scaled.config.seed == 3 and scaled.config.total_steps == 256 and scaled.config.ent_coef == 0.0
    plain = by_key["CartPole-v1/clean/PPO/seed7"]
    assert (plain.config.gamma, plain.config.reward_noise, plain.config.ent_coef) == (0.95, None, 0.01)


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": "red"}, "field `colour`"),
    ({"out": None}, "field `out`"),
    ({"algorithms": {"X": {"algo": "dqn"}}}, "algorithms.X.algo"),
    ({"seeds": "three"}, "field `seeds`"),
    ({"seeds": [0, -1]}, "field `seeds`"),
    ({"overrides": {"gama": 0.9}}, "gama"),
    ({"envs": ["NoSuchEnv-v0"]}, "NoSuchEnv-v0"),
    ({"cells": [{"where": {"colour": 1}, "set": {}}]}, "cells[0].where"),
    ({"overrides": {"seed": 3}}, "field `overrides`: sets `seed`, which a sweep takes from `seeds`"),
    ({"cells": [{"where": {"algorithm": "PPO"}, "set": {"seed": 3}}]}, "field `cells[0].set`: sets `seed`"),
    ({"overrides": {"env": "Acrobot-v1"}}, "field `overrides`: sets `env`, which a sweep takes from `envs`"),
    ({"envs": {"CartPole-v1": {"preset": "classic"}}}, "field `envs.CartPole-v1`: sets `preset`"),
    ({"cells": [{"where": {"algorithm": "PPO"}, "set": {"algo": "sppo"}}]}, "field `cells[0].set`: sets `algo`"),
    ({"cells": [{"where": {"algorithm": "DQN"}, "set": {"gamma": 0.9}}]}, "field `cells[0].where`: matches no cell"),
    ({"algorithms": ["ppo", "ppo"]}, "field `algorithms`: lists ppo twice"),
    ({"envs": ["CartPole-v1", "CartPole-v1"]}, "field `envs`: lists CartPole-v1 twice"),
    ({"algorithms": {"PPO": "ppo", "ppo": {"algo": "ppo", "gamma": 0.9}}}, "two labels map to the same folder"),
    # what only the environment refuses is found before anything runs too
    ({"algorithms": {"D": {"algo": "ppo", "bins": 11}}}, "cell D / CartPole-v1 / clean: --bins discretises Box"),
    ({"overrides": {**TINY, "network": "cnn"}}, "network=cnn needs image observations"),
    ({"overrides": {**TINY, "vec_env": "ale"}}, "steps Atari games only"),
    ({"overrides": {"total_steps": 512}}, "field `overrides.total_steps`: sets the budget that `steps` sets too"),
    ({"kind": "rlhf", "envs": ["sentiment"], "algorithms": ["ppo"], "overrides": {"task": "tldr"}},
     "field `overrides`: sets `task`, which a sweep takes from `envs`"),
])
def test_malformed_sweep_files_name_the_field(tmp_path, change, message):
    spec = {**_spec(tmp_path / "out"), **change}
    spec = {k: v for k, v in spec.items() if v is not None}
    with pytest.raises(SymrlError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_sweep(_write(tmp_path, spec))


def test_an_out_folder_that_is_a_file_is_refused_before_anything_runs(tmp_path, capsys):
    from symrl.cli import main

    (tmp_path / "afile").write_text("mine")
    for out, message in ((tmp_path / "afile", "afile is a file; `out` takes a folder for the sweep's runs"),
                         (tmp_path / "afile" / "sub", "cannot create .*afile/sub .*afile is a file")):
        path = _write(tmp_path, _spec(out))
        for extra in (["--dry-run"], ["--no-progress"]):
            assert main(["sweep", str(path), *extra]) == 2
            assert re.search(message, capsys.readouterr().err)
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_key_given_twice_is_an_error_and_rules_match_labels_in_any_case(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(f"out: {tmp_path / 'out'}\nalgorithms:\n  PPO: ppo\n  PPO: sppo\nenvs: [CartPole-v1]\n")
    with pytest.raises(SymrlError, match="duplicate key 'PPO' \\(line 4\\)"):
        load_sweep(path)
    spec = {**_spec(tmp_path / "out"), "algorithms": ["ppo"], "cells": [{"where": {"algorithm": "ppo"}, "set": {"gamma": 0.9}}]}
    assert {cell.config.gamma for cell in load_sweep(_write(tmp_path, spec)).cells} == {0.9}  # the label is PPO


def test_cli_malformed_file_is_one_error_line_before_anything_starts(tmp_path):
    path = _write(tmp_path, {**_spec(tmp_path / "out"), "overrides": {"learning_rat": 1e-3}})
    result = _cli("sweep", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error:") and "learning_rat" in result.stderr
    assert not (tmp_path / "out").exists()


# -- running ----------------------------------------------------------------------------------------------


def test_the_progress_bar_never_steps_backwards_when_a_resumed_run_drops_rows(tmp_path):
    from symrl.sweeps.runner import Progress, SweepSummary

    sweep = parse_sweep(_spec(tmp_path / "out", seeds=1, algorithms=["ppo"]))
    metrics = sweep.run_dir(sweep.cells[0]) / runs.METRICS
    metrics.parent.mkdir(parents=True)
    metrics.write_text("step,updates\n128,1\n192,2\n")  # an interrupted run: logged up to step 192
    progress = Progress(sweep, enabled=True)
    assert progress.bar.n == 192
    metrics.write_text("step,updates\n128,1\n")  # resumed from its checkpoint at 128: the later row dropped
    progress.update(SweepSummary(name="t", cells=1))
    assert progress.bar.n == 192
    metrics.write_text("step,updates\n128,1\n192,2\n256,3\n")
    progress.update(SweepSummary(name="t", cells=1))
    assert progress.bar.n == 256
    progress.close()


def test_local_sweep_runs_skips_and_reports_a_failing_cell(tmp_path):
    spec = _spec(tmp_path / "out", algorithms={"PPO": "ppo", "SPPO": "sppo", "broken": {"algo": "ppo", "gamma": 0.98}})
    for seed in (0, 1):  # a file where the broken cells' checkpoints folder goes: they fail at their first checkpoint
        blocked = tmp_path / f"out/CartPole-v1/clean/broken/seed{seed}"
        blocked.mkdir(parents=True)
        (blocked / "checkpoints").write_text("in the way")
    sweep = parse_sweep(spec)
    summary = run_sweep(sweep, workers=2, progress=False)
    assert (summary.count("done"), summary.count("failed")) == (4, 2), summary.to_dict()
    assert all("checkpoints" in error for error in summary.errors.values()), summary.errors
    assert runs.read_status(tmp_path / "out/CartPole-v1/clean/broken/seed0")["state"] == "failed"
    assert (tmp_path / "out/sweep.json").is_file()

    again = run_sweep(parse_sweep(spec), workers=2, progress=False)  # failed cells start again (their files cleared)
    assert (again.count("skipped"), again.count("failed"), again.count("done")) == (4, 0, 2), again.to_dict()

    table = load_evaluations([tmp_path / "out"])
    assert set(table["algorithm"]) == {"PPO", "SPPO", "broken"} and set(table["seed"]) == {0, 1}
    assert len(final_evaluations(table)) == 6


def test_a_cell_another_sweep_is_running_is_left_alone(tmp_path):
    """Two sweeps over one out folder: a cell locked by the other (here: this process) is reported, not touched."""
    import fcntl

    from symrl.runs import LOCK

    spec = _spec(tmp_path / "out", seeds=1, algorithms=["ppo"])
    cell = tmp_path / "out/CartPole-v1/clean/PPO/seed0"
    cell.mkdir(parents=True)
    with open(cell / LOCK, "a") as held:
        fcntl.lockf(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as runs.RunLock takes it
        busy = run_sweep(parse_sweep(spec), workers=1, progress=False)
    assert busy.count("failed") == 1 and "another symrl process is running this cell" in next(iter(busy.errors.values()))
    assert not runs.holds_run(cell) and not (cell / runs.STATUS).exists()  # nothing written for it
    assert run_sweep(parse_sweep(spec), workers=1, progress=False).count("done") == 1  # free again


def test_changed_config_in_an_existing_folder_is_refused(tmp_path):
    spec = _spec(tmp_path / "out", seeds=1, algorithms=["ppo"])
    run_sweep(parse_sweep(spec), workers=1, progress=False)
    spec["overrides"] = {**TINY, "gamma": 0.5}
    with pytest.raises(SymrlError, match="gamma"):
        run_sweep(parse_sweep(spec), workers=1, progress=False)
    spec["overrides"], spec["steps"] = dict(TINY), 512  # more steps: the finished run is extended
    extended = run_sweep(parse_sweep(spec), workers=1, progress=False)
    assert extended.count("resumed") == 1
    assert runs.read_status(tmp_path / "out/CartPole-v1/clean/PPO/seed0")["step"] == 512


def test_killed_sweep_loses_nothing_and_a_rerun_completes_it(tmp_path):
    out = tmp_path / "out"
    spec = _spec(out, steps=6144, seeds=1, algorithms={"PPO": "ppo", "SPPO": "sppo", "A2C": "a2c"},
                 overrides={**TINY, "checkpoint_freq": 512, "eval_freq": 1024})
    cells = [out / "CartPole-v1/clean" / name / "seed0" for name in ("PPO", "SPPO", "A2C")]
    deadline = time.time() + 240
    with _sweep_process(tmp_path, spec, "--workers", "1") as process:  # killed (SIGKILL, workers too) at the end
        # wait for one finished cell and one with a checkpoint but unfinished
        while time.time() < deadline:
            states = [runs.read_status(c).get("state") for c in cells]
            if "finished" in states and any(s == "running" and (c / runs.CHECKPOINT).is_file()
                                            for s, c in zip(states, cells, strict=True)):
                break
            assert process.poll() is None, _printed(process)
            time.sleep(0.2)
        else:
            pytest.fail("the sweep did not reach a finished and a checkpointed cell in time")
    path = _write(tmp_path, spec)
    finished_before = {c for c in cells if runs.read_status(c).get("state") == "finished"}

    result = _cli("sweep", str(path), "--workers", "1", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    line = result.stdout.splitlines()[0]
    assert f"skipped {len(finished_before)}" in line and "resumed 1" in line and "failed 0" in line, line
    for cell in cells:
        status = runs.read_status(cell)
        assert status["state"] == "finished" and status["step"] == 6144
        steps = [int(row.split(",")[0]) for row in (cell / runs.EVAL).read_text().splitlines()[1:]]
        assert steps == sorted(set(steps)) and steps[-1] == 6144  # nothing logged twice after the resume


def test_an_interrupted_cell_beyond_lowered_steps_keeps_its_progress(tmp_path, capsys):
    """A cell interrupted at step 512 in a sweep whose steps are then lowered to 256: it cannot resume there, and
    it must not become 'failed' either (the next run would restart it from zero); the dry run names the refusal."""
    spec = _spec(tmp_path / "out", seeds=1, algorithms=["ppo"], steps=512)
    run_sweep(parse_sweep(spec), workers=1, progress=False)
    cell = tmp_path / "out/CartPole-v1/clean/PPO/seed0"
    runs.write_status(cell, "interrupted", step=512)
    checkpoint = (cell / runs.CHECKPOINT).read_bytes()
    spec["steps"] = 256
    for _ in range(2):
        summary = run_sweep(parse_sweep(spec), workers=1, progress=False)
        assert "already at step 512, beyond a budget of 256 steps" in summary.errors["CartPole-v1/clean/PPO/seed0"]
        assert runs.read_status(cell)["state"] == "interrupted" and (cell / runs.CHECKPOINT).read_bytes() == checkpoint
    spec["overrides"] = {**TINY, "gamma": 0.5}
    result = _cli("sweep", str(_write(tmp_path, spec)), "--dry-run", cwd=tmp_path)
    assert result.returncode == 2 and "holds a run with a different config (gamma" in result.stderr


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_cell_stopped_from_outside_is_interrupted_and_resumes(tmp_path, monkeypatch, stop):
    """Ctrl-C, or the SystemExit with which Ray tears a worker down when its sweep stops: the cell says
    "interrupted" (not "failed", which the next sweep would restart from zero) and resumes from its checkpoint."""
    from symrl.sweeps.runner import plan, run_cell  # noqa: PLC0415
    from symrl.trainer import Trainer  # noqa: PLC0415

    sweep = parse_sweep(_spec(tmp_path / "out", seeds=1, algorithms=["ppo"], steps=1024,
                              overrides={**TINY, "checkpoint_freq": 256}))
    cell, update, calls = sweep.cells[0], Trainer.update, []
    path = sweep.run_dir(cell)

    def stopped_at_the_fourth_update(self, *args):
        calls.append(1)
        if len(calls) == 4:
            raise stop
        return update(self, *args)

    monkeypatch.setattr(Trainer, "update", stopped_at_the_fourth_update)
    with pytest.raises(stop):
        run_cell(str(path), cell.config.to_dict(), cell.labels, 0)
    monkeypatch.undo()
    assert runs.read_status(path)["state"] == "interrupted" and plan(path, cell) == "resume"
    summary = run_sweep(sweep, workers=1, progress=False)
    assert summary.outcomes[cell.key] == "resumed" and runs.read_status(path)["step"] == 1024


def test_a_run_calling_sys_exit_fails_its_cell_in_a_local_worker(tmp_path, monkeypatch):
    """Only Ray's teardown makes SystemExit a stop: in a local worker it is the run's own doing, a failure with its
    message (not a dead worker, retried three times and reported as killed)."""
    from multiprocessing import Pipe  # noqa: PLC0415

    from symrl.sweeps.runner import _serve_cells  # noqa: PLC0415
    from symrl.trainer import Trainer  # noqa: PLC0415

    sweep = parse_sweep(_spec(tmp_path / "out", seeds=1, algorithms=["ppo"]))
    cell = sweep.cells[0]
    monkeypatch.setattr(Trainer, "update", lambda *_: sys.exit(3))
    sweep_end, worker_end = Pipe()
    sweep_end.send((str(sweep.run_dir(cell)), cell.config.to_dict(), cell.labels))
    sweep_end.send(None)  # then stop
    _serve_cells(worker_end, 0)
    result = sweep_end.recv()
    assert result["outcome"] == "failed" and "sys.exit(3)" in result["error"]
    assert runs.read_status(sweep.run_dir(cell))["state"] == "failed"


def test_a_restarted_cell_keeps_its_labels(tmp_path):
    """A failed cell is trained again from the start; the report must still know what the sweep calls it."""
    spec = _spec(tmp_path / "out", seeds=1, algorithms=["ppo"], noise={"noisy 0.1": "gaussian:0.1"})
    run_sweep(parse_sweep(spec), progress=False)
    cell = tmp_path / "out/CartPole-v1/noisy_0.1/PPO/seed0"
    runs.write_status(cell, "failed", step=0)
    again = run_sweep(parse_sweep(spec), progress=False)
    assert again.count("done") == 1 and runs.read_status(cell)["state"] == "finished"
    assert set(load_evaluations([tmp_path / "out"])["noise"]) == {"noisy 0.1"}


@pytest.mark.slow  # Ray's start-up dominates; the default suite runs cells on Ray in the killed-worker test
def test_ray_backend_runs_cells_as_ray_tasks(tmp_path):
    pytest.importorskip("ray")
    spec = _spec(tmp_path / "out", seeds=1)
    path = _write(tmp_path, spec)
    result = _cli("sweep", str(path), "--backend", "ray", "--workers", "2", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done 2" in result.stdout and "failed 0" in result.stdout
    for name in ("PPO", "SPPO"):
        assert runs.read_status(tmp_path / "out/CartPole-v1/clean" / name / "seed0")["state"] == "finished"
    again = _cli("sweep", str(path), "--backend", "ray", "--no-progress", cwd=tmp_path)
    assert "skipped 2" in again.stdout


LISTENERS = """
import sys
from pathlib import Path

def listeners():
    found = set()
    for table in ("tcp", "tcp6"):
        for row in Path("/proc/net", table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            if state == "0A":  # LISTEN
                found.add(local)
    return found

before = listeners()
import ray
from symrl.sweeps.runner import _init_local_ray
_init_local_ray(ray, 1)
assert ray.get(ray.remote(lambda: 1).remote()) == 1
new = listeners() - before
ray.shutdown()
print(" ".join(sorted(new)))
"""


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket tables")
def test_the_local_ray_listens_on_the_loopback_interface_only():
    pytest.importorskip("ray")
    result = subprocess.run([sys.executable, "-c", LISTENERS], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    addresses = [local.split(":")[0] for local in result.stdout.split()]
    assert addresses, "Ray opened no listening socket: the check would pass vacuously"
    loopback = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}
    assert set(addresses) <= loopback, f"Ray listens beyond the loopback interface: {result.stdout}"


def test_backend_errors(tmp_path):
    sweep = parse_sweep(_spec(tmp_path / "out"))
    with pytest.raises(SymrlError, match="--backend ray"):
        run_sweep(sweep, address="auto", progress=False)
    with pytest.raises(SymrlError, match="unknown backend"):
        run_sweep(sweep, backend="slurm", progress=False)
    with socket.socket() as closed:  # a port nobody listens on: refused at once, not minutes of Ray's retries
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    pytest.importorskip("ray")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sweep.json").write_text("the last sweep's summary")
    with pytest.raises(SymrlError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        run_sweep(sweep, backend="ray", address=f"127.0.0.1:{port}", progress=False)
    assert (tmp_path / "out" / "sweep.json").read_text() == "the last sweep's summary"  # nothing ran: kept


@pytest.mark.slow  # a minute: Ray's join refused after its retries, and the head's drain on SIGTERM
def test_a_sweep_joins_a_cluster_started_with_ray_start(tmp_path):
    """`ray start --head` where a token exists: its cluster asks for the token (Ray 2.59 and later), so the sweep
    joins with RAY_AUTH_MODE=token and, without it, says to set it."""
    pytest.importorskip("ray")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    token = tmp_path / "auth_token"  # ray start turns token authentication on where a token exists
    token.write_text("symrl-test-" + os.urandom(16).hex())
    plain = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"RAY_AUTH_TOKEN_PATH": str(token)}
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}",
                             "--node-ip-address=127.0.0.1", "--num-cpus=1", "--include-dashboard=false", "--block"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=plain)
    try:
        deadline = time.time() + 90
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert time.time() < deadline and head.poll() is None, "ray start did not come up"
            time.sleep(0.5)
        path = str(_write(tmp_path, _spec(tmp_path / "out", steps=256, seeds=1, algorithms=["ppo"])))
        join = ["sweep", path, "--backend", "ray", "--address", f"127.0.0.1:{port}", "--no-progress"]
        refused = _cli(*join, cwd=tmp_path, env=plain)
        assert refused.returncode == 2 and "needs RAY_AUTH_MODE=token here too" in refused.stderr, refused.stderr[-2000:]
        joined = _cli(*join, cwd=tmp_path, env={**plain, "RAY_AUTH_MODE": "token"})
        assert joined.returncode == 0 and "done 1" in joined.stdout, joined.stderr[-2000:]
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # ray start --block stops the cluster's processes
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


class _Silent(http.server.BaseHTTPRequestHandler):
    def log_message(self, *_):  # Ray's HTTP/2 preface arrives as a bad request: say nothing
        pass


def test_an_address_that_answers_but_is_no_ray_cluster_fails_in_seconds(tmp_path):
    """A web server's port (as the dashboard's 8265 would be, given instead of the GCS port): Ray itself retries
    for minutes; the sweep gives up at its deadline with one line naming the fix."""
    pytest.importorskip("ray")
    from ray.util import get_node_ip_address  # noqa: PLC0415 - the address Ray dials for a local one

    server = http.server.ThreadingHTTPServer((get_node_ip_address(), 0), _Silent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = "{}:{}".format(*server.server_address)
    sweep = str(_write(tmp_path, _spec(tmp_path / "out")))
    join = ["sweep", sweep, "--backend", "ray", "--address", address, "--no-progress"]
    try:
        bad = _cli(*join, cwd=tmp_path, env={**os.environ, "SYMRL_RAY_JOIN_SECONDS": "soon"})
        assert bad.returncode == 2 and "SYMRL_RAY_JOIN_SECONDS must be a positive number of seconds, got 'soon'" in bad.stderr
        start = time.time()
        result = _cli(*join, cwd=tmp_path, env={**os.environ, "SYMRL_RAY_JOIN_SECONDS": "3"})
    finally:
        server.shutdown()
    assert result.returncode == 2 and f"error: no Ray cluster joined at {address} in " in result.stderr, result.stderr[-2000:]
    assert "port 6379" in result.stderr and time.time() - start < 120  # Ray's own retries: minutes
    assert not (tmp_path / "out" / "CartPole-v1").exists()


@pytest.mark.parametrize("name,cells", [("paper_atari", 360), ("paper_atari_a2c", 240), ("paper_mujoco", 2400),
                                        ("paper_mujoco_a2c", 1440), ("reduced_mujoco", 60), ("reduced_atari", 12),
                                        ("robustness/pilot_classic", 80), ("robustness/pilot_acrobot_50k", 40),
                                        ("robustness/pilot_box2d", 20), ("robustness/pilot_mujoco", 40),
                                        ("robustness/pilot_minatar", 60), ("robustness/pilot_mujoco_400k", 20),
                                        ("robustness/pilot_box2d_150k", 20), ("rlvr_arithmetic", 24),
                                        ("robustness/main_classic", 560), ("robustness/main_minatar", 144),
                                        ("robustness/main_box2d", 80), ("robustness/main_mujoco", 144),
                                        ("minatar_reference", 15)])
def test_study_files_resolve(name, cells):
    sweep = load_sweep(Path(__file__).parents[1] / "studies" / f"{name}.yaml")
    assert len(sweep.cells) == cells
    if name == "paper_mujoco":  # preset budgets survive: Walker2d 5M, the others 2M
        steps = {c.labels["env"]: c.config.total_steps for c in sweep.cells}
        assert steps["Walker2d-v4"] == 5_000_000 and steps["Hopper-v4"] == 2_000_000
        scaled = next(c for c in sweep.cells if c.labels["algorithm"] == "scaled DPPO")
        dsppo = next(c for c in sweep.cells if c.labels["algorithm"] == "DSPPO")
        assert scaled.config.policy_coef == dsppo.config.alpha + dsppo.config.beta * abs(dsppo.config.z)


def _as_in_a_terminal() -> None:
    """Ctrl-C as a user's terminal delivers it: the default SIGINT action, unblocked. A test run started in the
    background of a non-interactive shell (``make test &``, some CI runners) has SIGINT ignored, which every child
    inherits: the sweep would then never see the Ctrl-C these tests send (the cause of the old 'did not exit
    within 60 s' failures)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextlib.contextmanager
def _sweep_process(tmp_path: Path, spec: dict, *flags: str):
    """``symrl sweep`` on ``spec`` in a session of its own, killed with everything it started when the test ends.
    Its output goes to files, not pipes: a process it left behind holding a pipe would block the test's read."""
    command = [sys.executable, "-m", "symrl.cli", "sweep", str(_write(tmp_path, spec)), *flags, "--no-progress"]
    with open(tmp_path / "sweep.stdout", "w") as stdout, open(tmp_path / "sweep.stderr", "w") as stderr:
        process = subprocess.Popen(command, cwd=tmp_path, stdout=stdout, stderr=stderr, start_new_session=True,
                                   preexec_fn=_as_in_a_terminal)
    process.logs = tmp_path  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):  # nothing of the session left
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _session(process: subprocess.Popen) -> str:
    """The processes still in the sweep's session (its workers and theirs), one line each."""
    return subprocess.run(["ps", "-o", "pid=,ppid=,stat=,etime=,args=", "-s", str(process.pid)], capture_output=True,
                          text=True).stdout.strip()


def _printed(process: subprocess.Popen) -> tuple[str, str]:
    return tuple((process.logs / f"sweep.{name}").read_text() for name in ("stdout", "stderr"))


def _exited(process: subprocess.Popen, seconds: float) -> tuple[str, str]:
    """What the sweep printed (stdout, stderr) once it has exited; fails naming its processes if it has not."""
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the sweep did not exit within {seconds} s; its session holds:\n{_session(process)}\n"
                    f"stderr: {_printed(process)[1][-2000:]}")
    return _printed(process)


def _wait_for_checkpoint(process: subprocess.Popen, cell: Path, seconds: float = 180) -> None:
    deadline = time.time() + seconds
    while not (cell / runs.CHECKPOINT).is_file():
        assert time.time() < deadline and process.poll() is None, _printed(process)
        time.sleep(0.05)


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_killed_worker_is_replaced_and_its_cell_resumes(tmp_path, backend):
    """A cell whose worker process died runs again (Ray's task retry, or a new local worker) from its checkpoint."""
    if backend == "ray":
        pytest.importorskip("ray")
    out = tmp_path / "out"
    spec = _spec(out, steps=8192, seeds=1, algorithms=["ppo"], overrides={**TINY, "checkpoint_freq": 512, "eval_freq": 2048})
    cell = out / "CartPole-v1/clean/PPO/seed0"
    with _sweep_process(tmp_path, spec, "--backend", backend, "--workers", "1") as process:
        _wait_for_checkpoint(process, cell)
        find = ["pgrep", "-f", "ray::run_cell"] if backend == "ray" else \
            ["pgrep", "-f", "-P", str(process.pid), "multiprocessing.spawn"]
        workers = subprocess.run(find, capture_output=True, text=True).stdout.split()
        assert workers, "no worker process running the cell"
        for pid in workers:
            os.kill(int(pid), signal.SIGKILL)
        stdout, stderr = _exited(process, 300)
    assert process.returncode == 0, stderr[-3000:]
    assert "failed 0" in stdout
    status = runs.read_status(cell)
    assert status["state"] == "finished" and status["step"] == 8192
    steps = [int(row.split(",")[0]) for row in (cell / runs.METRICS).read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == 8192


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_ctrl_c_stops_a_sweep_at_once(tmp_path, backend):
    """Ctrl-C (SIGINT to the process group) ends the sweep and every process it started; the running cell says
    "interrupted" (it resumes from its checkpoint when the sweep runs again); the queued cells do not start."""
    if backend == "ray":
        pytest.importorskip("ray")
    out = tmp_path / "out"
    spec = _spec(out, steps=200_000, seeds=3, algorithms=["ppo"], overrides={**TINY, "checkpoint_freq": 512})
    first = out / "CartPole-v1/clean/PPO/seed0"
    with _sweep_process(tmp_path, spec, "--backend", backend, "--workers", "1") as process:
        _wait_for_checkpoint(process, first, seconds=120)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = _exited(process, 60)
        deadline = time.time() + 20
        while _session(process) and time.time() < deadline:
            time.sleep(0.1)
        assert not _session(process), f"left running after the sweep exited:\n{_session(process)}"
    assert process.returncode == 130 and "interrupted" in stderr, stderr[-3000:]
    assert runs.read_status(first)["state"] == "interrupted", runs.read_status(first)
    assert "leaked" not in stderr, stderr[-3000:]
    assert not (out / "CartPole-v1/clean/PPO/seed1").exists() and not (out / "CartPole-v1/clean/PPO/seed2").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_sweep_alone_interrupts_its_cells_and_writes_the_summary(tmp_path, sig):
    """Issue 25: SIGTERM to a sweep (a scheduler, `kill`), or SIGINT to its parent process alone, left the running
    cell saying "running" at step 0 and wrote no sweep.json. The sweep passes the stop on to its workers."""
    out = tmp_path / "out"
    spec = _spec(out, steps=200_000, seeds=2, algorithms=["ppo"], overrides={**TINY, "checkpoint_freq": 512})
    first = out / "CartPole-v1/clean/PPO/seed0"
    with _sweep_process(tmp_path, spec, "--workers", "1") as process:
        _wait_for_checkpoint(process, first, seconds=120)
        deadline = time.time() + 30  # the status follows the checkpoints while the run trains
        while runs.read_status(first).get("step", 0) == 0 and time.time() < deadline:
            time.sleep(0.05)
        assert runs.read_status(first)["state"] == "running" and runs.read_status(first)["step"] >= 512
        os.kill(process.pid, sig)
        _, stderr = _exited(process, 60)
    assert process.returncode == 130 and "interrupted" in stderr, stderr[-3000:]
    assert runs.read_status(first)["state"] == "interrupted", runs.read_status(first)
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["stopped"] == "interrupted", summary


DYING_ENV = """
import os
import gymnasium as gym
from gymnasium.envs.classic_control import CartPoleEnv


class DyingCartPole(CartPoleEnv):
    '''CartPole whose process dies at its tenth step: a crash in a simulator, or the kernel's out-of-memory killer.'''

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps == 10:
            os._exit(9)
        return super().step(action)


gym.register("DyingCartPole-v0", entry_point=DyingCartPole, max_episode_steps=500)
"""


def test_a_cell_that_kills_its_worker_fails_alone(tmp_path, monkeypatch):
    """The other cells finish; the dying cell is retried in fresh workers, then reported with its exit code."""
    (tmp_path / "symrl_dying_env.py").write_text(DYING_ENV)
    monkeypatch.syspath_prepend(str(tmp_path))  # the spawned workers start with this process's sys.path
    spec = _spec(tmp_path / "out", seeds=2, algorithms=["ppo"],
                 envs=["CartPole-v1", "symrl_dying_env:DyingCartPole-v0"])
    summary = run_sweep(parse_sweep(spec), workers=2, progress=False)
    assert (summary.count("done"), summary.count("failed")) == (2, 2), summary.to_dict()
    errors = [summary.errors[key] for key in summary.errors]
    assert len(errors) == 2 and all("exit code 9" in e and "4 times" in e for e in errors), errors
    for seed in (0, 1):
        assert runs.read_status(tmp_path / f"out/CartPole-v1/clean/PPO/seed{seed}")["state"] == "finished"


def test_labels_of_dots_stay_inside_out_and_other_scripts_keep_their_letters(tmp_path):
    """Issue 25: '.' and '..' named the noise folder itself or its parent (a run outside `out`, cells sharing a
    folder); non-ASCII labels all became '_'."""
    from symrl.sweeps.spec import slug

    assert (slug("."), slug(".."), slug("日本語"), slug("scaled PPO"), slug("a/b")) == ("_", "__", "日本語", "scaled_PPO", "a_b")
    sweep = parse_sweep(_spec(tmp_path / "out", seeds=1, algorithms={"..": "ppo", "日本語": "sppo"},
                              noise={"..": None, ".": "gaussian:0.1"}))
    folders = [sweep.run_dir(cell).resolve() for cell in sweep.cells]
    assert len(set(folders)) == 4 and all((tmp_path / "out").resolve() in f.parents for f in folders)
    with pytest.raises(SymrlError, match="two labels map to the same folder"):
        parse_sweep(_spec(tmp_path / "out", seeds=1, noise={".": None, "_": "gaussian:0.1"}))  # both '_'


def test_a_grid_beyond_any_study_is_refused_at_once(tmp_path):
    """Issue 25: `seeds: 100000000 --dry-run` ran for minutes."""
    start = time.time()
    with pytest.raises(SymrlError, match="asks for 100,000,000 seeds; a sweep takes at most 10,000"):
        parse_sweep(_spec(tmp_path / "out", seeds=100_000_000))
    with pytest.raises(SymrlError, match="the grid has 2,000,000 cells"):
        parse_sweep(_spec(tmp_path / "out", seeds=list(range(10_000)), algorithms={f"a{i}": "ppo" for i in range(200)}))
    assert time.time() - start < 10


def test_yaml_bombs_and_huge_files_are_refused_at_once(tmp_path):
    """Issue 25: a nine-level alias bomb under env_kwargs took 40 s and 2.7 GB before a MemoryError traceback; a 37 MB
    preset was still loading after 120 s."""
    levels = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("bombs:\n" + "\n".join("  " + line for line in levels) + "\n" + yaml.safe_dump(
        _spec(tmp_path / "out", envs={"CartPole-v1": {}})))
    huge = tmp_path / "huge.yaml"
    huge.write_text(yaml.safe_dump(_spec(tmp_path / "out")) + "# " + "x" * 2_000_000 + "\n")
    start = time.time()
    with pytest.raises(SymrlError, match=r"bomb.yaml is not valid YAML \(its aliases \(\*name\) expand to more than"):
        load_sweep(bomb)
    with pytest.raises(SymrlError, match=r"huge.yaml is not valid YAML \(the file has 2,0"):
        load_sweep(huge)
    assert time.time() - start < 10


def test_a_language_model_run_older_than_new_config_fields_is_not_a_different_config(tmp_path):
    """A run folder whose config.yaml predates fields added since (their defaults are its values) is the same
    config: a re-run of the sweep skips or resumes it instead of refusing the folder."""
    from symrl.sweeps.runner import check_compatible

    sweep = load_sweep(Path(__file__).parents[1] / "studies" / "rlhf_sentiment.yaml")
    sweep = type(sweep)(name=sweep.name, out=tmp_path / "out", cells=sweep.cells)
    cell = sweep.cells[0]
    folder = sweep.run_dir(cell)
    folder.mkdir(parents=True)
    old = {k: v for k, v in cell.config.to_dict().items()
           if k not in ("reverse_mask", "group_size", "scale_rewards", "kl_mode", "loss_agg_mode")}
    runs.write_config(folder, {**old, "info": {}})
    check_compatible(sweep)  # no error
