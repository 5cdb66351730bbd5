#!/usr/bin/env python
"""Check this package against golden outputs of the official UMT / vid-TLDR code.

    python scripts/check_parity.py FIXTURE_DIR [--attention both|fused|materialized]
                                   [--itm-engine both|grouped|pairwise] [--device cpu]

FIXTURE_DIR has the layout of ``tests/fixtures/umt_tiny`` (see its README): ``config.json`` +
``bert_config.json`` (every size is taken from there), ``vocab.txt``, ``checkpoint.pth`` /
``inputs.pt`` / ``expected.pt`` (retrieval), optionally ``qa_checkpoint.pth`` / ``qa_inputs.pt`` /
``qa_expected.pt`` (QA) and ``merge_cases.pt``. The model is rebuilt from the configs, the official
checkpoint goes through the normal loader, and the package's own tokenizer, encoders, retrieval
scoring, metrics, QA ranking and vid-TLDR reducer produce every output. One line per expected
entry with its max |difference|; exit status 1 if any entry is out of tolerance:

* exact: token ids, token counts, merge indices, top-k candidate indices, the -100 pattern of the
  ITM matrices, QA top-k ids / predictions / records, tie-free metrics;
* metrics whose value depends on how ties are ordered: within the fixture's tie bounds;
* atol 1e-4 (rtol 0) for every float tensor, 1e-5 for the direct merge cases.

ITM re-ranking and QA question encoding are checked with each ``--itm-engine``: ``pairwise`` (the
official execution; entries named as in the fixture) and ``grouped`` (entries ``<section>.grouped.*``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from vidtldr.errors import VidtldrError, cli_guard
from vidtldr.tasks.metrics import qa_accuracy, retrieval_metrics
from vidtldr.models.checkpoint import load_checkpoint
from vidtldr.models.config import config_from_official
from vidtldr.models.tokenizer import load_tokenizer, tokenize, tokenize_answers
from vidtldr.models.umt import build_model
from vidtldr.models.vit import ATTENTION_MODES
from vidtldr.reduce import build_reducer, parse_schedule
from vidtldr.reduce.base import ReductionState
from vidtldr.reduce.vidtldr import objective_score, official_vidtldr_call
from vidtldr.tasks.itm import ENGINES, rerank
from vidtldr.tasks.qa import question_states_grouped, rank_from_states, rank_questions
from vidtldr.tasks.retrieval import encode_texts, itc_scores

FLOAT_ATOL = 1e-4
MERGE_ATOL = 1e-5
METRIC_SLACK = 0.006  # metrics are rounded to 2 decimals; bounds are unrounded

# Entries of expected.pt / qa_expected.pt that describe the fixture itself (robustness margins,
# self-consistency of the official run, per-query ranks used for the tie bounds), not outputs.
FIXTURE_NOTES = {"margins", "ranks", "batch1_vs_batched_maxdiff", "itc_recompute_maxdiff",
                 "itm_vs_allpairs_maxdiff", "debug_recompute_maxdiff"}


class Report:
    def __init__(self, atol: float):
        self.atol = atol
        self.failures: list[str] = []
        self.count = 0

    def _line(self, ok: bool, name: str, detail: str) -> None:
        self.count += 1
        print(f"{'PASS' if ok else 'FAIL'}  {name:<58s} {detail}")
        if not ok:
            self.failures.append(name)

    def close(self, name: str, got: torch.Tensor, want: torch.Tensor, atol: Optional[float] = None) -> None:
        atol = self.atol if atol is None else atol
        got, want = torch.as_tensor(got).cpu(), torch.as_tensor(want).cpu()  # --device cuda: compare on the CPU
        if tuple(got.shape) != tuple(want.shape):
            self._line(False, name, f"shape {list(got.shape)} != expected {list(want.shape)}")
            return
        if want.numel() == 0:
            self._line(True, name, "max|diff| = 0 (empty)")
            return
        nan_mismatch = bool((torch.isnan(got.float()) != torch.isnan(want.float())).any())
        diff = (got.double() - want.double()).abs().nan_to_num(0.0).max().item()
        self._line(diff <= atol and not nan_mismatch, name,
                   f"max|diff| = {diff:.3e}  (atol {atol:g}){'  NaN pattern differs' if nan_mismatch else ''}")

    def exact(self, name: str, got: Any, want: Any) -> None:
        if isinstance(want, torch.Tensor) or isinstance(got, torch.Tensor):
            got, want = torch.as_tensor(got).cpu(), torch.as_tensor(want).cpu()
            ok = tuple(got.shape) == tuple(want.shape) and bool((got == want).all())
            if ok:
                detail = "max|diff| = 0  (exact)"
            elif tuple(got.shape) != tuple(want.shape):
                detail = f"shape {list(got.shape)} != expected {list(want.shape)}"
            else:
                detail = f"{int((got != want).sum())} element(s) differ  (exact)"
        else:
            ok = got == want
            detail = "equal  (exact)" if ok else f"got {got!r}, expected {want!r}"
        self._line(ok, name, detail)

    def metric(self, name: str, got: float, want: float, bounds: Optional[tuple[float, float]]) -> None:
        if bounds is None or bounds[0] == bounds[1]:
            ok = abs(got - want) < 1e-9
            self._line(ok, name, f"{got:.2f} vs {want:.2f}  |diff| = {abs(got - want):.2f}  (tie-free: exact)")
        else:
            lo, hi = bounds
            ok = lo - METRIC_SLACK <= got <= hi + METRIC_SLACK
            self._line(ok, name, f"{got:.2f} (official {want:.2f}, ties allow [{lo:.2f}, {hi:.2f}])  "
                                 f"|diff| = {abs(got - want):.2f}")

    def note(self, name: str, text: str) -> None:
        print(f"----  {name:<58s} {text}")


def _load(path: Path) -> Any:
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _modes(config: dict, expected: dict) -> dict[str, dict]:
    """vid-TLDR settings per expected-output section (``vidtldr_<mode>``)."""
    modes = config.get("vidTLDR_modes")
    if not modes:
        ve = config["model"]["vision_encoder"]
        modes = {"on" if ve.get("vidTLDR_use") else "off": {"vidTLDR_use": ve.get("vidTLDR_use", False),
                                                             "vidTLDR_r": ve.get("vidTLDR_r")}}
    return {f"vidtldr_{name}": spec for name, spec in modes.items() if f"vidtldr_{name}" in expected}


def _reducer(spec: dict, depth: int):
    if not spec.get("vidTLDR_use"):
        return None
    return build_reducer("vidtldr", parse_schedule(spec["vidTLDR_r"], depth))


def _batches(videos: torch.Tensor, batch_size: int):
    for start in range(0, videos.shape[0], batch_size):
        yield videos[start:start + batch_size]


def _metric_bounds(ranks: Optional[dict], side: str, key: str) -> Optional[tuple[float, float]]:
    """Tie bounds (worst, best) for one metric key, derived from the fixture's per-recall bounds."""
    if not ranks:
        return None
    prefix = {"txt": "txt_bounds", "img": "img_bounds"}
    parts = key.split("_")
    if key == "r_mean":
        a, b = _metric_bounds(ranks, side, "txt_r_mean"), _metric_bounds(ranks, side, "img_r_mean")
        return None if a is None or b is None else ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    bounds = ranks.get(prefix.get(parts[0], ""))
    if bounds is None:
        return None
    if key.endswith("_r_mean"):
        per = [(bounds[r]["worst_case"], bounds[r]["best_case"]) for r in ("r1", "r5", "r10")]
        return (sum(p[0] for p in per) / 3, sum(p[1] for p in per) / 3)
    recall = parts[1]
    if recall not in bounds:
        return None
    return (bounds[recall]["worst_case"], bounds[recall]["best_case"])


# ---------------------------------------------------------------------------------------------


def check_tokenizer(rep: Report, folder: Path, inputs: dict, qa_inputs: Optional[dict], max_txt_l: int) -> None:
    tok = load_tokenizer(folder / "vocab.txt")
    try:
        from vidtldr.data.text import pre_text
    except ImportError:
        pre_text = None
    if pre_text is not None and "captions_raw" in inputs:
        rep.exact("text.pre_text(captions_raw)", [pre_text(c) for c in inputs["captions_raw"]], inputs["captions"])
    ids = tokenize(tok, inputs["captions"], max_txt_l)
    rep.exact("text.input_ids", ids.input_ids, inputs["input_ids"])
    rep.exact("text.attention_mask", ids.attention_mask, inputs["attention_mask"])
    if qa_inputs is not None:
        if pre_text is not None and "questions_raw" in qa_inputs:
            rep.exact("qa.pre_text(questions_raw)", [pre_text(q) for q in qa_inputs["questions_raw"]],
                      qa_inputs["questions"])
        q = tokenize(tok, qa_inputs["questions"], qa_inputs["max_q_len"])
        rep.exact("qa.question_input_ids", q.input_ids, qa_inputs["question_input_ids"])
        rep.exact("qa.question_attention_mask", q.attention_mask, qa_inputs["question_attention_mask"])
        a = tokenize_answers(tok, qa_inputs["answer_list"], qa_inputs["max_a_len"], qa_inputs.get("eos", "[SEP]"))
        rep.exact("qa.answer_input_ids", a.input_ids, qa_inputs["answer_input_ids"])
        rep.exact("qa.answer_attention_mask", a.attention_mask, qa_inputs["answer_attention_mask"])


ITM_KEYS = ("i2t_topk_idx", "t2i_topk_idx", "i2t", "t2i", "metrics_itm")


def check_itm(rep: Report, name: str, exp: dict, scores, inputs: dict) -> None:
    """The entries that depend on ITM re-ranking, for one engine's scores."""
    for key in ITM_KEYS:
        if key not in exp:
            continue
        want = exp[key]
        if key in ("i2t_topk_idx", "t2i_topk_idx"):
            rep.exact(name + key, scores.i2t_topk if key.startswith("i2t") else scores.t2i_topk, want)
        elif key in ("i2t", "t2i"):
            got = scores.i2t if key == "i2t" else scores.t2i
            rep.exact(name + key + " (-100 pattern)", got == -100.0, want == -100.0)
            rep.close(name + key, got, want)
        else:
            got = retrieval_metrics(scores.i2t, scores.t2i, inputs["txt2img"], inputs["img2txt"])
            ranks = exp.get("ranks", {}).get("itm")
            for mkey, mwant in want.items():
                rep.metric(f"{name}{key}.{mkey}", got[mkey], float(mwant), _metric_bounds(ranks, "itm", mkey))


def check_retrieval(rep: Report, folder: Path, config: dict, device: str, attention: str, tag: str,
                    engines: tuple = ("pairwise",)) -> None:
    inputs, expected = _load(folder / "inputs.pt"), _load(folder / "expected.pt")
    cfg = config_from_official(folder / "config.json", folder / "bert_config.json", task="retrieval")
    model = build_model(cfg, attention=attention)
    load_checkpoint(model, folder / "checkpoint.pth", kind="finetuned")
    model.to(device)
    tok = load_tokenizer(folder / "vocab.txt")
    max_txt_l = int(inputs.get("max_txt_l", config.get("max_txt_l", 0)) or
                    config["inputs"]["max_txt_l"]["video"])
    ids = tokenize(tok, inputs["captions"], max_txt_l)
    k_test = int(config["evaluation"]["k_test"])
    batch_size = int(inputs.get("batch_size_test", config.get("batch_size_test", 1)))

    if "vision_pos_embed" in expected:
        rep.close(f"{tag}vision_pos_embed", model.vision_encoder.encoder.pos_embed.cpu(), expected["vision_pos_embed"])
    text = encode_texts(model, ids.input_ids, ids.attention_mask)
    exp_text = expected.get("text", {})
    with torch.no_grad():
        text_proj = model.text_proj(text.embeds[:, 0].to(device)).cpu()
    text_computed = {"text_embeds": text.embeds, "text_atts": text.mask, "text_proj": text_proj,
                     "text_feat": text.feat}
    for key, want in exp_text.items():
        if key in text_computed:
            (rep.exact if key == "text_atts" else rep.close)(f"{tag}text.{key}", text_computed[key], want)
        else:
            rep.note(f"{tag}text.{key}", "not checked (entry unknown to this script)")
    modes = _modes(config, expected)
    for section in expected:
        if section not in modes and section not in ("text", "vision_pos_embed"):
            rep.note(f"{tag}{section}", "not checked (no vidTLDR_modes entry / unknown section)")

    for section, spec in modes.items():
        exp = expected[section]
        name = f"{tag}{section}."
        reducer = _reducer(spec, cfg.vision.depth)
        trace = "merge_trace" in exp or "layer_outputs" in exp
        tokens, feats, pooled_all, proj_all = [], [], [], []
        counts, outputs, sizes, traces = None, None, None, None
        with torch.no_grad():
            for videos in _batches(inputs["videos"], batch_size):
                out = model.encode_vision(videos.to(device), reducer=reducer, trace=trace)
                tokens.append(out.tokens.cpu())
                pooled_all.append(out.pooled.cpu())
                proj_all.append(model.vision_proj(out.pooled).cpu())
                feats.append(model.itc_vision(out.pooled).cpu())
                counts = out.token_counts
                if trace:
                    outputs = [o.cpu() for o in out.block_outputs] if outputs is None else \
                        [torch.cat([a, o.cpu()]) for a, o in zip(outputs, out.block_outputs, strict=True)]
                    sizes = [None if s is None else s.cpu() for s in out.block_sizes] if sizes is None else \
                        [a if s is None else torch.cat([a, s.cpu()]) for a, s in zip(sizes, out.block_sizes, strict=True)]
                    traces = [dict(t) for t in out.state.trace] if traces is None else \
                        [{k: torch.cat([a[k], t[k]]) if torch.is_tensor(t[k]) else a[k] for k in a}
                         for a, t in zip(traces, out.state.trace, strict=True)]
        tokens, feat = torch.cat(tokens), torch.cat(feats)
        i2t_emb = itc_scores(feat, text.feat)
        by_engine = {e: rerank(model, i2t_emb, text, tokens, engine=e, k_test=k_test) for e in engines}
        scores = next(iter(by_engine.values()))
        with torch.no_grad():
            all_pairs = None
            if "itm_logits_all_pairs" in exp:
                n_v, n_t = i2t_emb.shape
                all_pairs = torch.stack([
                    model.itm_head(model.text_encoder(
                        attention_mask=text.mask.to(device), encoder_embeds=text.embeds.to(device),
                        encoder_hidden_states=tokens[v:v + 1].expand(n_t, -1, -1).to(device),
                        encoder_attention_mask=torch.ones(n_t, tokens.shape[1], dtype=torch.long, device=device),
                        mode="fusion")[:, 0]).cpu() for v in range(n_v)])
        computed = {
            "vision_embeds": tokens, "pooled_vision_embeds": torch.cat(pooled_all),
            "vision_proj": torch.cat(proj_all), "vision_feat": feat, "i2t_emb": i2t_emb, "t2i_emb": scores.t2i_emb,
            "itm_logits_all_pairs": all_pairs,
        }
        for engine, engine_scores in by_engine.items():
            check_itm(rep, name if engine == "pairwise" else f"{name}grouped.", exp, engine_scores, inputs)
        for key, want in exp.items():
            if key in FIXTURE_NOTES or key in ITM_KEYS:
                continue
            if key == "token_counts":
                rep.exact(name + key, list(counts), list(want))
            elif key == "metrics_itc":
                got = retrieval_metrics(scores.i2t_emb, scores.t2i_emb, inputs["txt2img"], inputs["img2txt"])
                ranks = exp.get("ranks", {}).get("itc")
                for mkey, mwant in want.items():
                    rep.metric(f"{name}{key}.{mkey}", got[mkey], float(mwant), _metric_bounds(ranks, "itc", mkey))
            elif key == "layer_outputs":
                for layer, tensor in want.items():
                    rep.close(f"{name}layer_outputs.{layer}", outputs[int(layer)], tensor)
            elif key == "layer_sizes":
                for layer, tensor in want.items():
                    got = sizes[int(layer)]
                    if got is None:
                        rep.exact(f"{name}layer_sizes.{layer}", "None", "a tensor")
                    else:
                        rep.close(f"{name}layer_sizes.{layer}", got, tensor)
            elif key == "merge_trace":
                rep.exact(f"{name}merge_trace (merging layers)", [t["layer"] for t in traces or []],
                          [t["layer"] for t in want])
                for got_t, want_t in zip(traces or [], want, strict=False):  # a count mismatch is reported above
                    for field, value in want_t.items():
                        label = f"{name}merge_trace[{want_t['layer']}].{field}"
                        if torch.is_tensor(value) and value.is_floating_point():
                            rep.close(label, got_t[field], value)
                        else:
                            rep.exact(label, got_t[field], value)
            elif computed.get(key) is not None:
                rep.close(name + key, computed[key], want)
            else:
                rep.note(name + key, "not checked (entry unknown to this script)")


def check_qa(rep: Report, folder: Path, config: dict, device: str, attention: str, tag: str,
             engines: tuple = ("pairwise",)) -> None:
    qa_in, qa_exp = _load(folder / "qa_inputs.pt"), _load(folder / "qa_expected.pt")
    inputs = _load(folder / "inputs.pt")
    cfg = config_from_official(folder / "config.json", folder / "bert_config.json", task="qa")
    model = build_model(cfg, attention=attention)
    load_checkpoint(model, folder / "qa_checkpoint.pth", kind="finetuned")
    model.to(device)
    tok = load_tokenizer(folder / "vocab.txt")
    qa_cfg = config.get("qa", {})
    k = int(qa_in.get("k_test", qa_cfg.get("k_test", 128)))
    batch_size = int(qa_in.get("batch_size_test", qa_cfg.get("batch_size_test", 1)))
    questions = tokenize(tok, qa_in["questions"], int(qa_in["max_q_len"]))
    answers = tokenize_answers(tok, qa_in["answer_list"], int(qa_in["max_a_len"]), qa_in.get("eos", "[SEP]"))
    videos = inputs["videos"][qa_in["video_index"]]
    qids = [int(q) for q in qa_in["question_ids"]]

    for section, spec in _modes(config, qa_exp).items():
        exp = qa_exp[section]
        name = f"{tag}qa.{section}."
        reducer = _reducer(spec, cfg.vision.depth)
        # The evaluation's path: vision tokens per batch, then the runner's ranking step on them.
        with torch.no_grad():
            outs = [model.encode_vision(videos[s:s + batch_size].to(device), reducer=reducer)
                    for s in range(0, videos.shape[0], batch_size)]
            vis = torch.cat([out.tokens for out in outs])
        ranked = [rank_questions(model, vis[s:s + batch_size], questions.input_ids[s:s + batch_size],
                                 questions.attention_mask[s:s + batch_size], answers.input_ids,
                                 answers.attention_mask, k) for s in range(0, videos.shape[0], batch_size)]
        topk_ids, topk_probs = torch.cat([r[0] for r in ranked]), torch.cat([r[1] for r in ranked])
        predictions = [qa_in["answer_list"][int(row[0])] for row in topk_ids]
        # Intermediate tensors, recomputed through the same model methods the ranking uses.
        with torch.no_grad():
            q_ids, q_mask = questions.input_ids.to(device), questions.attention_mask.to(device)
            states = model.encode_question(vis, q_ids, q_mask)
            start = model.start_logits(states, q_mask, int(answers.input_ids[0, 0]))
            first = start.softmax(-1).index_select(1, answers.input_ids[:, 1].to(device))
            kk = min(k, answers.input_ids.shape[0])
            top_p, top_i = first.topk(kk, dim=1)
            loss = model.answer_loss(answers.input_ids.to(device)[top_i.reshape(-1)],
                                     answers.attention_mask.to(device)[top_i.reshape(-1)],
                                     states.repeat_interleave(kk, 0), q_mask.repeat_interleave(kk, 0)).view(-1, kk)
        computed = {"vision_embeds": vis.cpu(), "question_states": states.cpu(), "start_logits": start.cpu(),
                    "first_token_probs": first.cpu(), "answer_loss_topk_first_order": loss.cpu(),
                    "log_probs_sum_topk_first_order": (top_p.log() - loss).cpu(), "topk_probs": topk_probs}
        for key, want in exp.items():
            if key in FIXTURE_NOTES:
                continue
            if key == "topk_ids":
                rep.exact(name + key, topk_ids, want)
            elif key == "pred_answers":
                rep.exact(name + key, predictions, list(want))
            elif key == "result":
                rep.exact(name + key, [{"question_id": q, "answer": a} for q, a in zip(qids, predictions, strict=True)],
                          [dict(r) for r in want])
            elif key == "accuracy":
                gold = dict(zip(qids, qa_in["gt_answers"], strict=True))
                acc = qa_accuracy(dict(zip(qids, predictions, strict=True)), gold)
                rep.exact(name + "accuracy.overall", acc, float(want["overall"]))
            elif key == "token_counts_final":
                rep.exact(name + key, outs[-1].token_counts[-1], int(want))
            elif key in computed:
                rep.close(name + key, computed[key], want)
            else:
                rep.note(name + key, "not checked (entry unknown to this script)")
        if "grouped" in engines:
            check_qa_grouped(rep, f"{name}grouped.", exp, model, vis, [int(v) for v in qa_in["video_index"]],
                             questions, answers, k, batch_size, qa_in["answer_list"])


def check_qa_grouped(rep: Report, name: str, exp: dict, model, vis: torch.Tensor, video_index: list,
                     questions, answers, k: int, batch_size: int, answer_list: list) -> None:
    """QA with the question encoder run per video (keys/values projected once per distinct video)."""
    first_row = {v: row for row, v in reversed(list(enumerate(video_index)))}
    states = question_states_grouped(model, lambda v: vis[first_row[v]], video_index, questions.input_ids,
                                     questions.attention_mask)
    ranked = [rank_from_states(model, states[s:s + batch_size], questions.attention_mask[s:s + batch_size],
                               answers.input_ids, answers.attention_mask, k)
              for s in range(0, states.shape[0], batch_size)]
    topk_ids, topk_probs = torch.cat([r[0] for r in ranked]), torch.cat([r[1] for r in ranked])
    got = {"question_states": states.cpu(), "topk_probs": topk_probs}
    for key in ("question_states", "topk_probs"):
        if key in exp:
            rep.close(name + key, got[key], exp[key])
    if "topk_ids" in exp:
        rep.exact(name + "topk_ids", topk_ids, exp["topk_ids"])
    if "pred_answers" in exp:
        rep.exact(name + "pred_answers", [answer_list[int(row[0])] for row in topk_ids], list(exp["pred_answers"]))


def check_merge_cases(rep: Report, folder: Path, atol: float) -> None:
    cases = _load(folder / "merge_cases.pt")
    for case in cases.get("cases", []):
        name = f"merge.{case['name']}."
        x, attn, layer = case["inputs"]["x"], case["inputs"]["attn"], int(case["inputs"]["layer"])
        info = copy.deepcopy(case["inputs"]["info"])
        outputs = case["outputs"]
        got_x, score, r_merge, match = official_vidtldr_call(x.clone(), attn, info, layer)
        rep.close(name + "x", got_x, outputs["x"], atol)
        for key in ("size", "source"):
            if outputs[key] is None:
                rep.exact(name + key, info[key] is None, True)
            else:
                rep.close(name + key, info[key], outputs[key], atol)
        if outputs["score_obj"] is None:
            rep.exact(name + "score_obj", score is None, True)
        else:
            rep.close(name + "score_obj", score, outputs["score_obj"], atol)
        rep.exact(name + "r_merge", r_merge, int(outputs["r_merge"]))
        internals = outputs.get("merge_internals")
        if internals is None:
            rep.exact(name + "merge_internals", match is None, True)
        else:
            for key, want in internals.items():
                got = getattr(match, key)
                (rep.close if want.is_floating_point() else rep.exact)(name + key, got, want, *(
                    (atol,) if want.is_floating_point() else ()))
        # The same case through the reducer hook the ViT calls (sizes/provenance in a ReductionState).
        start_info = case["inputs"]["info"]
        if start_info["use"]:
            state = ReductionState(size=start_info["size"], source=start_info["source"],
                                   trace_source=bool(start_info["source_trace"]))
            schedule = list(start_info["r"])
            reducer = build_reducer("vidtldr", schedule)
            aux = {}
            need = reducer.needs(layer, x.shape[1])
            if need is not None:
                mean_probs = attn.mean(1)
                aux["neg_entropy"] = torch.xlogy(mean_probs, mean_probs).sum(-1, keepdim=True)
            hooked = reducer.reduce(x.clone(), layer, state, aux)
            rep.close(name + "x (reducer hook)", hooked, outputs["x"], atol)
            if outputs["size"] is not None:
                rep.close(name + "size (reducer hook)", state.size, outputs["size"], atol)
    for i, case in enumerate(cases.get("objective_score_cases", [])):
        rep.close(f"merge.objective_score_cases[{i}]", objective_score(case["attn"]), case["score"], atol)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="check_parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("fixture_dir", type=Path)
    parser.add_argument("--attention", choices=("both",) + ATTENTION_MODES, default="both",
                        help="ViT attention execution mode(s) to check (default: both)")
    parser.add_argument("--itm-engine", choices=("both",) + ENGINES, default="both",
                        help="ITM re-ranking / QA question-encoding engine(s) to check (default: both)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--atol", type=float, default=FLOAT_ATOL)
    parser.add_argument("--merge-atol", type=float, default=MERGE_ATOL)
    args = parser.parse_args(argv)

    with cli_guard("check_parity"):
        folder = args.fixture_dir
        if not (folder / "config.json").is_file():
            raise VidtldrError(f"{folder}: no config.json; expected a parity fixture folder")
        torch.manual_seed(0)
        config = json.loads((folder / "config.json").read_text())
        rep = Report(args.atol)
        inputs = _load(folder / "inputs.pt")
        qa_inputs = _load(folder / "qa_inputs.pt") if (folder / "qa_inputs.pt").is_file() else None
        max_txt_l = int(inputs.get("max_txt_l") or config["inputs"]["max_txt_l"]["video"])
        check_tokenizer(rep, folder, inputs, qa_inputs, max_txt_l)
        modes = ATTENTION_MODES if args.attention == "both" else (args.attention,)
        engines = ("pairwise", "grouped") if args.itm_engine == "both" else (args.itm_engine,)
        for mode in modes:
            tag = f"[{mode}] " if len(modes) > 1 else ""
            check_retrieval(rep, folder, config, args.device, mode, tag, engines)
            if (folder / "qa_expected.pt").is_file():
                check_qa(rep, folder, config, args.device, mode, tag, engines)
        if (folder / "merge_cases.pt").is_file():
            check_merge_cases(rep, folder, args.merge_atol)
        if rep.failures:
            print(f"\nFAILED: {len(rep.failures)} of {rep.count} entries out of tolerance: "
                  + ", ".join(rep.failures[:10]) + (" ..." if len(rep.failures) > 10 else ""))
            return 1
        print(f"\nOK: all {rep.count} entries within tolerance")
        return 0


if __name__ == "__main__":
    sys.exit(main())
