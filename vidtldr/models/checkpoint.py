"""Checkpoint loading: official ``.pth`` files and ``.safetensors``, strictly validated.

* ``.pth`` files are read with ``torch.load(..., weights_only=True)``: pickled code is never run.
  A file that needs more than tensors and plain containers is refused with instructions to
  convert it once (``scripts/convert_checkpoint.py --trust-pickle``) into ``.safetensors``.
* The state_dict is ``ckpt["model"]`` when that key exists, else the whole object (official rule).
* ``kind="pretrained"`` applies the official zero-shot remap (docs/protocol.md section 7): ``bert.`` is dropped from
  text keys and, for QA, the answer decoder is derived from the pre-trained text encoder
  (embeddings, MLM head, and layers >= fusion_layer renumbered from 0).
* Validation is strict: a missing, unexpected or mis-shaped key is a :class:`CheckpointError`
  naming the file and listing the keys. The only keys dropped without error are the ``ignored``
  prefixes the caller passes, i.e. what the backbone family says its official loader ignores on
  purpose for the model's head set and the checkpoint kind (UMT: ``UMTFamily.ignored_keys``, the
  ``strict=False`` of the official code); they are reported in the returned :class:`LoadReport`.
* Two kinds of key may be absent and are filled, also reported: the ``position_ids`` buffers
  (deterministic ``arange``; newer transformers versions stopped saving them) and one name of a
  tied pair when the other name is present (they are one tensor in the model).
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Optional, Sequence

import torch
from torch import nn

from vidtldr.errors import CheckpointError

Kind = Literal["finetuned", "pretrained"]
KINDS = ("finetuned", "pretrained")

_MAX_LISTED = 25
_CONVERT_HINT = ("vidtldr reads .pth files with torch.load(weights_only=True) and never executes pickled "
                 "code. If you trust this file, convert it once with\n"
                 "    python scripts/convert_checkpoint.py --trust-pickle {path} {stem}.safetensors\n"
                 "and load the .safetensors file instead.")


@dataclass
class LoadReport:
    path: str
    format: str  # "pth" | "safetensors"; "" for a state_dict given in memory (prepare_state_dict)
    kind: str
    loaded: int = 0
    ignored: list[str] = field(default_factory=list)  # allow-listed keys that were dropped
    filled: list[str] = field(default_factory=list)  # keys filled from position defaults / tied partners
    remapped: int = 0  # keys renamed by the pre-trained remap


def _listing(keys, limit: int = _MAX_LISTED) -> str:
    keys = list(keys)
    shown = "\n    ".join(keys[:limit])
    more = f"\n    ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"\n    {shown}{more}"


# ---------------------------------------------------------------------------------------------
# Reading


def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))  # onto the CPU (load_file's default)
    except Exception as exc:  # SafetensorError, OSError ...
        raise CheckpointError(f"{path}: not a readable .safetensors file (truncated or corrupt?): {exc}") from None


def _looks_like_pickle(path: Path) -> bool:
    """A torch zip archive (``PK``) or a pickle of protocol 2-5 (``\\x80`` + version): the only files for
    which converting with --trust-pickle can make sense."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    return head == b"PK" or (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _weights_only_cause(text: str) -> str:
    """torch's reason for a weights-only refusal, e.g. "Unsupported global: GLOBAL argparse.Namespace was not
    an allowed global by default" (the first sentence after "WeightsUnpickler error:")."""
    _, _, cause = text.partition("WeightsUnpickler error:")
    return (cause.strip() or text.strip()).splitlines()[0].split(". ")[0]


def _read_pth(path: Path) -> object:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _looks_like_pickle(path):
            # Random or corrupt bytes: advising to trust the file would only teach trusting pickles.
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle; corrupt or "
                                  "not a checkpoint at all): re-download it") from None
        # torch.load(weights_only=True) reports every unpickling failure as "Weights only load failed ...".
        raise CheckpointError(f"{path}: the file holds Python objects other than tensors and plain "
                              f"containers ({_weights_only_cause(str(exc))}).\n"
                              + _CONVERT_HINT.format(path=path, stem=path.with_suffix(""))) from None
    except (EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: the file ends early (truncated download?): {exc!r}") from None
    except RuntimeError as exc:
        text = str(exc)
        if "PytorchStreamReader" in text:  # torch's zip reader: a cut or damaged archive
            cause = text[text.index("PytorchStreamReader"):].split(". ")[0]  # without torch's advice that follows
            raise CheckpointError(f"{path}: truncated or corrupt PyTorch zip archive ({cause}); "
                                  "re-download the file") from None
        raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint ({_first_line(exc)})") from None
    except Exception as exc:  # the weights-only unpickler fails in many ways on arbitrary bytes
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, or a corrupt one ({_first_line(exc)})") from None


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read a checkpoint file -> (state_dict, format). Unwraps ``{"model": ...}``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    if path.suffix == ".safetensors":
        obj, fmt = _read_safetensors(path), "safetensors"
    else:
        obj, fmt = _read_pth(path), "pth"
    if isinstance(obj, Mapping) and "model" in obj:
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state_dict or {{'model': state_dict}}, got {type(obj).__name__}")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: expected a state_dict (name -> tensor) or {{'model': state_dict}}; "
                              f"these entries are not tensors:{_listing(map(str, not_tensors))}")
    return dict(obj), fmt


# ---------------------------------------------------------------------------------------------
# Pre-trained remap (docs/protocol.md section 7)


def remap_pretrained(state_dict: Mapping[str, torch.Tensor], task: str, fusion_layer: int) -> dict:
    """The official zero-shot key remap of a pre-training checkpoint.

    Every key containing ``bert`` gets a copy without ``bert.`` (the original is dropped for
    retrieval). For QA, every original ``text_encoder`` key is also moved to ``text_decoder``:
    layers below ``fusion_layer`` are dropped, the others renumbered from 0; embeddings and the
    MLM head (``cls.*``) are copied as they are.
    """
    has_decoder = task == "qa"
    out = dict(state_dict)
    for key in list(state_dict):
        if "bert" in key:
            out[key.replace("bert.", "")] = state_dict[key]
            if not has_decoder:
                del out[key]
        if has_decoder and "text_encoder" in key:
            parts = key.split(".")
            if "layer" in key:
                try:
                    layer = int(parts[4])  # text_encoder.bert.encoder.layer.{n}.
                except (IndexError, ValueError):
                    raise CheckpointError(f"pre-trained remap: cannot read a layer number from key {key!r} "
                                          f"(expected text_encoder.bert.encoder.layer.N...)") from None
                if layer < fusion_layer:
                    del out[key]  # (only this iteration removes the key, so it is still there)
                    continue
                parts[4] = str(layer - fusion_layer)
            decoder_key = ".".join(parts).replace("text_encoder", "text_decoder")
            out[decoder_key] = state_dict[key]
            del out[key]
    return out


def looks_pretrained(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("text_encoder.bert.") for k in state_dict)


# ---------------------------------------------------------------------------------------------
# Validation and loading


def _tied_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Names in ``model.state_dict()`` that refer to the same tensor."""
    seen: dict[int, str] = {}
    pairs = []
    for name, tensor in model.state_dict(keep_vars=True).items():
        ident = id(tensor)
        if ident in seen:
            pairs.append((seen[ident], name))
        else:
            seen[ident] = name
    return pairs


def _model_task(model: nn.Module) -> str:
    cfg = getattr(model, "cfg", None)
    task = getattr(cfg, "task", None)
    if task not in ("retrieval", "qa"):
        raise CheckpointError("load_checkpoint needs a UMTRetrieval or UMTQA model (from build_model)")
    return task


def _check_kind(sd: Mapping[str, torch.Tensor], kind: Kind, source: str) -> None:
    """A pre-trained file loaded as fine-tuned, or the reverse, is refused: remapping a fine-tuned
    file would leave its keys as they are and "succeed", so a zero-shot run would silently evaluate
    fine-tuned weights."""
    if kind == "pretrained" and not looks_pretrained(sd):
        raise CheckpointError(
            f"{source}: loaded as a pre-trained (zero-shot) checkpoint, but it looks like a fine-tuned one "
            f"(no 'text_encoder.bert.' keys). Zero-shot datasets (*_zs) need the pre-trained file "
            f"(b16_25m.pth / l16_25m.pth, model.checkpoint=/path); to evaluate these fine-tuned weights, "
            f"use the dataset config without _zs (or load_checkpoint(..., kind='finetuned'))")
    if kind == "finetuned" and looks_pretrained(sd):
        raise CheckpointError(f"{source}: this looks like a pre-trained (zero-shot) checkpoint (keys start with "
                              f"'text_encoder.bert.'); load it with kind='pretrained'")


def _drop_ignored(sd: dict, prefixes: Sequence[str], report: LoadReport) -> None:
    """Drop the keys ``prefixes`` name: a prefix that ends with "." names a module (every key under
    it), any other only the key itself (``temp``)."""
    for key in list(sd):
        if any(key == p or (p.endswith(".") and key.startswith(p)) for p in prefixes):
            report.ignored.append(key)
            del sd[key]


def _fill_tied_and_defaults(model: nn.Module, sd: dict, expected: Mapping[str, torch.Tensor], source: str,
                            report: LoadReport) -> None:
    """One tensor under two names: accept either name, insist on equal values when both are there.
    BERT's ``position_ids`` buffers, absent from older files, are filled with their default."""
    for first, second in _tied_pairs(model):
        if first in sd and second in sd:
            a, b = sd[first], sd[second]
            if a.shape == b.shape and not torch.equal(a, b):
                raise CheckpointError(f"{source}: tied entries {first!r} and {second!r} hold different values; "
                                      f"the model stores them as one tensor")
        elif first in sd or second in sd:
            present, absent = (first, second) if first in sd else (second, first)
            sd[absent] = sd[present]
            report.filled.append(absent)
    for key, tensor in expected.items():
        if key.endswith("embeddings.position_ids") and key not in sd:
            sd[key] = torch.arange(tensor.numel()).reshape(tensor.shape)
            report.filled.append(key)


def _key_problems(sd: dict, expected: Mapping[str, torch.Tensor], task: str, kind: Kind) -> tuple[list[str], str]:
    """(missing / unexpected / mismatched-shape listings, a hint on the likely mix-up)."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [f"{k}: checkpoint {list(sd[k].shape)} vs model {list(expected[k].shape)}"
                  for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    problems = [f"{len(keys)} {what}:{_listing(keys)}" for what, keys in (
        ("missing key(s)", missing), ("unexpected key(s)", unexpected), ("shape mismatch(es)", mismatched)) if keys]
    hint = ""
    if kind == "finetuned" and task == "qa" and any(k.startswith("vision_proj") for k in unexpected):
        hint = "\n(a retrieval checkpoint given to a QA model?)"
    elif task == "retrieval" and any(k.startswith("text_decoder.") for k in unexpected):
        hint = "\n(a QA checkpoint given to a retrieval model?)"
    return problems, hint


def prepare_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], kind: Kind = "finetuned",
                       source: str = "<state_dict>", ignored: Sequence[str] = ()) -> tuple[dict, LoadReport]:
    """Remap (pre-trained), drop the ``ignored`` keys (prefixes: the family's list for this head set
    and kind), fill defaults, and validate against ``model``. Returns the state_dict ready for
    ``load_state_dict(strict=True)`` and a report."""
    if kind not in KINDS:
        raise CheckpointError(f"checkpoint kind must be one of {KINDS}, got {kind!r}")
    task = _model_task(model)
    report = LoadReport(path=source, format="", kind=kind)
    sd = dict(state_dict)
    _check_kind(sd, kind, source)
    if kind == "pretrained":
        before = set(sd)
        sd = remap_pretrained(sd, task, model.cfg.text.fusion_layer)
        report.remapped = len(set(sd) - before)
    _drop_ignored(sd, ignored, report)
    expected = model.state_dict(keep_vars=True)
    _fill_tied_and_defaults(model, sd, expected, source, report)
    problems, hint = _key_problems(sd, expected, task, kind)
    if problems:
        raise CheckpointError(f"{source} does not match the {task} model built from this config "
                              f"(kind={kind}):\n" + "\n".join(problems) + hint)
    report.loaded = len(sd)
    return sd, report


def load_checkpoint(model: nn.Module, path: str | Path, kind: Kind = "finetuned",
                    ignored: Sequence[str] = ()) -> LoadReport:
    """Load an official UMT checkpoint into ``model`` strictly; returns a :class:`LoadReport`.

    ``kind="finetuned"``: keys must already be in the model's layout (official evaluate mode);
    ``kind="pretrained"``: a pre-training checkpoint, remapped as the official zero-shot loader does.
    ``ignored``: key prefixes dropped (and reported) instead of refused; the family passes its list
    (``get_family("umt").load_weights(model, path, kind)`` loads as the evaluation does).
    Raises :class:`CheckpointError` for unreadable files and any key/shape mismatch.
    """
    path = Path(path)
    raw, fmt = read_state_dict(path)
    sd, report = prepare_state_dict(model, raw, kind=kind, source=str(path), ignored=ignored)
    report.format = fmt
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # dtype/device problems that validation cannot foresee
        raise CheckpointError(f"{path}: load_state_dict failed: {exc}") from None
    return report


def save_safetensors(state_dict: Mapping[str, torch.Tensor], path: str | Path,
                     metadata: Optional[dict[str, str]] = None) -> None:
    """Write a state_dict as ``.safetensors`` (tied tensors are stored under each name), atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


__all__ = ["load_checkpoint", "read_state_dict", "prepare_state_dict", "remap_pretrained", "save_safetensors",
           "LoadReport", "looks_pretrained"]
