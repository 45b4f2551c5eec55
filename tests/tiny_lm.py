"""Tiny real Hugging Face models for the RLHF tests: a word-level tokenizer, a 2-layer GPT-2 and a 1-layer
BERT sentiment classifier, built in memory or saved as folders the hub loaders read like hub models."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

WORDS = ["<pad>", "<eos>", "good", "bad", "the", "movie", "was", "a", "plot", "film", "very", "not", "it", "is", "and", "i"]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>")


def tiny_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=len(WORDS), n_positions=64,
                        bos_token_id=1, eos_token_id=1, pad_token_id=0)
    return GPT2LMHeadModel(config).eval()


def save_policy(folder: Path) -> Path:
    tiny_gpt2().save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def save_classifier(folder: Path, labels: tuple[str, str] = ("NEGATIVE", "POSITIVE")) -> Path:
    """A randomly initialised two-label classifier (its rewards differ between texts, which is all tests need)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS[2:]]))
    tokenizer = BertTokenizerFast(vocab=str(vocab))
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=5 + len(WORDS) - 2, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)}))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_dataset(folder: Path, splits: dict[str, list[dict]]) -> Path:
    """A local data set ``datasets.load_dataset(folder)`` reads: one JSON-lines file per split."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder
