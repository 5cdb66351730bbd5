"""BERT text encoder with cross-attention fusion layers, and the QA answer decoder (docs/protocol.md
sections 3 and 5).

Post-LN BERT as in the xbert copy used by UMT: layers ``>= fusion_layer`` add a cross-attention
sub-layer (queries from text, keys/values from ``encoder_width``-wide tokens) between
self-attention and the feed-forward block. Module names follow the official state_dict
(``embeddings.*``, ``encoder.layer.N.attention.self.query`` ...). Attention runs through
``scaled_dot_product_attention`` with additive masks.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from vidtldr.models.config import TextConfig

Mode = Literal["text", "fusion", "multi_modal"]

# The official extended masks use -10000 for padded keys (xbert get_extended_attention_mask).
MASK_VALUE = -10000.0


def padding_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, L] 1/0 mask -> additive bias [B, 1, 1, L]."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * MASK_VALUE


def causal_padding_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Decoder self-attention: causal lower triangle times the padding mask -> [B, 1, L, L]."""
    length = mask.shape[1]
    causal = torch.ones(length, length, device=mask.device).tril()
    combined = causal[None, :, :] * mask[:, None, :].to(causal.dtype)
    return (1.0 - combined[:, None].to(dtype)) * MASK_VALUE


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.register_buffer("position_ids", torch.arange(cfg.max_position_embeddings).unsqueeze(0))
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        if length > self.position_embeddings.num_embeddings:
            raise ValueError(f"text length {length} exceeds max_position_embeddings "
                             f"{self.position_embeddings.num_embeddings}")
        token_types = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_types)
        x = x + self.position_embeddings(self.position_ids[:, :length])
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    def __init__(self, hidden: int, num_heads: int, kv_width: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden // num_heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(kv_width, hidden)
        self.value = nn.Linear(kv_width, hidden)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, bias: Optional[torch.Tensor],
                context: Optional[torch.Tensor] = None) -> torch.Tensor:
        source = hidden if context is None else context
        q = self._heads(self.query(hidden))
        k = self._heads(self.key(source))
        v = self._heads(self.value(source))
        mask = None if bias is None else bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out.transpose(1, 2).reshape(hidden.shape[0], hidden.shape[1], -1)

    def project_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``[G, heads, N, head_dim]`` of ``G`` contexts ``[G, N, width]``."""
        return self._heads(self.key(context)), self._heads(self.value(context))

    def attend_shared(self, query: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Cross-attention of ``B`` sequences (projected queries ``[B, L, hidden]``) to ONE context whose
        keys/values ``[1, heads, N, head_dim]`` were projected once (:meth:`project_kv`).

        Rows of attention are independent, so the ``B`` sequences are folded into the query axis
        (``[1, heads, B*L, head_dim]``): the context's keys/values are never copied per sequence. No
        mask: the context (vision tokens) is never padded."""
        batch, length = query.shape[:2]
        q = self._heads(query)  # [B, h, L, d]
        heads, dim = q.shape[1], q.shape[3]
        k, v = kv
        folded = q.transpose(0, 1).reshape(1, heads, batch * length, dim)
        out = F.scaled_dot_product_attention(folded, k.to(q.dtype), v.to(q.dtype))
        out = out.reshape(heads, batch, length, dim).permute(1, 2, 0, 3)  # [B, L, h, d]
        return out.reshape(batch, length, heads * dim)


class BertSelfOutput(nn.Module):
    """dense -> residual -> LayerNorm (post-LN); used after attention and after the FFN."""

    def __init__(self, in_width: int, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(in_width, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: TextConfig, kv_width: int):
        super().__init__()
        self.self = BertSelfAttention(cfg.hidden_size, cfg.num_heads, kv_width)
        self.output = BertSelfOutput(cfg.hidden_size, cfg.hidden_size, cfg.layer_norm_eps)

    def forward(self, hidden, bias, context=None):
        return self.output(self.self(hidden, bias, context), hidden)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact erf GELU, as HF "gelu"


class BertLayer(nn.Module):
    def __init__(self, cfg: TextConfig, has_cross_attention: bool, cross_width: int):
        super().__init__()
        self.has_cross_attention = has_cross_attention
        self.attention = BertAttention(cfg, cfg.hidden_size)
        if has_cross_attention:
            self.crossattention = BertAttention(cfg, cross_width)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertSelfOutput(cfg.intermediate_size, cfg.hidden_size, cfg.layer_norm_eps)

    def forward(self, hidden, self_bias, context=None, context_bias=None):
        hidden = self.attention(hidden, self_bias)
        if self.has_cross_attention:
            if context is None:
                raise ValueError("a fusion layer needs encoder_hidden_states (vision or question tokens)")
            hidden = self.crossattention(hidden, context_bias, context)
        return self.output(self.intermediate(hidden), hidden)

    def after_self_attention(self, hidden: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The rest of a fusion layer once its self-attention sub-layer ran: cross-attention of the
        ``B`` sequences to one shared context's precomputed keys/values, then the feed-forward block."""
        cross = self.crossattention
        attended = cross.self.attend_shared(cross.self.query(hidden), kv)
        hidden = cross.output(attended, hidden)
        return self.output(self.intermediate(hidden), hidden)


class BertEncoder(nn.Module):
    def __init__(self, cfg: TextConfig, num_layers: int, fusion_layer: int, cross_width: int):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg, i >= fusion_layer, cross_width) for i in range(num_layers))


class BertModel(nn.Module):
    """xbert ``BertModel`` without pooler.

    Modes: ``text`` = embeddings + layers [0, fusion_layer); ``fusion`` = layers
    [fusion_layer, end) starting from given hidden states (``encoder_embeds``);
    ``multi_modal`` = embeddings + all layers.
    """

    def __init__(self, cfg: TextConfig, num_layers: Optional[int] = None, fusion_layer: Optional[int] = None,
                 is_decoder: bool = False):
        super().__init__()
        self.cfg = cfg
        self.num_layers = cfg.num_layers if num_layers is None else num_layers
        self.fusion_layer = cfg.fusion_layer if fusion_layer is None else fusion_layer
        self.is_decoder = is_decoder
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg, self.num_layers, self.fusion_layer, cfg.encoder_width)

    def forward(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                encoder_embeds: Optional[torch.Tensor] = None,
                encoder_hidden_states: Optional[torch.Tensor] = None,
                encoder_attention_mask: Optional[torch.Tensor] = None,
                mode: Mode = "multi_modal") -> torch.Tensor:
        if mode == "text":
            first, last = 0, self.fusion_layer
        elif mode == "fusion":
            first, last = self.fusion_layer, self.num_layers
        elif mode == "multi_modal":
            first, last = 0, self.num_layers
        else:
            raise ValueError(f"unknown BERT mode {mode!r}")
        if mode == "fusion":
            if encoder_embeds is None:
                raise ValueError("mode='fusion' starts from text-mode states: pass encoder_embeds")
            hidden = encoder_embeds
        else:
            if input_ids is None:
                raise ValueError(f"mode={mode!r} needs input_ids")
            hidden = self.embeddings(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], device=hidden.device, dtype=torch.long)
        self_bias = (causal_padding_bias if self.is_decoder else padding_bias)(attention_mask, torch.float32)
        context_bias = None
        if encoder_hidden_states is not None and encoder_attention_mask is not None:
            context_bias = padding_bias(encoder_attention_mask, torch.float32)
        for layer in self.encoder.layer[first:last]:
            hidden = layer(hidden, self_bias, encoder_hidden_states, context_bias)
        return hidden

    # -- one context shared by many sequences (ITM grouped by video, QA questions of one video) -----
    # Equal to ``forward`` with that context repeated per sequence (up to float rounding), but the
    # context's cross-attention keys/values are projected once per fusion layer, not once per sequence.

    def context_kv(self, context: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per fusion layer, the keys/values ``[1, heads, N, head_dim]`` of one context ``[N, width]``."""
        context = context[None] if context.dim() == 2 else context
        if context.shape[0] != 1:
            raise ValueError(f"context_kv takes one context, got a batch of {context.shape[0]}")
        return [layer.crossattention.self.project_kv(context) for layer in self.encoder.layer[self.fusion_layer:]]

    def fusion_first_self(self, encoder_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The text-only start of the fusion stack: the first fusion layer's self-attention sub-layer over
        text-mode states (what precedes its cross-attention does not depend on the context)."""
        layer = self.encoder.layer[self.fusion_layer]
        return layer.attention(encoder_embeds, padding_bias(attention_mask, torch.float32))

    def fusion_shared(self, first_self: torch.Tensor, attention_mask: torch.Tensor,
                      kvs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """``mode='fusion'`` for ``B`` sequences against one context, from :meth:`fusion_first_self`'s
        output and :meth:`context_kv`'s keys/values."""
        self_bias = padding_bias(attention_mask, torch.float32)
        layers = self.encoder.layer[self.fusion_layer:]
        hidden = layers[0].after_self_attention(first_self, kvs[0])
        for layer, kv in zip(layers[1:], kvs[1:], strict=True):
            hidden = layer.after_self_attention(layer.attention(hidden, self_bias), kv)
        return hidden

    def multi_modal_shared(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                           kvs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """``mode='multi_modal'`` for ``B`` sequences against one context (:meth:`context_kv`)."""
        hidden = self.forward(input_ids, attention_mask=attention_mask, mode="text")
        return self.fusion_shared(self.fusion_first_self(hidden, attention_mask), attention_mask, kvs)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.transform = BertPredictionHeadTransform(cfg)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.decoder.bias = self.bias  # tied, as in the original (both names are in the state_dict)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictions(x)


class BertLMHeadModel(nn.Module):
    """The QA answer decoder: a causal BERT of ``num_layers`` layers, cross-attention in every layer
    (to the question states), and an LM head whose weight is tied to the word embeddings."""

    # Pairs that share one tensor; checkpoints store both names.
    TIED = (("bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"),
            ("cls.predictions.bias", "cls.predictions.decoder.bias"))

    def __init__(self, cfg: TextConfig, num_layers: int):
        super().__init__()
        self.bert = BertModel(cfg, num_layers=num_layers, fusion_layer=0, is_decoder=True)
        self.cls = BertOnlyMLMHead(cfg)
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor],
                encoder_hidden_states: torch.Tensor, encoder_attention_mask: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits [B, L, V]."""
        hidden = self.bert(input_ids, attention_mask=attention_mask, encoder_hidden_states=encoder_hidden_states,
                           encoder_attention_mask=encoder_attention_mask, mode="multi_modal")
        return self.cls(hidden)

    @staticmethod
    def sequence_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Shifted next-token cross-entropy summed per sequence (labels -100 are ignored) -> [B]."""
        shifted = logits[:, :-1].float()
        targets = labels[:, 1:]
        loss = F.cross_entropy(shifted.reshape(-1, shifted.shape[-1]), targets.reshape(-1),
                               ignore_index=-100, reduction="none")
        return loss.view(logits.shape[0], -1).sum(1)


__all__ = ["BertModel", "BertLMHeadModel", "Mode", "padding_bias", "causal_padding_bias"]
