"""The `sentiment` task's reward model and prompts, from human-rated movie-review snippets.

The reward model is a frozen sentence encoder (all-MiniLM-L6-v2: mean pooling, L2 normalisation, as it was
trained) with a logistic-regression head fitted on the snippets' signs (mean rating above +0.5 positive,
below -0.5 negative; the rest are too mixed to label). Its reward is the positive-class probability of
prompt + response, as ``lvwerra/distilbert-imdb`` is used in the paper. Its accuracy on held-out snippets
is measured once and reported with every run: a learned reward is wrong on some inputs, which is the
point of the paper's RLHF experiments.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .. import runs

NEUTRAL = 0.5  # snippets with |mean rating| below this get no label
HELDOUT = 0.2  # share of snippets kept out of the reward model's training (prompts come from them)
LABELS = {"negative": 0, "positive": 1}


def split_snippets(snippets: Sequence[tuple[float, str]], seed: int = 0) -> dict:
    """A fixed, seeded split: ``{"train": [[rating, text], ...], "heldout": [...]}``."""
    order = np.random.default_rng(seed).permutation(len(snippets))
    cut = int(round(len(snippets) * (1 - HELDOUT)))
    rows = [[float(snippets[i][0]), snippets[i][1]] for i in order]
    return {"train": rows[:cut], "heldout": rows[cut:]}


def labelled(rows: Sequence[Sequence]) -> tuple[list[str], torch.Tensor]:
    kept = [(text, int(rating > 0)) for rating, text in rows if abs(rating) >= NEUTRAL]
    return [t for t, _ in kept], torch.tensor([y for _, y in kept])


def split_prompt(text: str, max_words: int = 8) -> tuple[str, str]:
    """The first half of a snippet's words (at most ``max_words``), which the policy continues, and the
    rest (with its leading space), the human continuation."""
    words = text.split()
    cut = max(1, min(max_words, len(words) // 2))
    return " ".join(words[:cut]), " " + " ".join(words[cut:])


class SentenceClassifier(nn.Module):
    """Encoder -> mean pooling over real tokens -> L2 normalisation -> linear head (2 logits)."""

    def __init__(self, encoder: nn.Module, hidden_size: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden_size, len(LABELS))
        self.config = SimpleNamespace(num_labels=len(LABELS), label2id=dict(LABELS))  # what ClassifierReward reads

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        return nn.functional.normalize(pooled, dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> SimpleNamespace:
        return SimpleNamespace(logits=self.head(self.embed(input_ids, attention_mask)))

    @classmethod
    def load(cls, folder: Path) -> tuple["SentenceClassifier", object]:
        """The classifier saved by :func:`train_reward_model` and its tokenizer."""
        from transformers import AutoModel, AutoTokenizer  # noqa: PLC0415

        meta = json.loads((folder / "reward.json").read_text())
        encoder_dir = (folder / meta["encoder"]).resolve()
        encoder = AutoModel.from_pretrained(encoder_dir)
        model = cls(encoder, encoder.config.hidden_size)
        model.head.load_state_dict(torch.load(folder / "head.pt", weights_only=True))
        return model.eval(), AutoTokenizer.from_pretrained(encoder_dir)


@torch.no_grad()
def embed_texts(model: SentenceClassifier, tokenizer, texts: Sequence[str], batch_size: int = 128) -> torch.Tensor:
    parts = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(list(texts[start: start + batch_size]), return_tensors="pt", padding=True, truncation=True,
                            max_length=128)
        parts.append(model.embed(encoded["input_ids"], encoded["attention_mask"]))
    return torch.cat(parts)


def fit_head(head: nn.Linear, features: torch.Tensor, labels: torch.Tensor, weight_decay: float = 1e-4,
             steps: int = 200) -> None:
    """Logistic regression by full-batch L-BFGS with an L2 penalty (deterministic)."""
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(head(features), labels) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)


def train_reward_model(encoder_dir: Path, data: dict, dest: Path, seed: int = 0) -> float:
    """Fit the head on the training snippets, save it next to a pointer to the encoder; held-out accuracy."""
    from transformers import AutoModel, AutoTokenizer  # noqa: PLC0415

    torch.manual_seed(seed)
    encoder = AutoModel.from_pretrained(encoder_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    model = SentenceClassifier(encoder, encoder.config.hidden_size)
    train_texts, train_labels = labelled(data["train"])
    test_texts, test_labels = labelled(data["heldout"])
    fit_head(model.head, embed_texts(model, tokenizer, train_texts), train_labels)
    with torch.no_grad():
        accuracy = (model.head(embed_texts(model, tokenizer, test_texts)).argmax(-1) == test_labels).float().mean().item()
    dest.mkdir(parents=True, exist_ok=True)
    runs.atomic_torch_save(model.head.state_dict(), dest / "head.pt")
    meta = {"encoder": str(Path("..") / encoder_dir.name) if encoder_dir.parent == dest.parent else str(encoder_dir.resolve()),
            "labels": LABELS, "heldout_accuracy": accuracy, "train_examples": len(train_texts),
            "heldout_examples": len(test_texts), "neutral_band": NEUTRAL}
    runs.atomic_write_text(dest / "reward.json", json.dumps(meta, indent=2))
    return accuracy
