"""The paper's GFLOPs, read from the one reference file (``vidtldr/report/paper_reference.csv``,
tables ``gflops`` and ``fig1``), in the shapes the FLOPs report and table look them up by."""

from __future__ import annotations

import functools
from dataclasses import dataclass

#: The frame count each setting's recount was made at (the datasets' own: 12 fine-tuned, 4 zero-shot).
FRAMES_OF_SETTING = {"finetuned": 12, "zeroshot": 4}


@dataclass(frozen=True)
class PaperGflops:
    schedules: dict   # (dataset, backbone) -> recount of the published vid-TLDR schedule
    baselines: dict   # (backbone, frames) -> no reduction
    figure1: dict     # dataset -> vid-TLDR GFLOPs printed in Figure 1 (UMT-B)
    figure1_tome: dict  # dataset -> ToMe GFLOPs printed in Figure 1 (UMT-B)


@functools.lru_cache(maxsize=1)
def paper_gflops() -> PaperGflops:
    from vidtldr.report.reference import load_reference

    ref = load_reference()
    rows = ref[ref["metric"] == "gflops"]
    schedules, baselines, figure1, figure1_tome = {}, {}, {}, {}
    for row in rows.itertuples():
        value = float(row.value)
        if row.table == "gflops" and row.method == "vidtldr":
            schedules[(row.dataset, row.backbone)] = value
        elif row.table == "gflops" and row.method == "none" and row.dataset == "all":
            baselines[(row.backbone, FRAMES_OF_SETTING[row.setting])] = value
        elif row.table == "fig1" and row.backbone == "umt_b" and row.method == "vidtldr":
            figure1[row.dataset] = value
        elif row.table == "fig1" and row.backbone == "umt_b" and row.method == "tome":
            figure1_tome[row.dataset] = value
    return PaperGflops(schedules=schedules, baselines=baselines, figure1=figure1, figure1_tome=figure1_tome)
