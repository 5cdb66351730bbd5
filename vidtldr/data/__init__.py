"""Data side: annotation readers (registry by ``reader``), decord frame sampling, the eval
transform, ``VideoDataset`` + loader, tiny synthetic datasets, ``inspect`` and ``validate`` CLIs.
Never imports ``vidtldr.models``."""

from vidtldr.data.annotations import QASplit, RetrievalSplit, build_split, load_split, register_reader
from vidtldr.data.dataset import SkippedVideo, VideoDataset, VideoLoader, make_loader
from vidtldr.data.registry import dataset_names, load_dataset_config
from vidtldr.data.text import pre_text
from vidtldr.data.transforms import eval_transform, resize_uint8
from vidtldr.data.video import FrameSample, probe_video, read_frames, read_frames_with_info, sample_indices

__all__ = [
    "QASplit", "RetrievalSplit", "build_split", "load_split", "register_reader",
    "SkippedVideo", "VideoDataset", "VideoLoader", "make_loader",
    "dataset_names", "load_dataset_config", "pre_text", "eval_transform", "resize_uint8",
    "FrameSample", "probe_video", "read_frames", "read_frames_with_info", "sample_indices",
]
