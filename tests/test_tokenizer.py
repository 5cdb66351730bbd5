"""Official token ids: `[CLS] text` without a closing [SEP]; QA answers `"<answer> [SEP]"`."""

import pytest
import torch

from vidtldr.errors import ConfigError
from vidtldr.models import load_architecture
from vidtldr.models.tokenizer import load_tokenizer, packaged_vocab_path, tokenize, tokenize_answers


@pytest.fixture(scope="module")
def tok(umt_tiny_dir):
    return load_tokenizer(umt_tiny_dir / "vocab.txt")


def test_fixture_ids_are_reproduced(tok, umt_tiny_dir):
    inputs = torch.load(umt_tiny_dir / "inputs.pt", weights_only=True)
    qa = torch.load(umt_tiny_dir / "qa_inputs.pt", weights_only=True)
    ids = tokenize(tok, inputs["captions"], inputs["max_txt_l"])
    assert torch.equal(ids.input_ids, inputs["input_ids"]) and torch.equal(ids.attention_mask, inputs["attention_mask"])
    q = tokenize(tok, qa["questions"], qa["max_q_len"])
    assert torch.equal(q.input_ids, qa["question_input_ids"])
    a = tokenize_answers(tok, qa["answer_list"], qa["max_a_len"], qa["eos"])
    assert torch.equal(a.input_ids, qa["answer_input_ids"]) and torch.equal(a.attention_mask, qa["answer_attention_mask"])


def test_no_closing_sep_and_truncation_keeps_max_len_minus_one_pieces(tok):
    cls, sep, pad = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
    ids = tokenize(tok, ["a dog", "a man is playing a guitar on stage"], 5)
    dog = tok.convert_tokens_to_ids(["a", "dog"])
    assert ids.input_ids[0].tolist() == [cls, *dog, pad, pad]
    assert ids.attention_mask[0].tolist() == [1, 1, 1, 0, 0]
    assert ids.input_ids[1].tolist() == [cls] + tok.convert_tokens_to_ids(["a", "man", "is", "playing"])
    assert sep not in ids.input_ids.flatten().tolist()
    # Word pieces and unknown words: "skateboarding" splits, a digit is [UNK].
    pieces = tokenize(tok, ["skateboarding 7"], 8).input_ids[0].tolist()
    assert pieces[:5] == [cls] + tok.convert_tokens_to_ids(["skate", "##board", "##ing", "[UNK]"])


def test_answers_end_with_the_literal_sep_which_is_truncated_first(tok):
    cls, sep, pad = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
    dog = tok.convert_tokens_to_ids("dog")
    out = tokenize_answers(tok, ["dog", "playing piano"], 4)
    assert out.input_ids[0].tolist() == [cls, dog, sep, pad]
    assert out.input_ids[1].tolist() == [cls] + tok.convert_tokens_to_ids(["playing", "piano", "[SEP]"])
    cut = tokenize_answers(tok, ["playing piano"], 3)  # no room left for [SEP]
    assert cut.input_ids[0].tolist() == [cls] + tok.convert_tokens_to_ids(["playing", "piano"])


def test_vocab_sources(umt_tiny_dir, tmp_path):
    assert len(load_tokenizer(umt_tiny_dir)) == 210  # a folder holding vocab.txt
    tiny = load_tokenizer("tiny")
    assert packaged_vocab_path().read_text() == (umt_tiny_dir / "vocab.txt").read_text()
    assert len(tiny) == load_architecture("tiny").text.vocab_size
    with pytest.raises(ConfigError, match="local Hugging Face cache"):
        load_tokenizer("no-such-model-anywhere")
    broken = tmp_path / "vocab.txt"
    broken.write_text("a\nb\n")
    with pytest.raises(ConfigError, match=r"lacks the special token \[PAD\]"):
        load_tokenizer(broken)
    assert tokenize(tiny, [], 6).input_ids.shape == (0, 6)
