"""Weight sharing: k-means codebooks, centroid fine-tuning, Huffman coding and the Deep Compression pipeline.

    from coursekit import share
    book = share.kmeans_quantize(layer.weight, bits=4)        # 16 shared values + a 4-bit index per weight
    q = share.KMeansQuantizer(model, bits=4)                  # train.fit(model, ...) now trains the centroids
    blob, sizes = share.encode_model(model)                   # prune -> share -> Huffman, bytes counted
"""
from coursekit.share import huffman
from coursekit.share.finetune import KMeansQuantizer, SharedWeight, centroid_gradients
from coursekit.share.kmeans import (
    Codebook,
    assign,
    inertia,
    kmeans_plus_plus,
    kmeans_quantize,
    linear_init,
    lloyd,
    update,
)
from coursekit.share.pipeline import (
    PruningMask,
    decode_layer,
    decode_model,
    encode_layer,
    encode_model,
    magnitude_prune,
)

__all__ = [
    "Codebook", "KMeansQuantizer", "PruningMask", "SharedWeight", "assign", "centroid_gradients", "decode_layer",
    "decode_model", "encode_layer", "encode_model", "huffman", "inertia", "kmeans_plus_plus", "kmeans_quantize",
    "linear_init", "lloyd", "magnitude_prune", "update",
]
