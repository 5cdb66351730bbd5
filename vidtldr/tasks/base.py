"""Tasks as registered plug-ins: what a task needs, how its run is scored and reported.

A task is one module of ``vidtldr/tasks/`` with a :class:`Task` subclass decorated with
``@register_task("<name>")``; a dataset config selects it with ``task: <name>``. The class declares
everything the layers above need to know about the task, so none of them branches on a task's name:

* ``readers``: the annotation reader kinds (``vidtldr/data/annotations.py``) whose splits it scores;
* ``heads``: the head set the backbone family builds for it (UMT: ``retrieval`` = ITC + ITM heads,
  ``qa`` = the answer decoder) and loads the checkpoint's matching keys for;
* ``trims_videos``: whether a dataset's ``trimmed30`` applies (the official QA never trims);
* ``limit_unit``: what ``data.limit`` counts (``videos`` or ``questions``), i.e. the counts
  ``<unit>`` / ``<unit>_total`` that tell a partial run;
* ``metric_columns``: the table columns its metrics fill (``vidtldr/report/rows.py`` names);
* ``outputs``: files written next to ``record.json`` from the result (QA: ``predictions.json``).
* ``query_costs`` / ``query_calls``: the per-query work outside the vision encoder that ``vidtldr
  flops`` reports, counted analytically from the text-side sizes, and as the model calls that
  ``flops trace=true`` traces to check that count (retrieval: text query + ITM re-ranking; QA: the
  question encoding and answer ranking; none for a task without texts);
* ``uses_text``: whether it reads texts (a tokenizer, text lengths, ``k_test``); action recognition does not;
* ``smoke_model``: the random-weight model config (``configs/model/``) its smoke runs use;
* ``views``: whether a video is evaluated as several test views (clips x crops, ``eval.clips`` /
  ``eval.crops``; the dataset config's ``sampling``, ``frame_interval``, ``test_clips``, ``test_crops``).
* ``headline_metrics`` / :meth:`Task.headline`: the numbers ``vidtldr compare`` ranks reducers by, the
  first being the one compared, read from a record's ``metrics`` (none: compare refuses the task);
* ``metric_labels``: display names of its metrics that are percentages (compare's tables and plot
  show them by name with 2 decimals; any other metric, e.g. a fidelity in 0..1, by key with 4).

How a task runs: the run layer (``vidtldr/run/task_run.py``) hands the assembled pieces (model,
tokenizer, reducer, split, resolved spec, feature caches, settings) to the task's runner. A task that
needs the run layer's machinery beyond the feature cache (the retrieval feature store, the
distributed ITM) has its runner in ``vidtldr/run/`` registered under the same name
(``@register_runner``); any other task implements :meth:`Task.run` here and reads its video
features through the job (``job.cached_videos``) without importing the run layer. Either way the
runner returns a :class:`TaskResult`, and its ``counts`` and ``extra["cost"]`` go into the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

TASKS: dict[str, type["Task"]] = {}
LIMIT_UNITS = ("videos", "questions")


@dataclass
class TaskResult:
    """What a task's run returns to the runner (which writes it into ``record.json``)."""

    metrics: dict
    counts: dict
    token_counts: list
    timings: dict
    skipped: list = field(default_factory=list)
    cache: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)   # "cost" (whole-evaluation GFLOPs), task-specific outputs
    # video -> per-block token counts, only when they differ between videos (content-adaptive reducers)
    video_token_counts: dict = field(default_factory=dict)


class Task:
    """Base class of a registered task (module docstring). Subclasses set the class attributes."""

    name: ClassVar[str] = ""
    readers: ClassVar[tuple[str, ...]] = ()
    heads: ClassVar[str] = ""
    trims_videos: ClassVar[bool] = True
    limit_unit: ClassVar[str] = "videos"
    metric_columns: ClassVar[tuple[str, ...]] = ()
    uses_text: ClassVar[bool] = True
    views: ClassVar[bool] = False
    smoke_model: ClassVar[str] = "tiny"   # the random-weight model config its smoke runs use
    data_help: ClassVar[str] = ""         # where to get its annotations and videos (shown when missing)
    # What `vidtldr compare` reads from a record's metrics, the first the one it ranks by (none: no headline)
    headline_metrics: ClassVar[tuple[str, ...]] = ()
    metric_labels: ClassVar[dict[str, str]] = {}

    def run(self, job: Any) -> TaskResult:
        """Score the job's split (only for tasks without a runner in ``vidtldr/run/``)."""
        raise NotImplementedError(f"task {self.name!r} has neither a run() nor a runner in vidtldr/run/")

    def trimmed30(self, dataset_trimmed30: bool) -> bool:
        """Whether videos are cut to their first 30 s (the dataset asks, and the task applies it)."""
        return bool(dataset_trimmed30) and self.trims_videos

    def is_limited(self, counts: dict) -> bool:
        """Whether ``data.limit`` left part of the split out (the record is then ``partial``)."""
        unit = self.limit_unit
        return counts.get(unit, 0) < counts.get(f"{unit}_total", 0)

    def table_row(self, metrics: dict) -> dict:
        """``record["metrics"]`` flattened into the table columns (``metric_columns``) it fills."""
        return {}

    def headline(self, metrics: dict) -> Optional[dict]:
        """``{name: float}`` of ``headline_metrics`` from a record's ``metrics`` (the first must be
        there, the others where present), or None when these metrics are not this task's."""
        names = self.headline_metrics
        if not names or names[0] not in metrics:
            return None
        return {k: float(metrics[k]) for k in names if k in metrics}

    def outputs(self, result: TaskResult) -> dict[str, Any]:
        """``{file name: JSON-ready content}`` written next to ``record.json`` (none by default)."""
        return {}

    def query_costs(self, text: Any, spec: Any, vision_tokens: int) -> dict[str, dict]:
        """Per-query GFLOPs outside the vision encoder, ``{entry: {"gflops_paper", "gflops_true", ...}}``,
        from the text side's sizes (``vidtldr.cost.text.TextDims``) and the resolved ``spec``, for a
        video of ``vision_tokens`` tokens (none by default)."""
        return {}

    def query_calls(self, model: Any, spec: Any, vision_tokens: int) -> dict[str, tuple[int, list]]:
        """The same entries as model calls on random inputs, ``{entry: (times, [(fn, args), ...])}``:
        the trace counts every ``fn(*args)`` and multiplies their sum by ``times`` (none by default)."""
        return {}


def check_task(cls: type) -> None:
    """A TypeError naming the class when a task's declarations are not usable."""
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TypeError(f"{where}: a registered task must subclass vidtldr.tasks.base.Task")
    if not cls.readers or not all(isinstance(r, str) for r in cls.readers):
        raise TypeError(f"{where}.readers = {cls.readers!r}; expected a tuple of reader names")
    if not isinstance(cls.heads, str) or not cls.heads:
        raise TypeError(f"{where}.heads = {cls.heads!r}; expected the head set's name, e.g. 'retrieval'")
    if cls.limit_unit not in LIMIT_UNITS:
        raise TypeError(f"{where}.limit_unit = {cls.limit_unit!r}; expected one of {LIMIT_UNITS}")
    if not isinstance(cls.trims_videos, bool):
        raise TypeError(f"{where}.trims_videos = {cls.trims_videos!r}; expected True or False")


def register_task(name: str):
    """Class decorator: make a task selectable by a dataset config's ``task: <name>``."""

    from vidtldr.registry import registrar

    return registrar(TASKS, "task", name, check_task)


def discover_tasks() -> dict[str, type[Task]]:
    """Import every module of ``vidtldr.tasks`` (registering the tasks they define) and return the
    registry. An import error in a task module is raised, not hidden."""
    from vidtldr.registry import import_plugins

    import_plugins(__name__.rsplit(".", 1)[0])
    return dict(TASKS)


def get_task(name: str, where: str = "task") -> Task:
    """The task registered as ``name`` (an instance); a ConfigError names ``where`` and the known tasks."""
    from vidtldr.errors import ConfigError

    known = discover_tasks()
    if name not in known:
        raise ConfigError(f"{where}: unknown task {name!r}; available: {sorted(known)}")
    return known[name]()


__all__ = ["Task", "TaskResult", "TASKS", "register_task", "discover_tasks", "get_task", "check_task"]
