"""Symmetric GRPO with Hugging Face TRL: SymmetricGRPOTrainer on a programmatic reward, offline on a CPU.

    python examples/trl_symmetric_grpo.py                                  # a tiny GPT-2 built here, ~30 s on 2 cores
    python examples/trl_symmetric_grpo.py --model PATH --target-word yes --steps 50 --prompts prompts.txt

The reward is an exact check on the decoded text: how many times the completion contains ``--target-word``.
Without ``--model`` the script builds a 2-layer GPT-2 over a 16-word vocabulary (random weights, nothing
downloaded), which learns to say "good" within about ten steps. ``--model`` takes a local causal-LM folder
(``save_pretrained`` layout, with its tokenizer); then lower the learning rate (default 1e-5) and give prompts.

Everything except the policy loss is TRL's: ``SymmetricGRPOConfig`` takes every ``GRPOConfig`` field. Note the
names: ``--kl-beta`` is TRL's ``beta`` (the KL coefficient), ``--beta`` is the symmetric loss's ``symmetric_beta``.
With ``--alpha C --beta 0`` (``C = alpha + beta * |z|``) the run is the scaled-GRPO control of SPEC 1.1, which
symmetric GRPO with the authors' mask trains exactly as.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from symrl.integrations.trl import SymmetricGRPOConfig, SymmetricGRPOTrainer

TINY_WORDS = ["<pad>", "<eos>", "good", "bad", "the", "movie", "was", "a", "plot", "film", "very", "not", "it", "is",
              "and", "i"]
TINY_PROMPTS = ["the movie was", "it is a", "the plot is", "i and the", "a film", "not the", "very", "it was"]
DEFAULT_PROMPTS = ["Answer yes or no: is the sky blue?", "Say something nice:", "Is water wet? Answer:",
                   "Reply in one word:", "Do you agree? Answer:", "Is this correct?", "Please confirm:", "Ready?"]


def build_tiny_model(folder: Path) -> Path:
    """Save a 2-layer GPT-2 over a 16-word word-level vocabulary (no dropout) and its tokenizer to ``folder``."""
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(TINY_WORDS)}, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>").save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=len(TINY_WORDS), n_positions=64, bos_token_id=1,
                        eos_token_id=1, pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def word_count_reward(target: str) -> Callable[..., list[float]]:
    """A TRL reward function: the number of whitespace-separated words of each completion equal to ``target``."""
    def reward(completions: list[str], **kwargs) -> list[float]:
        return [float(sum(word.strip(".,!?;:").lower() == target for word in text.split())) for text in completions]
    reward.__name__ = f"count_{target}"
    return reward


def mean_sampled_reward(model: torch.nn.Module, tokenizer, prompts: Sequence[str], reward: Callable, *,
                        samples: int, max_new_tokens: int, seed: int = 123) -> float:
    """Mean reward of ``samples`` sampled completions per prompt (temperature 1, seeded)."""
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    batch = tokenizer(list(prompts), return_tensors="pt", padding=True)
    model.eval()
    with torch.no_grad():
        out = model.generate(**batch, do_sample=True, max_new_tokens=max_new_tokens, num_return_sequences=samples,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return sum(reward(texts)) / len(texts)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="local causal-LM folder (default: a tiny GPT-2 built here)")
    parser.add_argument("--prompts", type=Path, help="text file, one prompt per line (default: built-in prompts)")
    parser.add_argument("--target-word", default=None, help="the rewarded word (default: 'good', or 'yes' with --model)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--lr", type=float, default=None, help="default 0.05 for the tiny model, 1e-5 with --model")
    parser.add_argument("--alpha", type=float, default=0.5, help="symmetric_alpha")
    parser.add_argument("--beta", type=float, default=0.4, help="symmetric_beta (not TRL's beta, see --kl-beta)")
    parser.add_argument("--z", type=float, default=-1.0, help="symmetric_z")
    parser.add_argument("--reverse-mask", choices=["ppo", "none"], default="ppo", help="symmetric_reverse_mask")
    parser.add_argument("--loss-type", default="dapo", choices=["dapo", "grpo", "bnpo", "dr_grpo"])
    parser.add_argument("--kl-beta", type=float, default=0.0, help="TRL's beta: the KL coefficient to the reference")
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=None, help="default 6 (tiny) / 32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="TRL's output_dir (default: a temporary folder)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tiny = args.model is None
        model_path = build_tiny_model(Path(tmp) / "tiny-gpt2") if tiny else args.model
        prompts = (args.prompts.read_text().splitlines() if args.prompts
                   else TINY_PROMPTS if tiny else DEFAULT_PROMPTS)
        prompts = [p for p in prompts if p.strip()]
        reward = word_count_reward(args.target_word or ("good" if tiny else "yes"))
        length = args.max_completion_length or (6 if tiny else 32)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

        before = mean_sampled_reward(AutoModelForCausalLM.from_pretrained(model_path), tokenizer, prompts, reward,
                                     samples=8, max_new_tokens=length)
        config = SymmetricGRPOConfig(
            output_dir=str(args.out or Path(tmp) / "out"),
            symmetric_alpha=args.alpha, symmetric_beta=args.beta, symmetric_z=args.z,
            symmetric_reverse_mask=args.reverse_mask,
            loss_type=args.loss_type, beta=args.kl_beta,
            learning_rate=args.lr if args.lr is not None else (0.05 if tiny else 1e-5),
            lr_scheduler_type="constant", max_steps=args.steps, seed=args.seed,
            num_generations=args.num_generations, per_device_train_batch_size=args.num_generations,
            generation_batch_size=2 * args.num_generations,  # two micro-batches per generation: the second is off-policy
            max_completion_length=length, temperature=1.0,
            use_cpu=not torch.cuda.is_available(), bf16=False, report_to="none", save_strategy="no",
            logging_steps=max(1, args.steps // 5), disable_dropout=True,
        )
        trainer = SymmetricGRPOTrainer(model=str(model_path), reward_funcs=reward, args=config,
                                       train_dataset=Dataset.from_dict({"prompt": prompts * 4}),
                                       processing_class=tokenizer)
        trainer.train()
        after = mean_sampled_reward(trainer.model, tokenizer, prompts, reward, samples=8, max_new_tokens=length)
    c = args.alpha + args.beta * abs(args.z)
    print(f"symmetric GRPO (alpha {args.alpha}, beta {args.beta}, z {args.z}, mask {args.reverse_mask}; "
          f"with the authors' mask = GRPO scaled by {c:g}), {args.steps} steps: "
          f"mean reward {before:.2f} -> {after:.2f}")
    return {"before": before, "after": after}


if __name__ == "__main__":
    main()
