"""Loading policies, reward models and data sets by hub name or local folder, with one-line errors.

Everything here calls the ordinary Hugging Face loaders (``AutoModelForCausalLM``, ``datasets.load_dataset``),
so a hub name and a local folder take the same path; what fails (no network, a typo, a missing package)
becomes a :class:`~symrl.errors.SymrlError` that says how to fix it. LoRA (``peft``) and 4-bit loading
(``bitsandbytes``, CUDA only) are options of :func:`load_policy`.
"""

from __future__ import annotations

import functools
import socket
import urllib.parse
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..errors import SymrlError, first_line

HUB_PROBE_SECONDS = 3.0  # an unreachable hub is found in this long instead of the loaders' ~50 s of retries


@functools.lru_cache(maxsize=None)
def _hub_reachable(endpoint: str) -> bool:
    """Whether a TCP connection to the hub's host opens within HUB_PROBE_SECONDS (once per process and endpoint)."""
    url = urllib.parse.urlsplit(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=HUB_PROBE_SECONDS).close()
    except OSError:
        return False
    return True


def _hub_kwargs(what: str, name: str, flag: str) -> dict:
    """The loader's keyword for a hub name: none while the hub answers (or offline mode is on: the loaders then
    read the cache at once); ``local_files_only`` for a cached name when it does not; for a name that is not
    cached, a one-line error at once instead of the loaders' retries."""
    from huggingface_hub import constants  # noqa: PLC0415

    if constants.HF_HUB_OFFLINE or _hub_reachable(constants.ENDPOINT):
        return {}
    kind = "datasets" if what == "data set" else "models"
    if (Path(constants.HF_HUB_CACHE) / f"{kind}--{name.replace('/', '--')}").is_dir():
        return {} if kind == "datasets" else {"local_files_only": True}
    raise SymrlError(f"cannot load the {what} {name!r}: the Hugging Face hub ({constants.ENDPOINT}) cannot be reached "
                     f"and {name!r} is not in the local cache; download it where the hub is reachable (`hf download "
                     f"{name}`{' --repo-type dataset' if kind == 'datasets' else ''}) or give a local folder with {flag}")


@contextmanager
def _loading(what: str, name: str, flag: str) -> Iterator[dict]:
    """Turn a loader's failure into a one-line error naming the model or data set and the fix; yields the keywords
    a hub name needs (``local_files_only`` for a cached model while the hub cannot be reached)."""
    looks_local = name.startswith(("/", ".", "~")) or name.count("/") > 1  # hub names are NAME or ORG/NAME
    if looks_local and not Path(name).expanduser().exists():
        raise SymrlError(f"the {what} folder {name!r} does not exist; check the path given with {flag}")
    hub = {} if Path(name).expanduser().exists() else _hub_kwargs(what, name, flag)
    try:
        yield hub
    except SymrlError:
        raise
    except ImportError as exc:
        raise SymrlError(f"loading the {what} {name!r} needs a missing package ({first_line(exc)}); "
                         "pip install 'symrl[rlhf]'") from None
    except Exception as exc:  # noqa: BLE001 - hub, file and format errors all surface as one message
        local = Path(name).exists()
        fix = (f"check that {name} holds a saved {what}" if local else
               f"check the name, or download it where the Hugging Face hub is reachable (`hf download {name}`, then "
               f"HF_HUB_OFFLINE=1) or give a local folder with {flag}")
        raise SymrlError(f"cannot load the {what} {name!r} ({first_line(exc)}); {fix}") from None


def _complete(loaded: tuple, what: str, name: str, fix: str) -> torch.nn.Module:
    """The model of ``from_pretrained(..., output_loading_info=True)``, refused when some of its weights were not in
    the checkpoint: transformers would start them at random (e.g. a causal LM loaded as a classifier gets a random
    score head) and the run would train against noise."""
    model, info = loaded
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise SymrlError(f"the {what} {name!r} has no trained weights for {missing[0]}{more} (this kind of model does "
                         f"not match the checkpoint); {fix}")
    return model


def load_tokenizer(name: str, flag: str = "--set policy_model=PATH", pad_with_eos: bool = False):
    from transformers import AutoTokenizer  # noqa: PLC0415

    with _loading("tokenizer", name, flag) as hub:
        tokenizer = AutoTokenizer.from_pretrained(name, **hub)
    if tokenizer.pad_token is None and pad_with_eos:
        tokenizer.pad_token = tokenizer.eos_token  # GPT-2 has no pad token; padding is masked everywhere
    return tokenizer


def load_policy(name: str, device: torch.device, lora_r: int = 0, lora_alpha: float = 16.0, lora_dropout: float = 0.0,
                load_in_4bit: bool = False, flag: str = "--set policy_model=PATH") -> torch.nn.Module:
    """A causal LM in float32 (bfloat16 compute under 4-bit), optionally wrapped with LoRA adapters."""
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    kwargs: dict = {"dtype": torch.float32}
    if load_in_4bit:
        if device.type != "cuda":
            raise SymrlError("load_in_4bit needs a CUDA GPU (bitsandbytes); drop --set load_in_4bit=true on a CPU")
        from transformers import BitsAndBytesConfig  # noqa: PLC0415

        kwargs = {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                            bnb_4bit_compute_dtype=torch.bfloat16),
                  "device_map": {"": device.index or 0}}
    with _loading("policy", name, flag) as hub:
        model = _complete(AutoModelForCausalLM.from_pretrained(name, output_loading_info=True, **kwargs, **hub), "policy", name,
                          "give a causal language model (e.g. a GPT-2, not a sequence classifier)")
    if not load_in_4bit:
        model.to(device)
    if lora_r > 0:
        model = add_lora(model, lora_r, lora_alpha, lora_dropout, quantized=load_in_4bit)
    return model.eval()


def add_lora(model: torch.nn.Module, r: int, alpha: float, dropout: float, quantized: bool = False) -> torch.nn.Module:
    """Wrap ``model`` with LoRA adapters on all its linear layers (the base weights are frozen)."""
    try:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training  # noqa: PLC0415
    except ImportError:
        raise SymrlError("LoRA needs peft; pip install 'symrl[rlhf]' or set lora_r=0") from None
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def load_classifier(name: str, device: torch.device, flag: str = "--set reward_model=PATH"):
    """A sequence classifier and its tokenizer; a folder with a LoRA adapter is loaded onto its base model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: PLC0415

    with _loading("reward model", name, flag) as hub:
        if (Path(name) / "adapter_config.json").exists():
            from peft import AutoPeftModelForSequenceClassification  # noqa: PLC0415

            model = AutoPeftModelForSequenceClassification.from_pretrained(name).merge_and_unload()
        else:
            model = _complete(AutoModelForSequenceClassification.from_pretrained(name, output_loading_info=True, **hub),
                              "reward model", name, "give a sequence classifier trained as a reward model")
        tokenizer = AutoTokenizer.from_pretrained(name, **hub)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise SymrlError(f"the tokenizer of the reward model {name!r} has neither a pad nor an end-of-sequence "
                             "token to pad batches with; give it a pad token (tokenizer.add_special_tokens) and save it")
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).eval(), tokenizer


def load_dataset(name: str, flag: str = "--set dataset=PATH") -> Callable[[str], object]:
    """A data set, loaded once (``datasets.load_dataset``: a hub name or a local folder of data files), as a
    function from a split's name to the split; a missing split is a one-line error."""
    try:
        import datasets  # noqa: PLC0415
    except ImportError:
        raise SymrlError("this task reads its prompts with the datasets package; pip install 'symrl[rlhf]'") from None
    with _loading("data set", name, flag):
        available = datasets.load_dataset(name)
    aliases = {"valid": "validation", "validation": "valid"}  # hub sets and local files name it either way

    def split_named(split: str):
        found = split if split in available else aliases.get(split) if aliases.get(split) in available else None
        if found is None:
            raise SymrlError(f"the data set {name!r} has no {split!r} split (it has {', '.join(available)}); "
                             f"give a data set with one, e.g. a folder with {split}.jsonl")
        return available[found]

    return split_named
