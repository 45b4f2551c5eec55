"""Seconds per iteration of a `symrl rlhf` task: symrl's plain forward (symrl.rlhf.decoder) vs ``model(...)``.

The same task, algorithm, config and seed, twice per round: once with the plain forward (the default), once with
``decoder.set_enabled(False)`` (every forward through Hugging Face's ``model(...)``); rounds alternate the order.
Each run builds its trainer, runs one warm-up iteration, then times ``--iterations`` iterations (``trainer.step()``:
sampling, reward, reference, update). The task's assets must be prepared (``symrl rlhf --task arithmetic
--prepare-only``). The policy, its reference and a critic (``--algo ppo``) all switch together.

    .venv/bin/python benchmarks/bench_rlhf_forward.py --task arithmetic --algo grpo --rounds 2 --iterations 3
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch


def run(args, plain: bool) -> float:
    from symrl.rlhf import RLHFTrainer, decoder
    from symrl.rlhf.tasks import load_task, make_rlhf_config

    decoder.set_enabled(plain)
    cfg = make_rlhf_config(args.task, args.algo, seed=0, iterations=args.iterations + 1)
    setup = load_task(cfg, log=lambda _: None)
    trainer = RLHFTrainer(cfg, setup.policy, setup.tokenizer, setup.reward_fn, setup.prompts)
    assert (decoder.plain_forward(trainer.policy) is not None) == plain
    trainer.step()  # warm-up, not timed
    start = time.perf_counter()
    for _ in range(args.iterations):
        trainer.step()
    return (time.perf_counter() - start) / args.iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--algo", default="grpo")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per run (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    times: dict[str, list[float]] = {"plain": [], "model(...)": []}
    for round_ in range(args.rounds):
        order = ("plain", "model(...)") if round_ % 2 == 0 else ("model(...)", "plain")
        for name in order:
            times[name].append(run(args, plain=name == "plain"))
            print(f"round {round_ + 1}: {name:10s} {times[name][-1]:.2f} s/iteration", flush=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{args.task}, {args.algo}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| forward | s / iteration (median) | speed-up |")
    print("|---|---|---|")
    for name in times:
        print(f"| {name} | {median[name]:.2f} | {median['model(...)'] / median[name]:.2f}x |")


if __name__ == "__main__":
    main()
