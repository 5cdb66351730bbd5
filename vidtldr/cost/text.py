"""Analytic FLOPs of what the paper's count leaves out: the text encoder per query, ITM
re-ranking of ``k_test`` candidates, the QA question encoder and answer decoder (same
conventions as :mod:`vidtldr.cost.ledger`; cross-checked against fvcore by
``vidtldr.analysis.flops.trace``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from vidtldr.cost.ledger import Ledger


@dataclass(frozen=True)
class TextDims:
    """BERT text encoder with cross-attention fusion layers (xbert), plus UMT heads."""

    hidden: int
    layers: int
    fusion_layer: int
    intermediate: int
    vocab: int = 30522
    encoder_width: int = 768  # vision width fed to cross-attention K/V
    embed_dim: int = 512      # ITC projection size

    @property
    def decoder_layers(self) -> int:  # QA decoder = copies of the fusion layers
        return self.layers - self.fusion_layer


def text_dims(cfg) -> TextDims:
    """:class:`TextDims` of a ``vidtldr.models.config.UMTConfig``."""
    t = cfg.text
    return TextDims(hidden=t.hidden_size, layers=t.num_layers, fusion_layer=t.fusion_layer,
                    intermediate=t.intermediate_size, vocab=t.vocab_size, encoder_width=t.encoder_width,
                    embed_dim=cfg.embed_dim)


def _bert_layer(L: Ledger, B: int, n_q: int, text: TextDims, n_kv_self: Optional[int] = None,
                cross_tokens: int = 0, cross_width: int = 0):
    """One post-LN BERT layer over ``B`` sequences of ``n_q`` tokens; self-attention keys =
    ``n_kv_self`` (defaults to ``n_q``; a causal decoder still computes the full square);
    optional cross-attention to ``cross_tokens`` tokens of width ``cross_width``."""
    Hd = text.hidden
    n_kv = n_q if n_kv_self is None else n_kv_self
    rows = B * n_q
    L.linear(rows, Hd, Hd)                                 # query
    L.linear(B * n_kv, Hd, 2 * Hd)                         # key, value
    L.matmul(B, n_q, Hd, n_kv)                             # q.k^T over all heads
    L.elementwise("scale", B * n_q * n_kv)                 # BERT scales the scores
    L.elementwise("add", B * n_q * n_kv, cat="mask")       # additive padding mask
    L.elementwise("softmax", B * n_q * n_kv)
    L.matmul(B, n_q, n_kv, Hd)                             # A.v
    L.linear(rows, Hd, Hd)                                 # output dense
    L.elementwise("add", rows * Hd)
    L.layer_norm(rows * Hd)
    if cross_tokens:
        L.linear(rows, Hd, Hd)                             # cross query
        L.linear(B * cross_tokens, cross_width, 2 * Hd)    # cross key, value (from vision tokens)
        L.matmul(B, n_q, Hd, cross_tokens)
        L.elementwise("scale", B * n_q * cross_tokens)
        L.elementwise("add", B * n_q * cross_tokens, cat="mask")
        L.elementwise("softmax", B * n_q * cross_tokens)
        L.matmul(B, n_q, cross_tokens, Hd)
        L.linear(rows, Hd, Hd)
        L.elementwise("add", rows * Hd)
        L.layer_norm(rows * Hd)
    L.linear(rows, Hd, text.intermediate)
    L.elementwise("gelu", rows * text.intermediate)
    L.linear(rows, text.intermediate, Hd)
    L.elementwise("add", rows * Hd)
    L.layer_norm(rows * Hd)


def _bert_embeddings(L: Ledger, B: int, n: int, text: TextDims):
    L.elementwise("add", 2 * B * n * text.hidden)          # word + type + position (lookups are free)
    L.layer_norm(B * n * text.hidden)


def text_query_cost(text: TextDims, max_txt_l: int) -> Ledger:
    """One caption through the text-mode encoder (layers below ``fusion_layer``, padded to
    ``max_txt_l``) and the ITC projection of its [CLS] token."""
    L = Ledger()
    _bert_embeddings(L, 1, max_txt_l, text)
    for _ in range(text.fusion_layer):
        _bert_layer(L, 1, max_txt_l, text)
    L.linear(1, text.hidden, text.embed_dim)               # text_proj
    return L


def itm_pair_cost(text: TextDims, max_txt_l: int, vision_tokens: int) -> Ledger:
    """One (text, video) pair through the fusion layers with cross-attention to all
    ``vision_tokens`` final vision tokens, plus the ITM head on [CLS]. The official code recomputes
    the cross-attention keys/values of the video for every pair, and so does this count."""
    L = Ledger()
    for _ in range(text.layers - text.fusion_layer):
        _bert_layer(L, 1, max_txt_l, text, cross_tokens=vision_tokens, cross_width=text.encoder_width)
    L.linear(1, text.hidden, 2)                            # itm_head
    return L


def itm_rerank_cost(text: TextDims, max_txt_l: int, vision_tokens: int, k_test: int) -> Ledger:
    """ITM re-ranking of ``k_test`` candidates for one query (either direction costs the same)."""
    return Ledger().merged(itm_pair_cost(text, max_txt_l, vision_tokens), times=k_test)


def qa_cost(text: TextDims, vision_tokens: int, k_test: int = 128, max_q_len: int = 25,
            max_a_len: int = 5) -> Ledger:
    """One question: the multi-modal question encoder (all layers, cross-attention to the vision
    tokens in the fusion layers), the decoder's first-token pass with the full-vocabulary LM head,
    and the re-scoring of ``k_test`` candidate answers (LM head at every answer position, as the
    official ``rank_answer`` computes it)."""
    L = Ledger()
    Hd = text.hidden
    _bert_embeddings(L, 1, max_q_len, text)
    for i in range(text.layers):
        cross = vision_tokens if i >= text.fusion_layer else 0
        _bert_layer(L, 1, max_q_len, text, cross_tokens=cross, cross_width=text.encoder_width)

    def decoder(batch: int, n: int):
        _bert_embeddings(L, batch, n, text)
        for _ in range(text.decoder_layers):
            _bert_layer(L, batch, n, text, cross_tokens=max_q_len, cross_width=Hd)
        rows = batch * n
        L.linear(rows, Hd, Hd)                                 # prediction transform dense
        L.elementwise("gelu", rows * Hd)
        L.layer_norm(rows * Hd)
        L.linear(rows, Hd, text.vocab)                         # tied LM decoder
        L.elementwise("softmax", rows * text.vocab)            # (log-)softmax over the vocabulary

    decoder(1, 1)              # start token -> first-answer-token distribution
    decoder(k_test, max_a_len)  # candidates re-scored
    return L
