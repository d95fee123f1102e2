"""MiniLM offline: embeddings equal sentence-transformers', quality metrics vs scipy, outlier dimensions."""
import numpy as np
import pytest
import torch

from coursekit.llm.minilm import (
    PAIRS,
    SENTENCES,
    activation_absmax,
    embed,
    embedding_quality,
    load_minilm,
    model_dir,
    outlier_dimensions,
    pair_similarities,
    spearman,
    tokenize,
)


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


@pytest.fixture(scope="module")
def ref_emb(minilm):
    return embed(*minilm)


def test_model_loads_offline_with_its_size(minilm):
    model, tokenizer = minilm
    assert sum(p.numel() for p in model.parameters()) == 22_713_216
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert tokenizer.model_max_length >= 256 and (model_dir() / "model.safetensors").exists()


def test_embeddings_equal_sentence_transformers(ref_emb):
    st = pytest.importorskip("sentence_transformers")
    encoder = st.SentenceTransformer(str(model_dir()), device="cpu", local_files_only=True)
    want = torch.from_numpy(encoder.encode(SENTENCES, batch_size=16))
    assert ref_emb.shape == (len(SENTENCES), 384)
    torch.testing.assert_close(ref_emb, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(ref_emb.norm(dim=1), torch.ones(len(SENTENCES)), atol=1e-5, rtol=0)


def test_pairs_are_graded_related_then_unrelated(ref_emb):
    sims = pair_similarities(ref_emb, PAIRS)
    assert len(SENTENCES) == 80 and len(PAIRS) == 40
    assert sims[:23].mean() > 0.5 and sims[24:].abs().mean() < 0.1  # 23 paraphrase pairs, 16 unrelated


def test_embedding_quality_against_scipy_and_numpy(ref_emb):
    from scipy.stats import spearmanr

    noisy = ref_emb + 0.05 * torch.randn(ref_emb.shape, generator=torch.Generator().manual_seed(0))
    q = embedding_quality(noisy, ref_emb)
    a, b = noisy.double().numpy(), ref_emb.double().numpy()
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert q["cosine"] == pytest.approx(cos.mean(), abs=1e-12) and q["min_cosine"] == pytest.approx(cos.min())
    i, j = np.triu_indices(len(a), k=1)
    an, bn = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    want = spearmanr((an[i] * an[j]).sum(1), (bn[i] * bn[j]).sum(1)).statistic
    assert q["spearman"] == pytest.approx(want, abs=1e-10) and 0.5 < want < 0.999
    same = embedding_quality(ref_emb, ref_emb)
    assert same["cosine"] == pytest.approx(1.0, abs=1e-6) and same["spearman"] == pytest.approx(1.0)
    assert embedding_quality(noisy, ref_emb, pairs=PAIRS)["spearman"] == pytest.approx(
        spearmanr(pair_similarities(noisy, PAIRS), pair_similarities(ref_emb, PAIRS)).statistic, abs=1e-10)


def test_spearman_with_ties_matches_scipy():
    from scipy.stats import spearmanr

    a = torch.tensor([1.0, 2.0, 2.0, 3.0, 5.0, 5.0, 5.0, 0.0])
    b = torch.tensor([2.0, 1.0, 4.0, 4.0, 3.0, 6.0, 7.0, 0.5])
    assert spearman(a, b) == pytest.approx(spearmanr(a.numpy(), b.numpy()).statistic, abs=1e-12)


def test_activation_absmax_and_outlier_dimensions(minilm):
    model, tokenizer = minilm
    sentences = SENTENCES[:6]
    absmax = activation_absmax(model, tokenizer, sentences)
    assert len(absmax) == 6 * 6 + 1  # q, k, v, attn out, ffn in, ffn out per layer + the pooler
    # independent reference: layer 0's query reads the embedding LayerNorm's output
    with torch.no_grad():
        want = torch.stack([model.embeddings(**{k: v for k, v in tokenize(tokenizer, [s]).items()
                                                if k != "attention_mask"})[0].abs().amax(0) for s in sentences])
    torch.testing.assert_close(absmax["encoder.layer.0.attention.self.query"], want.amax(0), atol=1e-5, rtol=1e-5)
    rows = outlier_dimensions(absmax)
    assert rows[0]["dim"] == 99 and rows[0]["max_abs"] > 20 and rows[0]["median_abs"] < 3
    assert {99, 223, 63} <= {r["dim"] for r in rows}
    assert outlier_dimensions(absmax, threshold=1000.0) == []


def test_bad_input(minilm, ref_emb):
    with pytest.raises(TypeError, match="list of strings"):
        embed(*minilm, sentences="one sentence")
    with pytest.raises(ValueError, match="same shape"):
        embedding_quality(ref_emb[:3], ref_emb)
    with pytest.raises(ValueError, match="threshold"):
        outlier_dimensions({}, threshold=-1)
