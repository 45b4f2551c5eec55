"""The training loop: rollout -> advantages -> update -> log -> evaluate -> checkpoint; and resume.

``train(cfg, out=...)`` is the one entry point used by the CLI and the Python API.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch

from . import runs
from .advantages import compute_gae
from .agent import Agent
from .algos import a2c_update, ppo_update
from .algos.common import Batch, explained_variance
from .algos.update import UpdateSettings
from .config import Config
from .device import resolve_device
from .envs import make_train_envs
from .envs.make import make_eval_env
from .envs.normalize import ObsNormalizer, RewardScaler
from .errors import SymrlError, TrainingDiverged
from .evaluation import default_deterministic, evaluate, make_eval_envs
from .fast import make_engine
from .noise import AdvantageNoise, RewardNoise
from .optimizers import RMSpropTFLike
from .policies import ActorCritic, uses_cnn
from .rollout import Collector, RolloutBuffer
from .threads import set_torch_threads

# Evaluation episode j of evaluation k of the run with seed s starts from seed
# EVAL_SEED_OFFSET + s * EVAL_SEEDS_PER_RUN + k * eval_episodes + j: apart from the training envs' seeds (s + i),
# and, below a million evaluation episodes per run, apart from every other run's (seeds s and s + 1 shared
# nine in ten of them when the runs' windows were only 1 apart).
EVAL_SEED_OFFSET = 1_000_000
EVAL_SEEDS_PER_RUN = 1_000_000


@dataclass
class RunResult:
    """What ``train`` returns: the config, the steps trained, the evaluations (``final_return`` is the last one's
    mean), the run directory and the trained :class:`~symrl.agent.Agent`."""

    config: Config
    steps: int
    evaluations: list[dict] = field(default_factory=list)
    run_dir: Optional[Path] = None
    agent: Optional[Agent] = None

    @property
    def final_return(self) -> float:
        """Mean return of the last evaluation (NaN if none ran)."""
        return self.evaluations[-1]["mean_return"] if self.evaluations else float("nan")


def make_optimizer(cfg: Config, policy: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam for the PPO family, RMSprop (alpha 0.99, eps 1e-5) for A2C, as in the authors' presets: PyTorch's on
    MuJoCo, TensorFlow's rule (:class:`symrl.optimizers.RMSpropTFLike`) on Atari."""
    # Multi-tensor (foreach) and fused kernels: the same update rule, one kernel for all parameters
    # instead of a handful per parameter (the Nature CNN has 1.7M parameters in a few large tensors).
    if cfg.optimizer == "rmsprop_tf":
        return RMSpropTFLike(policy.parameters(), lr=cfg.learning_rate, alpha=cfg.rmsprop_alpha, eps=cfg.optimizer_eps)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(policy.parameters(), lr=cfg.learning_rate, alpha=cfg.rmsprop_alpha,
                                   eps=cfg.optimizer_eps, foreach=True)
    try:
        return torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate, eps=cfg.optimizer_eps, fused=True)
    except (RuntimeError, ValueError):  # torch < 2.4 has no fused Adam on the CPU
        return torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate, eps=cfg.optimizer_eps, foreach=True)


def _schedule(value: float, kind: str, progress_remaining: float) -> float:
    return value * progress_remaining if kind == "linear" else value


def _check_policy_fits(cfg: Config, action_space: gym.Space) -> None:
    if isinstance(action_space, gym.spaces.Box) and cfg.beta != 0:
        raise SymrlError(
            f"{cfg.algo} with beta={cfg.beta} needs action probabilities, but {cfg.env} has a Box action space "
            "and a Gaussian policy; pass --bins 11 (bins=11; the paper's discretisation) or --beta 0 (beta=0)"
        )


class Trainer:
    """Holds everything a run needs; ``run()`` trains to ``cfg.planned_steps`` (``total_steps`` rounded up to whole
    rollouts) or until an evaluation reaches ``cfg.stop_return``, and returns the :class:`RunResult`."""

    def __init__(self, cfg: Config, out: Optional[str | Path] = None, resume: bool = False, overwrite: bool = False):
        _check_is_config(cfg)
        if out is not None and not isinstance(out, (str, os.PathLike)):
            raise SymrlError(f"out must be a directory path (str or Path), got {type(out).__name__} {out!r:.40}")
        self.run_dir = Path(out) if out is not None else None
        if resume and self.run_dir is None:
            raise SymrlError("--resume needs --out DIR of the run to continue")
        self.cfg = cfg  # checked when it was built
        self.envs = self.eval_envs = None  # close() may run before they exist
        # held from here until run() ends: no second process trains, resumes or clears this run
        self.lock = runs.RunLock(self.run_dir) if self.run_dir is not None else None
        if self.run_dir is not None:
            runs.check_out(self.run_dir, resume, overwrite)
            try:
                self.lock.acquire()  # a folder it makes is removed again if the run does not start
            except OSError as exc:
                raise SymrlError(f"cannot create {self.run_dir} ({exc.strerror}); choose another --out") from None
        try:
            # read once, under the lock (what its last holder left), and refused before anything is built
            checkpoint = self._check_resumable(runs.safe_torch_load(self.run_dir / runs.CHECKPOINT)) if resume else None
            self._build(cfg)
            self._start(cfg, checkpoint, resume)
        except BaseException:
            self.close()  # the environments built so far and the run's lock
            raise

    def _build(self, cfg: Config) -> None:
        """Seeds, noise, environments, policy, optimizer, normalisers and buffer."""
        torch.manual_seed(cfg.seed)
        reward_seq, adv_seq, policy_seq = np.random.SeedSequence(cfg.seed).spawn(3)
        self.policy_rng = np.random.default_rng(policy_seq)  # action sampling of the NumPy engine
        self.reward_noise = RewardNoise(cfg.reward_noise_spec, np.random.default_rng(reward_seq))
        self.adv_noise = AdvantageNoise(cfg.adv_noise_spec, np.random.default_rng(adv_seq))

        self.envs = make_train_envs(cfg)
        obs_space, action_space = self.envs.single_observation_space, self.envs.single_action_space
        _check_policy_fits(cfg, action_space)
        self.device = resolve_device(cfg.device)
        set_torch_threads(cfg.torch_threads, uses_cnn(cfg, obs_space))  # before the weights: their init depends on it (LAPACK QR)
        self.policy = ActorCritic(obs_space, action_space, cfg).to(self.device)
        self.optimizer = make_optimizer(cfg, self.policy)
        self.obs_norm = ObsNormalizer(obs_space.shape, cfg.norm_obs, cfg.clip_obs)
        self.reward_scaler = RewardScaler(cfg.n_envs, cfg.gamma, cfg.norm_reward, cfg.clip_reward)
        self.eval_envs = make_eval_envs(cfg, min(cfg.eval_episodes, 16)) if cfg.eval_episodes else None
        self.deterministic_eval = default_deterministic(cfg)

    def _check_resumable(self, checkpoint: Any) -> dict:
        step = checkpoint.get("counters", {}).get("global_step", 0) if isinstance(checkpoint, dict) else 0
        # a run ends at the first whole rollout at or past total_steps: a checkpoint there is a finished run
        if step > self.cfg.planned_steps:
            raise SymrlError(f"the run in {self.run_dir} is already at step {step}, beyond a budget of "
                             f"{self.cfg.total_steps} steps; keep its budget or give a larger one")
        return checkpoint

    def _start(self, cfg: Config, checkpoint: Optional[dict], resume: bool) -> None:
        """The rest of construction: clear (--overwrite), restore the checkpoint, counters, engine, collector."""
        if not resume and self.run_dir is not None:
            runs.clear_run(self.run_dir)  # --overwrite
        self.global_step = 0
        self.updates = 0
        self.next_eval = cfg.eval_freq
        self.next_checkpoint = cfg.checkpoint_freq
        self.evaluations: list[dict] = []
        self.elapsed = 0.0  # training seconds, carried across resumes
        self.resumed = checkpoint is not None
        if checkpoint is not None:
            self._restore(checkpoint, self.run_dir / runs.CHECKPOINT)
        claim = getattr(self.envs, "core_claim", None)  # the cores this run holds (symrl.threads.claim_cores)
        self.engine = make_engine(cfg, self.policy, self.optimizer, self.policy_rng, claim.granted if claim else 1)
        # after the engine: a worker process it forks (symrl.fast.critic) shares no page of the buffer with this process,
        # whose first rollout would otherwise copy every page it writes (copy-on-write)
        space = self.envs.single_action_space
        lp_shape = (len(space.nvec),) if isinstance(space, gym.spaces.MultiDiscrete) else ()
        self.buffer = RolloutBuffer(cfg.n_steps, cfg.n_envs, self.envs.single_observation_space, space, lp_shape)
        self.update_settings = UpdateSettings.of(cfg)  # what both update paths read of the config
        env_seed = cfg.seed if not resume else cfg.seed + self.global_step
        self.collector = Collector(self.envs, self.obs_norm, self.reward_scaler, self.reward_noise, cfg.sign_reward, env_seed)

    # -- the loop --------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg = self.cfg
        nothing_to_do = self.resumed and self._done()
        metrics_log = eval_log = writer = None
        progress = _progress_bar(cfg, self.global_step)
        start_time, start_step, elapsed_before = time.time(), self.global_step, self.elapsed
        recent_returns: list[float] = []
        try:
            if self.run_dir is not None:
                if self.resumed:  # drop rows a killed run logged after its checkpoint
                    for name, columns in ((runs.METRICS, runs.METRIC_COLUMNS), (runs.EVAL, runs.EVAL_COLUMNS)):
                        runs.truncate_csv(self.run_dir / name, columns, self.global_step)
                runs.write_config(self.run_dir, cfg.to_dict())
                if self.resumed and not self._done():  # the model of a shorter budget: rewritten at the end
                    (self.run_dir / runs.MODEL).unlink(missing_ok=True)
                metrics_log = runs.CsvLog(self.run_dir / runs.METRICS, runs.METRIC_COLUMNS)
                eval_log = runs.CsvLog(self.run_dir / runs.EVAL, runs.EVAL_COLUMNS)
                writer = _tensorboard(self.run_dir, cfg, self.global_step)
                runs.write_status(self.run_dir, "running", step=self.global_step)
            while not self._done():
                stats = self.collector.collect(self.policy, self.buffer, self.engine)
                self.global_step += cfg.rollout_steps
                # the schedules' progress counts this rollout's steps, as in Stable-Baselines3 (and the authors'
                # runs): the k-th of n updates runs at 1 - k/n of the initial learning rate and clip range
                remaining = max(0.0, 1.0 - self.global_step / cfg.total_steps)
                lr = _schedule(cfg.learning_rate, cfg.lr_schedule, remaining)
                clip_range = _schedule(cfg.clip_range, cfg.clip_schedule, remaining)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                batch = self._batch()
                logs = self.update(batch, clip_range)
                self.updates += 1

                recent_returns = (recent_returns + stats.episode_returns)[-100:]
                elapsed = time.time() - start_time
                self.elapsed = elapsed_before + elapsed
                row = {
                    "step": self.global_step, "updates": self.updates, "time": self.elapsed,
                    "sps": (self.global_step - start_step) / max(elapsed, 1e-9),
                    "ep_return_mean": _mean(stats.episode_returns), "ep_length_mean": _mean(stats.episode_lengths),
                    "episodes": len(stats.episode_returns),
                    "explained_variance": explained_variance(batch.old_values, batch.returns),
                    "learning_rate": lr, "clip_range": clip_range if cfg.family == "ppo" else None, **logs,
                }
                if metrics_log:
                    metrics_log.write(row)
                    _tb_scalars(writer, "train", row, self.global_step)
                progress.update(cfg.rollout_steps)
                progress.set_postfix(ret=f"{_mean(recent_returns):.1f}", sps=f"{row['sps']:.0f}", refresh=False)

                last = self.global_step >= cfg.total_steps
                if cfg.eval_episodes and (self.global_step >= self.next_eval or last):
                    self._evaluate(eval_log, writer, progress)
                    while self.next_eval <= self.global_step:
                        self.next_eval += cfg.eval_freq
                    if cfg.stop_return is not None and self._final() >= cfg.stop_return:
                        last = True
                if self.run_dir is not None and (self.global_step >= self.next_checkpoint or last):
                    while self.next_checkpoint <= self.global_step:
                        self.next_checkpoint += cfg.checkpoint_freq
                    self._save_checkpoint()
                if last:
                    break
            if self.run_dir is not None:
                if not (nothing_to_do and (self.run_dir / runs.MODEL).is_file()):  # a finished run keeps its model
                    self._save_model()
                runs.write_status(self.run_dir, "finished", step=self.global_step, final_return=self._final())
        except TrainingDiverged as exc:
            if self.run_dir is not None:
                runs.record_stop(self.run_dir, exc, self.global_step)
            raise TrainingDiverged(f"at step {self.global_step}: {exc}") from None
        except BaseException as exc:
            if self.run_dir is not None:
                runs.record_stop(self.run_dir, exc, self.global_step)
            raise
        finally:
            progress.close()
            for log in (metrics_log, eval_log):
                if log:
                    log.close()
            if writer:
                writer.close()
            self.close()

        agent = Agent(self.policy, self.obs_norm, cfg)
        return RunResult(cfg, self.global_step, list(self.evaluations), self.run_dir, agent)

    # -- steps of the loop -------------------------------------------------------------------------------
    def update(self, batch: Batch, clip_range: float) -> dict:
        """One PPO or A2C update on ``batch`` through the NumPy engine or the torch path; returns the logs."""
        ppo, settings = self.cfg.family == "ppo", self.update_settings
        if not bool(torch.isfinite(batch.advantages).all()):  # diverged values or rewards: stop as for a non-finite loss
            raise TrainingDiverged("the advantages became non-finite (NaN or inf); training stopped and the last "
                                   "checkpoint (if one was written) is kept. Lower learning_rate or check the reward scale")
        if self.engine is not None:
            return self.engine.ppo_update(batch, settings, clip_range) if ppo else self.engine.a2c_update(batch, settings)
        if ppo:
            return ppo_update(self.policy, self.optimizer, batch, settings, clip_range)
        return a2c_update(self.policy, self.optimizer, batch, settings)

    def _batch(self) -> Batch:
        cfg, buf = self.cfg, self.buffer
        advantages, returns = compute_gae(buf.rewards, buf.values, buf.next_values, buf.dones, cfg.gamma, cfg.gae_lambda)
        advantages = self.adv_noise(advantages)  # flips the policy's advantages, not the value targets
        flat = lambda x: x.reshape(-1, *x.shape[2:]).to(self.device)  # noqa: E731
        return Batch(flat(buf.obs), flat(buf.actions), flat(buf.log_probs), flat(buf.values), flat(advantages), flat(returns))

    def _evaluate(self, eval_log, writer, progress) -> None:
        cfg = self.cfg
        seed = EVAL_SEED_OFFSET + cfg.seed * EVAL_SEEDS_PER_RUN + len(self.evaluations) * cfg.eval_episodes
        returns = evaluate(self.policy, self.eval_envs, self.obs_norm, cfg.eval_episodes, self.deterministic_eval, seed,
                           self.engine)
        row = {"step": self.global_step, "mean_return": float(returns.mean()), "std_return": float(returns.std()),
               "episodes": len(returns)}
        self.evaluations.append(row)
        if eval_log:
            eval_log.write(row)
            _tb_scalars(writer, "eval", row, self.global_step)
        if cfg.progress:
            progress.write(f"eval step={self.global_step} return={row['mean_return']:.1f} +- {row['std_return']:.1f}")

    def close(self) -> None:
        """Close the training and evaluation environments (their worker processes) and release the run's lock."""
        if self.envs is not None:
            self.envs.close()
        if getattr(self, "engine", None) is not None:
            self.engine.close()
        if self.eval_envs is not None:
            self.eval_envs.close()
        if self.lock is not None:
            self.lock.release()

    def _done(self) -> bool:
        """Whether the run has used its budget or reached ``stop_return`` (so a resumed finished run stays done)."""
        reached = self.cfg.stop_return is not None and bool(self.evaluations) and self._final() >= self.cfg.stop_return
        return self.global_step >= self.cfg.total_steps or reached

    def _final(self) -> float:
        return self.evaluations[-1]["mean_return"] if self.evaluations else float("nan")

    # -- persistence -----------------------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "format": 1,
            "config": self.cfg.to_dict(),
            "policy": self.policy.state_dict(),
            "obs_norm": self.obs_norm.state_dict(),
        }

    def _save_model(self) -> None:
        runs.atomic_torch_save(self._state(), self.run_dir / runs.MODEL)

    def _save_checkpoint(self) -> None:
        if self.engine is not None:
            self.engine.sync()
        state = self._state()
        state.update(
            optimizer=self.optimizer.state_dict(),
            reward_norm=self.reward_scaler.state_dict(),
            counters={"global_step": self.global_step, "updates": self.updates,
                      "next_eval": self.next_eval, "next_checkpoint": self.next_checkpoint,
                      "time": self.elapsed},
            evaluations=self.evaluations,
            rng={"torch": torch.get_rng_state(),
                 "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                 "reward_noise": self.reward_noise.rng.bit_generator.state,
                 "adv_noise": self.adv_noise.rng.bit_generator.state,
                 "policy": self.policy_rng.bit_generator.state},
        )
        runs.atomic_torch_save(state, self.run_dir / runs.CHECKPOINT)
        runs.write_status(self.run_dir, "running", step=self.global_step)  # what a resume would continue from

    def _restore(self, state: dict, path: Path) -> None:
        try:
            self.policy.load_state_dict(state["policy"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.obs_norm.load_state_dict(state["obs_norm"])
            self.reward_scaler.load_state_dict(state["reward_norm"])
            counters = state["counters"]
            torch.set_rng_state(state["rng"]["torch"])
            if self.device.type == "cuda" and state["rng"].get("cuda") is not None:  # the GPU's action sampling
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
            self.reward_noise.rng.bit_generator.state = state["rng"]["reward_noise"]
            self.adv_noise.rng.bit_generator.state = state["rng"]["adv_noise"]
            if "policy" in state["rng"]:
                self.policy_rng.bit_generator.state = state["rng"]["policy"]
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise SymrlError(f"checkpoint {path} does not match this run ({exc.__class__.__name__}); start a new run") from None
        self.global_step, self.updates = counters["global_step"], counters["updates"]
        self.next_eval, self.next_checkpoint = counters["next_eval"], counters["next_checkpoint"]
        self.elapsed = float(counters.get("time", 0.0))
        self.evaluations = list(state.get("evaluations", []))


def train(config: Optional[Config] = None, *, out: Optional[str | Path] = None, resume: bool = False,
          overwrite: bool = False, **overrides) -> RunResult:
    """Train one run. ``config`` is a :class:`Config` (e.g. from :func:`symrl.make_config`);
    without one, ``overrides`` (``algo=``, ``env=``, any Config field) resolve one from the presets.

    >>> result = symrl.train(algo="sppo", env="CartPole-v1", total_steps=50_000, out="runs/demo")
    >>> result.final_return, result.agent.act(obs)
    """
    from .config import make_config  # noqa: PLC0415

    if config is not None:
        _check_is_config(config)
    if resume:
        if config is not None or out is None:
            raise SymrlError("resume=True takes the run directory as out= and no config (it is read from the run)")
        config = resume_config(out, **overrides)
    elif config is None:
        config = make_config(**overrides)
    elif overrides:
        config = config.replace(**overrides)
    return Trainer(config, out=out, resume=resume, overwrite=overwrite).run()


# -- helpers ---------------------------------------------------------------------------------------------


def _check_is_config(config: object) -> None:
    if not isinstance(config, Config):
        raise SymrlError(f"expected a symrl.Config (from symrl.make_config), got {type(config).__name__} {config!r:.60}; "
                         "give the algorithm and the environment as keywords, e.g. symrl.train(algo='sppo', env='CartPole-v1')")


def check_fits(cfg: Config) -> None:
    """Refuse what :class:`Trainer` would refuse about ``cfg`` on its environment (bins or beta against the action
    space, the network against the observations, the vector backend), from one evaluation environment instead of
    the training ones: a sweep checks every cell before anything runs."""
    if cfg.vec_env == "ale":
        from .envs.ale_vector import ale_settings  # noqa: PLC0415

        ale_settings(cfg)
    elif cfg.vec_env == "envpool":
        from .envs.envpool_backend import envpool_task  # noqa: PLC0415

        envpool_task(cfg)
    env = make_eval_env(cfg)
    try:
        _check_policy_fits(cfg, env.action_space)
        ActorCritic(env.observation_space, env.action_space, cfg)  # the network against the observations
    finally:
        env.close()


def resume_config(run_dir: str | Path, **overrides) -> Config:
    """The saved config of ``run_dir``; on resume only ``total_steps`` and ``progress`` may change (any other setting
    may be given again with the run's own value, ``algo``, ``env`` and ``preset`` included)."""
    return runs.resume_config(Path(run_dir), Config, overrides)


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else float("nan")


def _progress_bar(cfg: Config, initial: int):
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(total=cfg.planned_steps, initial=initial, unit="step", disable=not cfg.progress,
                desc=f"{cfg.algo} {cfg.env}", dynamic_ncols=True)


def _tensorboard(run_dir: Path, cfg: Config, step: int):
    if not cfg.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415

    return SummaryWriter(log_dir=str(run_dir / runs.TENSORBOARD), purge_step=step or None)


def _tb_scalars(writer, prefix: str, row: dict, step: int) -> None:
    if writer is None:
        return
    for key, value in row.items():
        if key != "step" and isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
            writer.add_scalar(f"{prefix}/{key}", value, step)
