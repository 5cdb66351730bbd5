"""Display names and the paper's dataset groups, defined once for every table, plot and report
(``vidtldr.report`` and ``vidtldr.analysis`` import them from here)."""

from __future__ import annotations

import functools

DATASET_LABEL = {
    "msrvtt": "MSRVTT", "msvd": "MSVD", "didemo": "DiDeMo", "anet": "ActivityNet", "lsmdc": "LSMDC",
    "ssv2_label": "SSv2-label", "ssv2_template": "SSv2-template", "msrvtt_qa": "MSRVTT-QA",
    "msvd_qa": "MSVD-QA", "anet_qa": "ActivityNet-QA", "kinetics400": "Kinetics-400", "ssv2": "SSv2",
}
BACKBONE_LABEL = {"umt_b": "UMT-B/16", "umt_l": "UMT-L/16", "tiny": "tiny (random weights)",
                  "videomae_b": "VideoMAE-B/16", "videomae_l": "VideoMAE-L/16",
                  "videomae_tiny": "tiny VideoMAE (random weights)"}
METHOD_LABEL = {"none": "UMT", "vidtldr": "+vid-TLDR", "tome": "+ToMe", "random": "+random drop",
                "random_merge": "+random merge", "fastv": "+FastV", "divprune": "+DivPrune",
                "visionzip": "+VisionZip", "pitome": "+PiToMe", "rlt": "+RLT"}
METRIC_LABEL = {"t2v_r1": "T2V R@1", "t2v_r5": "T2V R@5", "t2v_r10": "T2V R@10", "v2t_r1": "V2T R@1",
                "v2t_r5": "V2T R@5", "v2t_r10": "V2T R@10", "r1_mean": "R@1 (mean)", "acc": "Acc",
                "gflops": "GFLOPs", "top1": "Top-1", "top5": "Top-5"}
RETRIEVAL_METRICS = ("t2v_r1", "t2v_r5", "t2v_r10", "v2t_r1", "v2t_r5", "v2t_r10")

#: Fine-tuned retrieval datasets of the paper's tables, in the paper's order.
FT_DATASETS = ("msrvtt", "msvd", "didemo", "anet", "lsmdc", "ssv2_label", "ssv2_template")
#: Zero-shot retrieval: paper dataset -> our dataset config.
ZS_DATASETS = {"msrvtt": "msrvtt_zs", "msvd": "msvd_zs", "didemo": "didemo_zs", "anet": "anet_zs",
               "lsmdc": "lsmdc_zs"}
#: Action recognition (VideoMAE's test protocol), in the VideoMAE paper's order.
ACTION_DATASETS = ("kinetics400", "ssv2")
#: QA datasets with a published vid-TLDR schedule (ActivityNet-QA has only its baseline).
QA_DATASETS = ("msrvtt_qa", "msvd_qa")


@functools.lru_cache(maxsize=None)
def task_of(dataset: str) -> str:
    """The task of a table's dataset: the ``task`` key of the dataset config of that name."""
    from vidtldr.data.registry import load_dataset_config

    return str(load_dataset_config(dataset)["task"])


def is_qa(dataset: str) -> bool:
    """Whether a table's dataset is scored by the QA task (its config's ``task`` key, not its name)."""
    return task_of(dataset) == "qa"
