"""Seconds per PPO iteration and tokens per second: symrl.rlhf vs TRL 1.12's experimental PPOTrainer.

Both train the same tiny GPT-2 policy (random weights, a 512-word vocabulary) with a separate critic, a
frozen reference and a one-output GPT-2 reward model, on the same prompts, with the same batch, minibatch,
epochs and lengths. Every response is exactly ``--response-length`` tokens in both (TRL without a stop
token; symrl with ``min_new_tokens = max_new_tokens``). TRL scores token ids with its reward model;
symrl decodes the text and re-tokenises it for the reward model (its rewards act on text), which it pays
for here. symrl runs GPT-2's forward in its own plain code (symrl.rlhf.decoder) for the policy, reference and
critic (the reward model, a sequence classifier, through ``model(...)``); ``--hf-forward`` turns that off.
Runs alternate (symrl, TRL, symrl, ...) for ``--rounds`` rounds; the table reports medians.

Run in the benchmark's own environment (TRL is not a symrl dependency):
    benchmarks/setup_trl.sh && .venv-trl/bin/python benchmarks/bench_rlhf_vs_trl.py
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
import warnings

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedTokenizerFast

VOCAB = ["<pad>", "<eos>", *[f"w{i}" for i in range(510)]]


def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def config(args, labels: int = 0) -> GPT2Config:
    return GPT2Config(n_layer=args.layers, n_head=4, n_embd=args.width, vocab_size=len(VOCAB), n_positions=128,
                      bos_token_id=1, eos_token_id=1, pad_token_id=0, num_labels=max(labels, 1),
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0)


def models_for(args):
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(config(args)).eval()
    reward = GPT2ForSequenceClassification(config(args, labels=1)).eval()
    value = GPT2ForSequenceClassification(config(args, labels=1))
    value.transformer.load_state_dict(policy.transformer.state_dict())  # the critic starts from the policy's body
    return policy, reward, value


def prompts(args) -> list[str]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, len(VOCAB), (256, args.prompt_length), generator=g)
    return [" ".join(VOCAB[i] for i in row) for row in ids.tolist()]


def run_symrl(args) -> float:
    from symrl.rlhf import RLHFConfig, RLHFTrainer, decoder
    from symrl.rlhf.rewards import ClassifierReward

    decoder.set_enabled(not args.hf_forward)

    policy, reward_model, _ = models_for(args)
    tok = tokenizer()
    cfg = RLHFConfig(algo="ppo", iterations=args.iterations, batch_size=args.batch, minibatch_size=args.batch // args.minibatches,
                     epochs=args.epochs, learning_rate=1e-5, kl_coef=0.05, max_new_tokens=args.response_length,
                     min_new_tokens=args.response_length, top_k=0, max_prompt_tokens=args.prompt_length, gamma=1.0,
                     lam=0.95, vf_coef=0.1, clip_range=0.2, value_clip=0.2, seed=0)
    reward = ClassifierReward(reward_model, tok, batch_size=args.batch)
    trainer = RLHFTrainer(cfg, policy, tok, reward, prompts(args))
    trainer.step()  # warm-up iteration, not timed
    start = time.perf_counter()
    for _ in range(args.iterations):
        trainer.step()
    return (time.perf_counter() - start) / args.iterations


def run_trl(args) -> float:
    from datasets import Dataset
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    policy, reward_model, value = models_for(args)
    tok = tokenizer()
    tok.padding_side = "left"
    data = Dataset.from_dict({"input_ids": [tok(p)["input_ids"] for p in prompts(args)]})
    with tempfile.TemporaryDirectory() as out:
        def trainer(iterations: int) -> PPOTrainer:
            cfg = PPOConfig(output_dir=out, per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
                            num_mini_batches=args.minibatches, num_ppo_epochs=args.epochs,
                            total_episodes=args.batch * iterations, response_length=args.response_length,
                            local_rollout_forward_batch_size=args.batch, stop_token=None, temperature=1.0,
                            learning_rate=1e-5, kl_coef=0.05, cliprange=0.2, cliprange_value=0.2, vf_coef=0.1, gamma=1.0,
                            lam=0.95, num_sample_generations=0, report_to="none", save_strategy="no", logging_steps=1000,
                            use_cpu=True, bf16=False, fp16=False, seed=0, disable_tqdm=True, dataloader_num_workers=0)
            return PPOTrainer(cfg, tok, policy, None, reward_model, data, value)

        trainer(1).train()  # warm-up iteration, not timed (the models then carry on training; timing is unaffected)
        t = trainer(args.iterations)
        start = time.perf_counter()
        t.train()
        return (time.perf_counter() - start) / args.iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=4, help="timed PPO iterations per run")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--minibatches", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--response-length", type=int, default=32)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hf-forward", action="store_true",
                        help="symrl's policy, reference and critic through model(...), not its plain forward")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import trl

    times: dict[str, list[float]] = {"symrl": [], "TRL": []}
    for round_ in range(args.rounds):
        for name, fn in (("symrl", run_symrl), ("TRL", run_trl)):
            times[name].append(fn(args))
            print(f"round {round_ + 1}: {name:5s} {times[name][-1]:.3f} s/iteration", flush=True)
    tokens = args.batch * args.response_length
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\nGPT-2 {args.layers} layers x {args.width}, batch {args.batch}, {args.minibatches} minibatches, "
          f"{args.epochs} epochs, prompt {args.prompt_length} + response {args.response_length} tokens; "
          f"torch {torch.__version__}, TRL {trl.__version__}, {args.threads} threads, "
          f"symrl forward: {'model(...)' if args.hf_forward else 'plain'}, "
          f"{platform.processor() or platform.machine()}")
    print("| library | s / iteration (median) | response tokens / s | speed-up |")
    print("|---|---|---|---|")
    for name in ("symrl", "TRL"):
        print(f"| {name} | {median[name]:.3f} | {tokens / median[name]:.0f} | {median['TRL'] / median[name]:.2f}x |")


if __name__ == "__main__":
    main()
