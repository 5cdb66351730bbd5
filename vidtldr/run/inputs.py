"""Whether a run's inputs exist (checkpoint, tokenizer vocabulary, annotation, answer list, video
folder), and one message that lists every missing one with where to get it: checked before any model
is built, so a run stops once, naming all its missing files together."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from vidtldr.errors import MissingFilesError
from vidtldr.run.runspec import RunSpec

ZOO_URL = "https://pjlab-gvm-data.oss-cn-shanghai.aliyuncs.com/umt/multi_modality/"
DATA_HELP = ("annotations: the VINDLU/Singularity JSON files (UMT's DATASET.md) under "
             "<paths.data>/anno_downstream/; videos: the original datasets under <paths.data>/videos/<video_dir>/ "
             "(see README, 'Bringing datasets')")


def missing_inputs(spec: RunSpec, dataset_cfg: Any, tokenizer_problem: Optional[str] = None
                   ) -> tuple[list[str], dict[str, str]]:
    """(one line per missing input: checkpoint, tokenizer vocabulary, annotation, answer list,
    video folder; where to get each kind of input that is missing)."""
    from vidtldr.data.annotations import annotation_path, answer_list_path, video_root

    missing: list[str] = []
    help_lines: dict[str, str] = {}
    if spec.checkpoint is not None and not Path(spec.checkpoint).exists():
        missing.append(f"checkpoint   {spec.checkpoint}")
        hint = _family_hint(spec)
        if hint:
            help_lines["checkpoint"] = hint
        elif spec.checkpoint_from_zoo:
            help_lines["checkpoint"] = (f"checkpoint: {ZOO_URL}{Path(spec.checkpoint).name} (UMT model zoo); "
                                        "put it in paths.checkpoints (env VIDTLDR_CHECKPOINTS) or set model.checkpoint=/path")
        else:  # a file the user named: the zoo may not have it under that name, so no URL is guessed
            help_lines["checkpoint"] = ("checkpoint: model.checkpoint names a file that does not exist; "
                                        "check the path (or leave model.checkpoint unset to use the model-zoo file)")
    if tokenizer_problem:
        missing.append(f"tokenizer    {tokenizer_problem}")
        help_lines["tokenizer"] = ("tokenizer: the vocab.txt of bert-base-uncased (UMT-B) / bert-large-uncased (UMT-L) "
                                   "from Hugging Face; set model.tokenizer=/path/to/vocab.txt")
    ann = annotation_path(dataset_cfg, spec.data_root)
    if not ann.is_file():
        missing.append(f"annotation   {ann}")
    ans = answer_list_path(dataset_cfg, spec.data_root)
    if ans is not None and not ans.is_file():
        missing.append(f"answer list  {ans}")
    vroot = video_root(dataset_cfg, spec.data_root)
    if not vroot.is_dir():
        missing.append(f"video folder {vroot}/")
    if len(missing) > len(help_lines):
        from vidtldr.tasks.base import get_task

        help_lines["data"] = get_task(spec.task).data_help or DATA_HELP
    return missing, help_lines


def _family_hint(spec: RunSpec) -> Optional[str]:
    """Where a family that keeps its own checkpoints says to get one (``checkpoint_hint``), if it does."""
    from vidtldr.models.family import get_family

    hint = getattr(get_family(spec.family), "checkpoint_hint", None)
    return hint(spec.checkpoint) if hint is not None else None


def format_missing(missing: list[str], help_lines: dict[str, str], what: str) -> str:
    return (f"{len(missing)} input(s) of {what} are missing:\n  " + "\n  ".join(missing)
            + "\nwhere to get them:\n  " + "\n  ".join(help_lines.values()))


def check_inputs(spec: RunSpec, dataset_cfg: Any, tokenizer_problem: Optional[str] = None) -> None:
    """Raise one :class:`MissingFilesError` listing every missing input of this run and where to
    get each kind."""
    missing, help_lines = missing_inputs(spec, dataset_cfg, tokenizer_problem)
    if missing:
        raise MissingFilesError(format_missing(missing, help_lines, f"dataset={spec.dataset} model={spec.model}"))
