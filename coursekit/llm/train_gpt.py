"""Train, save and load the TinyGPT of chapter 07 (the recipe behind the shipped weights).

Recipe of the shipped ``weights/tiny_gpt.safetensors`` (``train_tiny_gpt()`` with its defaults reproduces it,
bit for bit on the same torch build and thread count; other builds give the same bpc within ~0.01):

* data: ``corpus_splits()`` train split (first 90% of the Shakespeare slice), random windows of 128 characters
  drawn with a ``torch.Generator`` seeded by ``seed``; held-out: the last 10%;
* model: ``GPTConfig(vocab_size=63, d_model=128, n_layers=4, n_heads=4, context=128, dropout=0)``, 825,856
  parameters, GPT-2 initialisation (``torch.manual_seed(seed)``);
* optimiser: AdamW (Loshchilov & Hutter 2019), betas (0.9, 0.99), weight decay 0.1 on matrices only (not on
  biases, LayerNorms, embeddings), gradient clipping at 1.0;
* schedule: linear warm-up over ``warmup`` steps to ``lr``, then cosine decay to ``lr / 10`` at ``steps``
  (Loshchilov & Hutter 2017, SGDR eq. 5 without restarts).

Shipped weights: ``train_tiny_gpt()`` with the defaults above on one thread (``torch.set_num_threads(1)``),
1200 steps of 32 x 128 characters: **2.222 held-out bits/char** (all 99,304 held-out characters; 2.163 on the
first 16,384 used in fast mode). It took 2,458 s on a heavily shared 2-core machine (5-6 minutes of CPU time);
the training curve, the recipe and a greedy sample are in ``weights/tiny_gpt_config.json`` and
``data/PROVENANCE.md``.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from coursekit._progress import progress_bar
from coursekit._validate import check_int, check_positive
from coursekit.llm.corpus import CharTokenizer, bits_per_char, corpus_splits, shakespeare_text
from coursekit.llm.gpt import GPTConfig, TinyGPT

WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_FILE = "tiny_gpt.safetensors"
CONFIG_FILE = "tiny_gpt_config.json"
VOCAB_FILE = "tiny_gpt_vocab.json"


def lr_at(step: int, steps: int, lr: float, warmup: int, min_ratio: float = 0.1) -> float:
    """Learning rate at ``step``: linear warm-up, then cosine from ``lr`` down to ``min_ratio * lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _optimizer(model: TinyGPT, lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "emb" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))


def train_tiny_gpt(steps: int = 1200, batch_size: int = 32, lr: float = 3e-3, warmup: int = 100,
                   weight_decay: float = 0.1, seed: int = 0, config: GPTConfig | None = None,
                   eval_every: int = 200, progress: bool = True, log=None) -> tuple[TinyGPT, CharTokenizer, list]:
    """Train a TinyGPT on the Shakespeare train split; return ``(model, tokenizer, history)``.

    ``history`` holds ``{"step", "train_bpc", "val_bpc", "seconds"}`` rows every ``eval_every`` steps (val on
    the first 16,384 held-out characters, to stay cheap) and at the end (val on the whole held-out split).
    ``log`` (e.g. ``print``) receives one line per evaluation.
    """
    steps = check_int("steps", steps, min_value=1)
    batch_size = check_int("batch_size", batch_size, min_value=1)
    warmup = check_int("warmup", warmup, min_value=1)
    lr = check_positive("lr", lr)
    eval_every = check_int("eval_every", eval_every, min_value=1)
    tokenizer = CharTokenizer.from_text(shakespeare_text())
    train_ids, val_ids = corpus_splits(fast=False, tokenizer=tokenizer)
    config = config or GPTConfig(vocab_size=tokenizer.vocab_size)
    torch.manual_seed(seed)
    model = TinyGPT(config)
    opt = _optimizer(model, lr, weight_decay)
    gen = torch.Generator().manual_seed(seed)
    T = config.context
    history, start, window_loss = [], time.perf_counter(), []
    model.train()
    for step in progress_bar(range(steps), desc="train TinyGPT", enabled=progress):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        starts = torch.randint(0, len(train_ids) - T - 1, (batch_size,), generator=gen)
        x = torch.stack([train_ids[s:s + T] for s in starts.tolist()])
        y = torch.stack([train_ids[s + 1:s + T + 1] for s in starts.tolist()])
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        window_loss.append(loss.item())
        last = step == steps - 1
        if (step + 1) % eval_every == 0 or last:
            val = bits_per_char(model, val_ids, context=T, max_tokens=None if last else 16_384)
            row = {"step": step + 1, "train_bpc": sum(window_loss) / len(window_loss) / math.log(2),
                   "val_bpc": val, "seconds": time.perf_counter() - start}
            history.append(row)
            window_loss = []
            model.train()
            if log is not None:
                log(f"step {row['step']:>6}  train {row['train_bpc']:.4f}  val {val:.4f} bpc  "
                    f"{row['seconds']:.0f} s")
    model.eval()
    return model, tokenizer, history


def save_tiny_gpt(model: TinyGPT, tokenizer: CharTokenizer, directory=WEIGHTS_DIR, meta: dict | None = None) -> Path:
    """Write ``tiny_gpt.safetensors``, ``tiny_gpt_config.json`` (config + ``meta``) and the vocabulary."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_FILE))
    (directory / CONFIG_FILE).write_text(json.dumps({"config": model.config.to_dict(), **(meta or {})},
                                                    indent=1) + "\n")
    (directory / VOCAB_FILE).write_text(json.dumps(tokenizer.to_dict()) + "\n")
    return directory / WEIGHTS_FILE


def load_tiny_gpt(directory=WEIGHTS_DIR) -> tuple[TinyGPT, CharTokenizer, dict]:
    """``(model, tokenizer, meta)`` from a folder written by :func:`save_tiny_gpt` (model in eval mode)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    path = directory / WEIGHTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {WEIGHTS_FILE} in {directory}; train one with train_tiny_gpt() and "
                                "save_tiny_gpt()")
    meta = json.loads((directory / CONFIG_FILE).read_text())
    model = TinyGPT(GPTConfig(**meta["config"]))
    model.load_state_dict(load_file(str(path)))
    model.eval()
    tokenizer = CharTokenizer.from_dict(json.loads((directory / VOCAB_FILE).read_text()))
    return model, tokenizer, meta


def pretrained_gpt() -> tuple[TinyGPT, CharTokenizer]:
    """The shipped TinyGPT and its tokenizer, loaded offline from ``coursekit/llm/weights`` (no training)."""
    model, tokenizer, _ = load_tiny_gpt(WEIGHTS_DIR)
    return model, tokenizer
