"""Seconds per GRPO iteration and tokens per second: symrl.rlhf (algo="grpo") vs TRL 1.16's GRPOTrainer.

Both train the same tiny GPT-2 policy (random weights, a 512-word vocabulary, dropout off, fp32, on the CPU)
against a frozen reference with the same cheap programmatic reward on the decoded text (the share of response
words with an even number). One iteration = sample ``--group-size`` responses to each of ``--prompts``
prompts, score them, group-normalised advantages ((r - group mean) / group std), then ``--epochs`` optimizer
steps, each on the whole batch (one minibatch). Matched settings:

- batch ``G x prompts`` responses: symrl ``group_size=G, batch_size=minibatch_size=G*prompts``; TRL
  ``num_generations=G, per_device_train_batch_size=G*prompts, gradient_accumulation_steps=1,
  steps_per_generation=1`` (one generation per ``num_iterations`` optimizer steps, each on the whole batch);
- update passes: symrl ``epochs=E``, TRL ``num_iterations=E``; so one symrl iteration = E TRL optimizer steps,
  and TRL is timed per generation cycle (E steps);
- every response is exactly ``--response-length`` tokens: symrl ``min_new_tokens = max_new_tokens``; TRL
  ``max_completion_length`` with ``generation_kwargs={"min_new_tokens": L}`` (EOS suppressed until then;
  both scripts check the lengths);
- sampling: temperature 1, no top-k/top-p (symrl ``top_k=0``; TRL ``top_k=0, top_p=1``), TRL without vLLM;
- loss: clipped surrogate with clip 0.2, token-mean aggregation (symrl ``loss_agg_mode="token-mean"``; TRL
  ``loss_type="dapo"``, the same with one minibatch), KL to the reference as a loss term with the k3 estimator
  and coefficient ``--beta`` (symrl ``kl_mode="loss", kl_coef=beta``; TRL ``beta``, with
  ``use_bias_correction_kl=False`` so the KL term is the same), no entropy bonus;
- optimiser: fused AdamW at a constant learning rate 1e-5 (TRL ``lr_scheduler_type="constant"``), weight decay
  0.01 (torch's default, which symrl uses; TRL's Trainer exempts biases and LayerNorm weights from it),
  gradient norm clipped at 1.0; no gradient checkpointing, no mixed precision; TRL with logging, saving,
  evaluation, completion logging and progress bars off.

What differs (each library's own design, left as is):

- symrl keeps the log-probabilities its sampler recorded as the "old" ones; TRL recomputes them with a
  forward pass over the batch when ``num_iterations > 1`` (it skips it when 1: try ``--epochs 1``);
- symrl samples with its own KV-cache loop; TRL calls ``model.generate``;
- symrl runs GPT-2's forward pass in its own plain code (``symrl.rlhf.decoder``, on the model's own parameters;
  the same logits up to float rounding), TRL through ``model(...)``; ``--hf-forward`` makes symrl use ``model(...)``
  too, to see what each part buys;
- TRL always computes the per-token entropy in the training forward (its fused LM head, for the ``entropy``
  metric) and gathers metrics every step; symrl computes the entropy statistic outside autograd;
- symrl always scores the batch under the reference, even with ``--beta 0`` (TRL then skips it; the default
  keeps the KL term on in both);
- numerics of no cost: the advantages' epsilon (symrl 1e-6, TRL 1e-4), TRL's one shuffle per generation
  against symrl's one per epoch, and symrl's log-probabilities including the end-of-sequence ban before
  ``min_new_tokens`` (TRL scores the unconstrained distribution); TRL's Trainer loop (dataloader, callbacks,
  LR scheduler) is part of its time.

Timing: each library runs one warm-up iteration (TRL: the first E steps), then ``--iterations`` timed
iterations in the same trainer (symrl: ``trainer.step()``; TRL: ``train()`` with ``max_steps = E x (iterations
+ 1)``, clocked by a callback at the end of optimizer steps E and ``max_steps``, so trainer set-up and the
warm-up are left out); runs alternate (symrl, TRL, symrl, ...) for ``--rounds`` rounds and the table reports
medians. Use a quiet machine: background load skews the ratio (two threads on busy cores swing it either way).

    .venv/bin/python benchmarks/bench_grpo_vs_trl.py --rounds 5 --iterations 4   # TRL 1.16 is in the project's venv
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
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, TrainerCallback
from transformers.trainer_callback import PrinterCallback

VOCAB = ["<pad>", "<eos>", *[f"w{i}" for i in range(510)]]
LEARNING_RATE, CLIP, WEIGHT_DECAY, MAX_GRAD_NORM = 1e-5, 0.2, 0.01, 1.0


def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def policy_for(args) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=args.layers, n_head=4, n_embd=args.width, vocab_size=len(VOCAB),
                        n_positions=max(128, args.prompt_length + args.response_length),
                        bos_token_id=1, eos_token_id=1, pad_token_id=0,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config).eval()


def prompts(args) -> list[str]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, len(VOCAB), (256, args.prompt_length), generator=g)
    return [" ".join(VOCAB[i] for i in row) for row in ids.tolist()]


def even_words(prompts, completions, **kwargs) -> list[float]:
    """The reward, for both libraries: the share of response words whose number is even."""
    scores = []
    for text in completions:
        words = text.split()
        scores.append(sum(int(w[1:]) % 2 == 0 for w in words) / max(len(words), 1))
    return scores


def run_symrl(args) -> float:
    from symrl.rlhf import RLHFConfig, RLHFTrainer, decoder

    decoder.set_enabled(not args.hf_forward)

    batch = args.group_size * args.prompts
    cfg = RLHFConfig(algo="grpo", group_size=args.group_size, batch_size=batch, minibatch_size=batch,
                     epochs=args.epochs, iterations=args.iterations + 1, learning_rate=LEARNING_RATE,
                     kl_coef=args.beta, kl_mode="loss", loss_agg_mode="token-mean", scale_rewards="group",
                     clip_range=CLIP, max_grad_norm=MAX_GRAD_NORM, ent_coef=0.0, temperature=1.0, top_k=0,
                     max_new_tokens=args.response_length, min_new_tokens=args.response_length,
                     max_prompt_tokens=args.prompt_length, seed=0)
    trainer = RLHFTrainer(cfg, policy_for(args), tokenizer(), even_words, prompts(args))
    trainer.step()  # warm-up iteration, not timed
    start = time.perf_counter()
    lengths = [trainer.step()["response_length"] for _ in range(args.iterations)]
    seconds = (time.perf_counter() - start) / args.iterations
    assert all(length == args.response_length for length in lengths), f"symrl response lengths {lengths}"
    return seconds


class _Clock(TrainerCallback):
    """Time at the end of every optimizer step, and the completion lengths TRL recorded."""

    def __init__(self):
        self.stamps: dict[int, float] = {}
        self.trainer = None
        self.lengths: set[float] = set()

    def on_step_end(self, args, state, control, **kwargs):
        self.stamps[state.global_step] = time.perf_counter()
        metrics = self.trainer._metrics["train"]
        self.lengths |= set(metrics["completions/min_length"]) | set(metrics["completions/max_length"])


def run_trl(args) -> float:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    policy = policy_for(args)
    data = Dataset.from_dict({"prompt": prompts(args)})
    clock = _Clock()
    with tempfile.TemporaryDirectory() as out:
        if args.beta > 0:  # TRL builds its reference from the policy's path (from_pretrained): save the same weights
            policy.save_pretrained(out)
            policy.config._name_or_path = out
        cfg = GRPOConfig(output_dir=out, per_device_train_batch_size=args.group_size * args.prompts,
                         gradient_accumulation_steps=1, steps_per_generation=1, num_generations=args.group_size,
                         num_iterations=args.epochs, max_steps=args.epochs * (args.iterations + 1),
                         max_completion_length=args.response_length,
                         generation_kwargs={"min_new_tokens": args.response_length},
                         temperature=1.0, top_k=0, top_p=1.0, beta=args.beta, use_bias_correction_kl=False,
                         epsilon=CLIP, loss_type="dapo", scale_rewards="group", learning_rate=LEARNING_RATE,
                         lr_scheduler_type="constant", weight_decay=WEIGHT_DECAY, max_grad_norm=MAX_GRAD_NORM,
                         use_vllm=False, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
                         disable_dropout=True, logging_strategy="no", save_strategy="no", eval_strategy="no",
                         report_to="none", log_completions=False, disable_tqdm=True, dataloader_num_workers=0,
                         seed=0)
        trainer = GRPOTrainer(policy, reward_funcs=even_words, args=cfg, train_dataset=data,
                              processing_class=tokenizer(), callbacks=[clock])
        trainer.remove_callback(PrinterCallback)  # it prints the end-of-training metrics
        clock.trainer = trainer
        trainer.train()
    first, last = args.epochs, args.epochs * (args.iterations + 1)  # after the warm-up cycle; the last step
    assert clock.lengths == {float(args.response_length)}, f"TRL completion lengths {sorted(clock.lengths)}"
    return (clock.stamps[last] - clock.stamps[first]) / args.iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=4, help="timed GRPO iterations per run (after one warm-up)")
    parser.add_argument("--group-size", type=int, default=4, help="responses per prompt (G)")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per iteration (batch = G x prompts)")
    parser.add_argument("--epochs", type=int, default=2, help="update passes over the batch (TRL num_iterations)")
    parser.add_argument("--beta", type=float, default=0.04, help="KL coefficient (k3 loss term); 0 = off")
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--response-length", type=int, default=32)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hf-forward", action="store_true", help="symrl through model(...), not its plain forward")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import transformers
    import trl

    transformers.utils.logging.disable_progress_bar()  # saving and loading TRL's reference
    transformers.utils.logging.set_verbosity_error()

    times: dict[str, list[float]] = {"symrl": [], "TRL": []}
    for round_ in range(args.rounds):
        for name, fn in (("symrl", run_symrl), ("TRL", run_trl)):
            times[name].append(fn(args))
            print(f"round {round_ + 1}: {name:5s} {times[name][-1]:.3f} s/iteration", flush=True)
    batch = args.group_size * args.prompts
    tokens = batch * args.response_length
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\nGRPO, GPT-2 {args.layers} layers x {args.width}, {args.prompts} prompts x group {args.group_size} = "
          f"batch {batch}, one minibatch, {args.epochs} epochs, beta {args.beta:g}, prompt {args.prompt_length} + "
          f"response {args.response_length} tokens; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"TRL {trl.__version__}, {torch.get_num_threads()} threads, "
          f"symrl forward: {'model(...)' if args.hf_forward else 'plain (symrl.rlhf.decoder)'}, "
          f"{platform.processor() or platform.machine()}, "
          f"{platform.platform()}")
    print("| library | s / iteration (median) | response tokens / s | speed-up |")
    print("|---|---|---|---|")
    for name in ("symrl", "TRL"):
        print(f"| {name} | {median[name]:.3f} | {tokens / median[name]:.0f} | {median['TRL'] / median[name]:.2f}x |")


if __name__ == "__main__":
    main()
