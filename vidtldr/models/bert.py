"""BERT text encoder with cross-attention fusion layers, and the QA answer decoder (spec section 3,
section 5.2).

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
