"""``train_rlhf``: a task's config and assets -> a trained run directory (what ``symrl rlhf`` calls)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

from .. import runs
from ..errors import SymrlError
from .config import RLHFConfig
from .tasks import describe, load_task, make_rlhf_config
from .trainer import RLHFTrainer


def _accelerator():
    """An ``accelerate.Accelerator`` when launched as several processes (``accelerate launch``, ``torchrun``)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    try:
        from accelerate import Accelerator  # noqa: PLC0415
    except ImportError:
        raise SymrlError("a multi-process launch needs accelerate; pip install 'symrl[rlhf]'") from None
    return Accelerator()


def default_out(cfg: RLHFConfig) -> Path:
    return Path("runs") / f"rlhf-{cfg.task}-{cfg.algo}-seed{cfg.seed}"


def resume_config(out: Path, **overrides: Any) -> RLHFConfig:
    """The saved config of the run in ``out`` (its ``info`` left out), with ``overrides`` (e.g. more iterations)."""
    return runs.resume_config(Path(out), RLHFConfig, overrides)


def train_rlhf(cfg: Optional[RLHFConfig] = None, out: Optional[str | Path] = None, resume: bool = False,
               overwrite: bool = False, on_iteration: Optional[Callable[[dict], None]] = None,
               log: Callable[[str], None] = print, **overrides: Any) -> RLHFTrainer:
    """Train ``cfg`` (or ``make_rlhf_config(**overrides)``) into ``out``; ``resume`` continues the run there.
    Returns the trainer (its ``history`` and ``history_eval`` hold the metrics)."""
    if resume and out is None:
        raise SymrlError("--resume needs --out DIR, the run directory to continue")
    if resume and cfg is None:
        cfg = resume_config(Path(out), **overrides)
    elif cfg is None:
        cfg = make_rlhf_config(**overrides)
    elif overrides:
        cfg = cfg.replace(**overrides)
    out = Path(out) if out is not None else default_out(cfg)
    runs.check_out(out, resume, overwrite)  # before minutes of loading
    accelerator = _accelerator()
    if accelerator is not None:  # one device per process; only the main process talks
        cfg = cfg.replace(device=str(accelerator.device))
        log = log if accelerator.is_main_process else (lambda _: None)
        if not accelerator.is_main_process:
            on_iteration = None
    setup = load_task(cfg, log=log)
    log(f"{cfg.task}: {describe(setup)}")
    trainer = RLHFTrainer(cfg, setup.policy, setup.tokenizer, setup.reward_fn, setup.prompts,
                          reference_texts=setup.reference_texts, eval_prompts=setup.eval_prompts,
                          eval_references=setup.eval_references, info=setup.info, out=out, resume=resume,
                          overwrite=overwrite, accelerator=accelerator)
    trainer.run(on_iteration)
    return trainer
