"""The Deep Compression pipeline, prune -> share -> Huffman, with every byte of the saved file counted.

Han, Mao & Dally, "Deep Compression: Compressing Deep Neural Networks with Pruning, Trained Quantization and
Huffman Coding" (ICLR 2016). Per shared layer the file holds (Sec. 2-4):

* the codebook: k float32 centroids;
* the positions of the nonzero weights as *relative* indices (gaps), ``index_bits`` wide; a gap too large for the
  field is bridged by filler entries (Fig. 2 of the paper: they store a filler zero; here the largest gap value
  2^index_bits - 1 means "advance that far, no weight here");
* the centroid index of every nonzero weight;
* both index streams Huffman-coded (``coursekit.share.huffman``) with their code-length tables;
* a small header (shape, counts) and the bias in float32.

Every other parameter (biases, norms) is stored as float32. ``encode_model`` produces the bytes; ``decode_model``
rebuilds the weights from them exactly, so the compression ratio is a measurement, not an estimate. The paper's
anchor: LeNet-300-100 on MNIST shrank 40x with no accuracy loss (Table 1).
"""
from __future__ import annotations

import struct

import torch
from torch import nn

from coursekit import prune
from coursekit._validate import check_int, check_probability
from coursekit.share import huffman
from coursekit.surgery import WEIGHT_LAYER_TYPES, named_layers


def magnitude_prune(model: nn.Module, sparsity: float | dict[str, float], layers: list[str] | None = None
                    ) -> dict[str, float]:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights of each layer (Han et al., NeurIPS 2015) with
    ``coursekit.prune.magnitude_prune``, made permanent at once (``coursekit.prune.remove``), so the weights are
    plain tensors for weight sharing; returns the sparsity reached per layer. Retrain with ``PruningMask``.

    ``sparsity`` is one fraction for every layer in ``layers`` (default: every Linear/Conv), or a dict
    ``{layer name: fraction}`` (Deep Compression prunes the small last layer of LeNet-300-100 less: Table 2)."""
    found = dict(named_layers(model, WEIGHT_LAYER_TYPES))
    if isinstance(sparsity, dict):
        rates = {name: check_probability(f"sparsity[{name!r}]", r) for name, r in sparsity.items()}
    else:
        rate = check_probability("sparsity", sparsity)
        rates = dict.fromkeys(layers if layers is not None else list(found), rate)
    out = {}
    for name, rate in rates.items():
        if name not in found:
            raise ValueError(f"layer {name!r} is not a Linear/Conv of the model; choose from {sorted(found)}")
        layer = found[name]
        prune.magnitude_prune(layer, "weight", amount=rate)
        prune.remove(layer, "weight")
        out[name] = float((layer.weight == 0).float().mean())
    return out


class PruningMask:
    """Callback for ``coursekit.train.fit``: re-zero the pruned weights after every optimizer step (for weights
    pruned permanently by ``magnitude_prune``; ``coursekit.prune``'s own masks need no callback)."""

    def __init__(self, model: nn.Module):
        self.masks = {n: (m.weight != 0) for n, m in named_layers(model, WEIGHT_LAYER_TYPES)}

    def after_step(self, model: nn.Module, step: int) -> None:
        layers = dict(named_layers(model, WEIGHT_LAYER_TYPES))
        with torch.no_grad():
            for name, mask in self.masks.items():
                layers[name].weight.mul_(mask)


def _gaps(positions: list[int], index_bits: int) -> list[int]:
    """Relative indices with fillers: each gap g >= cap = 2^bits - 1 becomes cap (filler) entries then g mod cap."""
    cap, out, prev = 2 ** index_bits - 1, [], -1
    for p in positions:
        g = p - prev - 1
        out.extend([cap] * (g // cap))
        out.append(g % cap)
        prev = p
    return out


def _positions(gaps: list[int], index_bits: int) -> list[int]:
    cap, out, cur = 2 ** index_bits - 1, [], -1
    skip = 0
    for g in gaps:
        if g == cap:
            skip += cap
            continue
        cur += skip + g + 1
        skip = 0
        out.append(cur)
    return out


def _stream(symbols: list[int], alphabet: int) -> bytes:
    """Huffman stream: alphabet code-length table (1 byte each), payload length, payload."""
    if not symbols:
        return struct.pack("<I", 0)
    data, lengths = huffman.encode(symbols)
    table = bytes(lengths.get(s, 0) for s in range(alphabet))
    return struct.pack("<I", len(data)) + table + data


def _read_stream(blob: bytes, at: int, alphabet: int, n: int) -> tuple[list[int], int]:
    (size,) = struct.unpack_from("<I", blob, at)
    at += 4
    if size == 0:
        return [], at
    lengths = {s: ln for s, ln in enumerate(blob[at:at + alphabet]) if ln}
    at += alphabet
    return huffman.decode(blob[at:at + size], lengths, n), at + size


def encode_layer(weight: torch.Tensor, index_bits: int = 5) -> tuple[bytes, dict]:
    """Bytes of one shared layer: header, codebook (the distinct nonzero values, float32), Huffman-coded gaps and
    Huffman-coded centroid indices. Also returns the byte count of each part."""
    w = weight.detach().to(torch.float32).reshape(-1)
    nz = torch.nonzero(w).reshape(-1)
    book, labels = torch.unique(w[nz], return_inverse=True)
    if book.numel() > 256:
        raise ValueError(f"the weight has {book.numel()} distinct nonzero values; share it first (at most 256)")
    shape = tuple(weight.shape)
    header = struct.pack("<B", len(shape)) + struct.pack(f"<{len(shape)}I", *shape) + struct.pack(
        "<IHB", nz.numel(), book.numel(), index_bits)
    gaps = _gaps(nz.tolist(), index_bits)
    idx = struct.pack("<I", len(gaps)) + _stream(gaps, 2 ** index_bits)
    lab = _stream(labels.tolist(), max(book.numel(), 1))
    code = book.numpy().astype("<f4").tobytes()
    parts = {"header": len(header), "codebook": len(code), "index": len(idx), "labels": len(lab)}
    return header + code + idx + lab, parts


def decode_layer(blob: bytes, at: int = 0) -> tuple[torch.Tensor, int]:
    """Inverse of ``encode_layer``: (weight, offset after the layer)."""
    (ndim,) = struct.unpack_from("<B", blob, at)
    shape = struct.unpack_from(f"<{ndim}I", blob, at + 1)
    at += 1 + 4 * ndim
    nnz, k, index_bits = struct.unpack_from("<IHB", blob, at)
    at += 7
    book = torch.frombuffer(bytearray(blob[at:at + 4 * k]), dtype=torch.float32).clone()
    at += 4 * k
    (n_gaps,) = struct.unpack_from("<I", blob, at)
    gaps, at = _read_stream(blob, at + 4, 2 ** index_bits, n_gaps)
    labels, at = _read_stream(blob, at, max(k, 1), nnz)
    w = torch.zeros(int(torch.tensor(shape).prod()) if shape else 1, dtype=torch.float32)
    if nnz:
        w[torch.tensor(_positions(gaps, index_bits))] = book[torch.tensor(labels)]
    return w.reshape(shape), at


def encode_model(model: nn.Module, index_bits: int = 5) -> tuple[bytes, dict]:
    """The whole model as bytes: every Linear/Conv weight through ``encode_layer``, every other parameter and
    buffer as float32. Returns (blob, bytes per part summed over layers, plus "dense_fp32" for comparison)."""
    index_bits = check_int("index_bits", index_bits, min_value=1, max_value=8)
    shared = {f"{n}.weight" for n, _ in named_layers(model, WEIGHT_LAYER_TYPES)}
    blob, parts = b"", {"header": 0, "codebook": 0, "index": 0, "labels": 0, "other_fp32": 0}
    state = model.state_dict()
    for key in sorted(state):  # sorted: pruning/parametrize re-register weights, which changes the dict order
        tensor = state[key]
        if key in shared:
            data, p = encode_layer(tensor, index_bits)
            for part, size in p.items():
                parts[part] += size
        else:
            data = tensor.detach().to(torch.float32).reshape(-1).numpy().astype("<f4").tobytes()
            parts["other_fp32"] += len(data)
        blob += data
    parts["total"] = len(blob)
    parts["dense_fp32"] = 4 * sum(t.numel() for t in state.values())
    return blob, parts


def decode_model(blob: bytes, model: nn.Module) -> nn.Module:
    """Load ``encode_model``'s bytes into ``model`` (same architecture) in place."""
    shared = {f"{n}.weight" for n, _ in named_layers(model, WEIGHT_LAYER_TYPES)}
    state, at = model.state_dict(), 0
    new = {}
    for key in sorted(state):
        tensor = state[key]
        if key in shared:
            new[key], at = decode_layer(blob, at)
        else:
            size = 4 * tensor.numel()
            new[key] = torch.frombuffer(bytearray(blob[at:at + size]), dtype=torch.float32).clone().reshape(
                tensor.shape).to(tensor.dtype)
            at += size
    model.load_state_dict(new)
    return model
