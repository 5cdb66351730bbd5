"""Video QA by answer-list ranking (docs/protocol.md section 5).

The ranking itself is :meth:`vidtldr.models.umt.UMTQA.rank_answers` (first-piece top-k, then
re-scoring with the decoder loss). This module runs it over batches and turns the ranked
candidate indices into answer strings and official ``{question_id, answer}`` records. With several
questions per video, :func:`question_states_grouped` encodes a video's questions against its
cross-attention keys/values projected once (the ``grouped`` engine); :func:`rank_questions` is the
official per-question execution (``pairwise``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable, Optional, Sequence

import torch

from vidtldr.models.precision import model_device
from vidtldr.reduce.base import Reducer
from vidtldr.tasks.base import Task, TaskResult, register_task


@dataclass
class QABatch:
    videos: torch.Tensor  # [B, T, 3, H, W]
    question_ids: torch.Tensor  # [B, Lq] token ids
    question_mask: torch.Tensor  # [B, Lq]
    qids: Sequence = ()  # dataset question ids (for the official result records)


@dataclass
class QARanking:
    topk_ids: torch.Tensor  # [N_q, k] indices into the answer list, best first
    topk_probs: torch.Tensor  # [N_q, k] softmax over the k re-scored candidates
    predictions: list[str] = field(default_factory=list)
    qids: list = field(default_factory=list)
    token_counts: list = field(default_factory=list)  # per-block vision token counts (last batch)

    def records(self) -> list[dict]:
        """Official result records ``[{"question_id": ..., "answer": ...}]``."""
        return [{"question_id": q, "answer": a} for q, a in zip(self.qids, self.predictions, strict=True)]


@torch.no_grad()
def rank_questions(model, vision_tokens: torch.Tensor, question_ids: torch.Tensor, question_mask: torch.Tensor,
                   answer_ids: torch.Tensor, answer_mask: torch.Tensor, k: int,
                   pad_token_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank the answer list for a batch of questions whose videos are already encoded
    (``vision_tokens[i]``: the final vision tokens of question i's video, ``[B, N, C]``).

    The one ranking step of every QA path: the evaluation runner (tokens from the feature cache),
    :func:`rank_all` and the parity check. ``k`` is capped at the answer list's length. Returns
    ``(topk_ids [B, k], topk_probs [B, k] float32)`` on the CPU, best first."""
    device = model_device(model)
    k = min(int(k), int(answer_ids.shape[0]))
    topk_ids, topk_probs = model.rank_answers(vision_tokens.to(device), question_ids.to(device),
                                              question_mask.to(device), answer_ids.to(device),
                                              answer_mask.to(device), k, pad_token_id=pad_token_id)
    return topk_ids.cpu(), topk_probs.float().cpu()


@torch.no_grad()
def question_states_grouped(model, vision_of: Callable[[Hashable], torch.Tensor], video_keys: Sequence[Hashable],
                            question_ids: torch.Tensor, question_mask: torch.Tensor) -> torch.Tensor:
    """Question-encoder states ``[B, Lq, H]`` (``model.encode_question``) of B questions, where question b
    is about video ``video_keys[b]`` and ``vision_of(key)`` reads that video's ``[N, C]`` tokens. The
    questions of one video are encoded together against its cross-attention keys/values, projected
    once (``model.encode_question_shared``); each distinct video is read once."""
    device = model_device(model)
    groups: dict[Hashable, list[int]] = {}
    for b, key in enumerate(video_keys):
        groups.setdefault(key, []).append(b)
    out: Optional[torch.Tensor] = None
    for key, rows in groups.items():
        index = torch.tensor(rows, dtype=torch.long)
        states = model.encode_question_shared(vision_of(key).to(device), question_ids[index].to(device),
                                              question_mask[index].to(device))
        if out is None:
            out = states.new_empty((len(video_keys),) + tuple(states.shape[1:]))
        out[index.to(device)] = states
    if out is None:
        raise ValueError("question_states_grouped needs at least one question")
    return out


@torch.no_grad()
def rank_from_states(model, question_states: torch.Tensor, question_mask: torch.Tensor, answer_ids: torch.Tensor,
                     answer_mask: torch.Tensor, k: int, pad_token_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The answer-list ranking of :func:`rank_questions` from already encoded questions."""
    device = model_device(model)
    k = min(int(k), int(answer_ids.shape[0]))
    topk_ids, topk_probs = model.rank_from_states(question_states.to(device), question_mask.to(device),
                                                  answer_ids.to(device), answer_mask.to(device), k,
                                                  pad_token_id=pad_token_id)
    return topk_ids.cpu(), topk_probs.float().cpu()


def rank_all(model, batches: Iterable[QABatch], answer_list: Sequence[str], answer_ids: torch.Tensor,
             answer_mask: torch.Tensor, k: int = 128, reducer: Optional[Reducer] = None,
             pad_token_id: int = 0) -> QARanking:
    """Encode each batch's videos (with the reducer) and rank the answer list for its questions
    (:func:`rank_questions`); the prediction is the top re-ranked candidate."""
    if len(answer_list) != answer_ids.shape[0]:
        raise ValueError(f"answer_list has {len(answer_list)} entries but answer_ids has {answer_ids.shape[0]} rows")
    ids, probs, qids, counts = [], [], [], []
    device = model_device(model)
    for batch in batches:
        with torch.no_grad():
            vision = model.encode_vision(batch.videos.to(device), reducer=reducer)
        topk_ids, topk_probs = rank_questions(model, vision.tokens, batch.question_ids, batch.question_mask,
                                              answer_ids, answer_mask, k, pad_token_id)
        ids.append(topk_ids)
        probs.append(topk_probs)
        qids.extend(list(batch.qids) if len(batch.qids) else [None] * topk_ids.shape[0])
        counts = vision.token_counts
    topk_ids = torch.cat(ids)
    predictions = [answer_list[int(row[0])] for row in topk_ids]
    return QARanking(topk_ids=topk_ids, topk_probs=torch.cat(probs), predictions=predictions, qids=qids,
                     token_counts=counts)


@register_task("qa")
class QATask(Task):
    """Video question answering by answer-list ranking, scored by exact-match accuracy. Its runner
    (one encoding per distinct video, grouped question encoding) is ``vidtldr/run/runner_qa.py``. The
    official QA evaluation reads whole videos: a dataset's ``trimmed30`` does not apply."""

    readers = ("qa",)
    heads = "qa"
    trims_videos = False
    limit_unit = "questions"
    metric_columns = ("acc",)
    headline_metrics = ("acc",)
    metric_labels = {"acc": "accuracy"}

    def table_row(self, metrics: dict) -> dict:
        from vidtldr.tasks.metrics import number

        return {"acc": number(metrics.get("acc"))} if "acc" in metrics else {}

    def outputs(self, result: TaskResult) -> dict:
        """The official result records ``[{"question_id", "answer"}]`` as ``predictions.json``."""
        return {"predictions.json": result.extra["predictions"]}

    def query_costs(self, text, spec, vision_tokens: int) -> dict:
        """A question: its encoding against the video, the first-token pass, ``k_test`` candidate answers."""
        from vidtldr.cost.text import qa_cost

        qa = qa_cost(text, vision_tokens, spec.k_test, spec.max_q_len, spec.max_a_len)
        return {"qa_per_question": {"gflops_paper": qa.paper_total / 1e9, "gflops_true": qa.true_total / 1e9,
                                    "k_test": spec.k_test, "max_q_len": spec.max_q_len, "max_a_len": spec.max_a_len}}

    def query_calls(self, model, spec, vision_tokens: int) -> dict:
        from vidtldr.tasks.retrieval import random_text

        vision = torch.randn(1, vision_tokens, model.cfg.vision.width)
        q_ids, q_mask = random_text(model, 1, spec.max_q_len)
        with torch.no_grad():
            states = model.encode_question(vision, q_ids, q_mask)
        k = spec.k_test
        a_ids, a_mask = random_text(model, k, spec.max_a_len)
        return {"qa_per_question": (1, [(model.encode_question, (vision, q_ids, q_mask)),
                                        (lambda q, m: model.start_logits(q, m, 2), (states, q_mask)),
                                        (model.answer_loss, (a_ids, a_mask, states.repeat(k, 1, 1), q_mask.repeat(k, 1)))])}


__all__ = ["QATask", "QABatch", "QARanking", "rank_questions", "question_states_grouped", "rank_from_states", "rank_all"]
