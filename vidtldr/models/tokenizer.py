"""Token ids exactly as the official UMT code produces them, from transformers' ``BertTokenizer``.

The official tokenizer copy (inherited from ALBEF) builds a single sequence as ``[CLS] X`` with
**no closing [SEP]**, so truncation keeps ``max_len - 1`` word pieces. A stock tokenizer call adds
``[SEP]``; here the word pieces are produced without special tokens, truncated to ``max_len - 1``,
and prefixed with ``[CLS]`` by hand. QA answers are ``"<answer> [SEP]"`` (the literal ``[SEP]`` is
recognised as the special token) with ``max_a_len``.

Vocabularies: a path to a ``vocab.txt`` (or a folder holding one), ``"tiny"`` for the 210-token
vocabulary shipped with the package, or a model name already in the local Hugging Face cache
(nothing is downloaded).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import torch

from vidtldr.errors import ConfigError

TINY_VOCAB = "tiny"


def packaged_vocab_path(name: str = TINY_VOCAB) -> Path:
    path = resources.files("vidtldr.models") / "vocab" / f"{name}_vocab.txt"
    return Path(str(path))


def _read_vocab(path: Path) -> "OrderedDict[str, int]":
    vocab: OrderedDict[str, int] = OrderedDict()
    with open(path, encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            token = line.rstrip("\n")
            if token in vocab:
                raise ConfigError(f"{path}: duplicate vocabulary entry {token!r} on line {index + 1}")
            vocab[token] = index
    for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
        if special not in vocab:
            raise ConfigError(f"{path}: vocabulary lacks the special token {special}")
    return vocab


def _from_vocab_file(path: Path):
    from transformers import BertTokenizer

    vocab = _read_vocab(path)
    params = inspect.signature(BertTokenizer.__init__).parameters
    # transformers >= 5 takes the vocabulary itself; 4.x takes a file path.
    if "vocab" in params:
        return BertTokenizer(vocab=vocab, do_lower_case=True)
    return BertTokenizer(vocab_file=str(path), do_lower_case=True)


def load_tokenizer(name_or_path: str | Path):
    """A lower-casing WordPiece ``BertTokenizer`` from a vocab path, ``"tiny"``, or a cached name."""
    return _from_vocab_file(vocab_path(name_or_path))


def check_vocab_size(tokenizer, vocab_size: int, source: str | Path) -> None:
    """The tokenizer must have exactly the model's ``vocab_size`` entries: a different vocabulary
    maps words to other ids (or past the embedding table) without any error at run time."""
    have = len(tokenizer)
    if have != int(vocab_size):
        raise ConfigError(f"tokenizer vocabulary {source} has {have} entries but the model's text encoder has "
                          f"vocab_size {int(vocab_size)}; pass the vocab.txt that belongs to the checkpoint "
                          f"(model.tokenizer=/path/to/vocab.txt)")


def vocab_path(name_or_path: str | Path) -> Path:
    """The vocab.txt that ``name_or_path`` names (see :func:`load_tokenizer`)."""
    if str(name_or_path) == TINY_VOCAB:
        return Path(str(packaged_vocab_path()))
    path = Path(name_or_path)
    if path.is_dir() and (path / "vocab.txt").is_file():
        return path / "vocab.txt"
    if path.is_file():
        return path
    cached = _cached_vocab(str(name_or_path))
    if cached is not None:
        return cached
    raise ConfigError(
        f"tokenizer {str(name_or_path)!r}: not a vocab.txt path and not in the local Hugging Face cache. "
        f"Nothing is downloaded: pass the path of a vocab.txt (e.g. bert-base-uncased's), or fetch it where a "
        f"network is available (`huggingface-cli download {name_or_path} vocab.txt`).")


def _cached_vocab(name: str) -> Path | None:
    """vocab.txt of a model in the local Hugging Face cache, or None. (transformers >= 5 silently
    returns a 5-token tokenizer for an unknown name, so the file is looked up explicitly.)"""
    from huggingface_hub import try_to_load_from_cache  # a dependency of transformers

    try:
        found = try_to_load_from_cache(repo_id=name, filename="vocab.txt")
    except Exception:  # invalid repo id etc.
        return None
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


@dataclass
class Tokens:
    input_ids: torch.Tensor  # int64 [N, L]
    attention_mask: torch.Tensor  # int64 [N, L]


def tokenize(tokenizer, texts: Sequence[str], max_len: int) -> Tokens:
    """Official ids: ``[CLS]`` + at most ``max_len - 1`` word pieces, padded to ``max_len``."""
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2, got {max_len}")
    texts = list(texts)
    if not texts:
        empty = torch.zeros(0, max_len, dtype=torch.long)
        return Tokens(empty, empty.clone())
    pieces = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_len - 1)["input_ids"]
    cls_id, pad_id = tokenizer.cls_token_id, tokenizer.pad_token_id
    ids = torch.full((len(texts), max_len), pad_id, dtype=torch.long)
    mask = torch.zeros((len(texts), max_len), dtype=torch.long)
    for row, seq in enumerate(pieces):
        seq = [cls_id] + list(seq)
        ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, :len(seq)] = 1
    return Tokens(ids, mask)


def tokenize_answers(tokenizer, answers: Sequence[str], max_a_len: int, eos: str = "[SEP]") -> Tokens:
    """QA candidates as the official code feeds them: ``"<answer> [SEP]"`` tokenised with ``max_a_len``."""
    return tokenize(tokenizer, [f"{answer} {eos}" for answer in answers], max_a_len)


__all__ = ["load_tokenizer", "tokenize", "tokenize_answers", "Tokens", "packaged_vocab_path", "TINY_VOCAB"]
