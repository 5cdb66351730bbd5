"""scripts/check_parity.py takes every size and setting from the fixture folder.

The folder here is written by the test itself in the fixture format, for a model of other sizes
(3 frames of 24x24, width 48, 3 heads, fusion layer 1), a fractional vid-TLDR schedule, k_test 2
and an SSv2-style caption layout (several ground-truth videos per text). Its expected outputs are
computed here with the model's primitive methods, so this checks the script's plumbing and
generality; numerical correctness is proven against the official outputs in test_parity.py.
"""

import json
import shutil
import subprocess
import sys

import torch

from conftest import ROOT
from vidtldr.tasks.metrics import retrieval_metrics
from vidtldr.models import build_model, config_from_official
from vidtldr.models.tokenizer import load_tokenizer, tokenize
from vidtldr.reduce import build_reducer

SCHEDULE = [0.25, 0.1, 0]
CAPTIONS = ["a dog runs", "a man is playing a guitar on stage", "a cat", "two kids ride skateboards", "a red car"]
TXT2IMG = {0: [0, 1], 1: [2], 2: [3], 3: [4], 4: [0]}
IMG2TXT = {0: 0, 1: 0, 2: 1, 3: 2, 4: 3}  # as the official multi-vision-GT builder keeps it (last text)


def _write_fixture(folder, vocab):
    config = {
        "model": {"model_cls": "UMT", "embed_dim": 16, "temp": 0.07,
                  "vision_encoder": {"img_size": 24, "patch_size": 8, "encoder_embed_dim": 48, "encoder_depth": 3,
                                     "encoder_num_heads": 3, "num_frames": 3, "tubelet_size": 1,
                                     "vidTLDR_use": True, "vidTLDR_r": SCHEDULE},
                  "text_encoder": {"name": "bert_base", "fusion_layer": 1, "config": "bert_config.json"}},
        "inputs": {"max_txt_l": {"video": 7}}, "evaluation": {"k_test": 2},
        "vidTLDR_modes": {"off": {"vidTLDR_use": False, "vidTLDR_r": SCHEDULE},
                          "on": {"vidTLDR_use": True, "vidTLDR_r": SCHEDULE}},
    }
    bert = {"vocab_size": 210, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 40, "max_position_embeddings": 16, "fusion_layer": 1, "layer_norm_eps": 1e-12}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "bert_config.json").write_text(json.dumps(bert))
    shutil.copy(vocab, folder / "vocab.txt")
    torch.manual_seed(3)
    model = build_model(config_from_official(folder / "config.json"))
    with torch.no_grad():
        for block in model.vision_encoder.encoder.blocks:
            block.attn.qkv.weight.mul_(4.0)  # well-separated saliency scores
    torch.save({"model": model.state_dict()}, folder / "checkpoint.pth")
    tok = load_tokenizer(folder / "vocab.txt")
    ids = tokenize(tok, CAPTIONS, 7)
    videos = torch.randn(5, 3, 3, 24, 24)
    torch.save({"videos": videos, "captions": CAPTIONS, "txt2img": TXT2IMG, "img2txt": IMG2TXT,
                "input_ids": ids.input_ids, "attention_mask": ids.attention_mask, "max_txt_l": 7,
                "batch_size_test": 2}, folder / "inputs.pt")
    expected = {}
    with torch.no_grad():
        text = model.encode_text(ids.input_ids, ids.attention_mask)
        expected["text"] = {"text_embeds": text, "text_atts": ids.attention_mask}
        for mode, reducer in (("off", None), ("on", build_reducer("vidtldr", SCHEDULE))):
            out = model.encode_vision(videos, reducer=reducer)
            i2t_emb = model.itc_vision(out.pooled)[:, 0] @ model.itc_text(text).t()
            i2t = torch.full((5, 5), -100.0)
            t2i = torch.full((5, 5), -100.0)
            for i in range(5):
                for j in i2t_emb[i].topk(2).indices.tolist():
                    i2t[i, j] = model.itm_logit(text[j:j + 1], ids.attention_mask[j:j + 1], out.tokens[i:i + 1])[0]
            for j in range(5):
                for i in i2t_emb[:, j].topk(2).indices.tolist():
                    t2i[j, i] = model.itm_logit(text[j:j + 1], ids.attention_mask[j:j + 1], out.tokens[i:i + 1])[0]
            expected[f"vidtldr_{mode}"] = {
                "vision_embeds": out.tokens, "token_counts": out.token_counts, "i2t_emb": i2t_emb,
                "i2t": i2t, "t2i": t2i, "metrics_itm": retrieval_metrics(i2t, t2i, TXT2IMG, IMG2TXT),
            }
    torch.save(expected, folder / "expected.pt")


def test_check_parity_reads_everything_from_the_folder(umt_tiny_dir, tmp_path):
    _write_fixture(tmp_path, umt_tiny_dir / "vocab.txt")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_parity.py"), str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    counts = torch.load(tmp_path / "expected.pt", weights_only=True)["vidtldr_on"]["token_counts"]
    assert counts == [27, 21, 19, 19]  # 3 frames x 9 patches; int(27 * .25) = 6, int(21 * .1) = 2
    for mode in ("fused", "materialized"):
        for entry in ("vidtldr_on.token_counts", "vidtldr_on.i2t (-100 pattern)", "vidtldr_on.metrics_itm.img_r1",
                      "text.text_embeds"):
            assert any(l.startswith("PASS") and f"[{mode}] {entry} " in l for l in lines), (mode, entry)
