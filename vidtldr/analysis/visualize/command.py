"""Show what a token reducer did to one video: merged groups and vid-TLDR saliency, as images.

    python -m vidtldr.visualize                                   # tiny model, generated clip
    python -m vidtldr.visualize video=clip.mp4 model=tiny merge=vidtldr merge.r=[0.3,0.2,0,0] out=viz/ gif=true
    python -m vidtldr.visualize video=clip.mp4 model=umt_b dataset=msrvtt merge=vidtldr model.checkpoint=ret_msrvtt_b16_25m.pth

Arguments are Hydra overrides of ``configs/visualize.yaml``, which composes the evaluation's own
configuration: ``model=``, ``dataset=``, ``merge=``, ``merge.r=``, ``eval.num_frames=``,
``model.checkpoint=``, ``model.init=random``, ``device=`` are resolved by the evaluation's resolver
(``vidtldr.run.runspec``), so the frames, schedule and checkpoint are the ones an evaluation run
would use, and what it refuses is refused here with the same message. Keys of this tool: ``video``
(a file; default: a generated tiny clip), ``out`` (folder, default ``viz``), ``gif`` (also write an
animated GIF), ``panel`` (pixels per frame in the overview figure, default 180).

With ``model.init=random`` (the tiny model's default) the model has seeded random weights
(``model.seed``), and every image says so. What the images show is then a property of the reducer
on those weights, not of a trained UMT.

Written files (the last line printed is a JSON object listing them):

* ``frames.png``: the sampled frames as the model sees them (resized to the input size).
* ``groups.png``: the same frames, each final token's original patches in one colour, outlined;
  patches that no final token holds (vid-TLDR's zero-saliency merges, random drop) are dimmed.
* ``saliency_layerNN.png``: for every vid-TLDR merging block, the saliency the block scored each
  token with, painted on the patches that token held (inferno colour map, 0 to 1).
* ``overview.png``: all of the above as one labelled figure; ``overview.gif`` with ``gif=true``.

``.visualize_outputs.json`` lists them; the next run into the same ``out=`` removes the files of that
list it does not write again (so no saliency map of an earlier vid-TLDR run stays beside a ToMe run's
images, listed in the summary's ``removed``) and never touches any other file.
"""

from __future__ import annotations

import dataclasses

import colorsys
import json
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from vidtldr import jsonio
from vidtldr.errors import VidtldrError, cli_guard
from vidtldr.files import atomic_output
from vidtldr.reduce.base import ReductionState, Reducer

GAP = 4  # white pixels between the frames of a strip
MIN_PANEL = 16  # pixels per frame in the overview: below this a frame is a smudge (0 was a matplotlib traceback)
LEGEND = ("groups: one colour per final token that holds several patches (untinted: holds one), white outlines "
          "between tokens\nhatched: patches no final token holds (merged with saliency 0, or dropped);  "
          "saliency: inferno, 0 (black) to 1 (yellow)")


# ----------------------------------------------------------------------------- what the model did


@dataclass
class Visualization:
    """Everything the images are drawn from (numpy, on the CPU).

    frames: uint8 ``[F, S, S, 3]`` model-input frames; ``grid`` patches per side, ``patch`` pixels
    per patch, ``tubelet`` frames per token. ``groups``: ``[N0]`` index of the final token that
    holds each original patch, -1 where none does. ``saliency``: ``(block, [N0])`` per vid-TLDR
    merging block, NaN on patches no token held at that block.
    """

    frames: np.ndarray
    grid: int
    patch: int
    tubelet: int
    groups: np.ndarray
    saliency: list = field(default_factory=list)
    token_counts: list = field(default_factory=list)
    title: str = ""

    @property
    def num_groups(self) -> int:
        return int(len(np.unique(self.groups[self.groups >= 0])))


class _SourceSnapshots(Reducer):
    """Wraps a reducer and keeps the provenance map as it was on entry to each block, so a
    block's per-token saliency can be painted onto original patches. The wrapped reducer's
    behaviour is unchanged (it sees the same state, in the same order)."""

    def __init__(self, inner: Reducer):
        super().__init__(inner.schedule)
        self.inner = inner
        self.exact_decisions = getattr(inner, "exact_decisions", True)
        self.before: dict[int, Optional[torch.Tensor]] = {}

    def needs(self, layer, num_tokens):
        return self.inner.needs(layer, num_tokens)

    def reducing_blocks(self, num_tokens):
        return self.inner.reducing_blocks(num_tokens)

    def reduce(self, x: torch.Tensor, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        self.before[layer] = state.source  # replaced, never modified in place, by the reducers
        return self.inner.reduce(x, layer, state, aux)

    def reduce_input(self, x: torch.Tensor, state: ReductionState, aux: dict) -> torch.Tensor:
        return self.inner.reduce_input(x, state, aux)  # input-level reducers (rlt) act before block 0


def holder_of_each_patch(source: Optional[torch.Tensor], num_patches: int) -> np.ndarray:
    """``source`` ``[N, N0]`` (one sample) -> ``[N0]`` holder index, -1 where no token holds the
    patch. ``None`` (nothing merged yet) means every token still holds only its own patch."""
    if source is None:
        return np.arange(num_patches)
    held = source.max(dim=0).values > 0
    holder = source.argmax(dim=0)
    return torch.where(held, holder, torch.full_like(holder, -1)).cpu().numpy()


def analyse(model, frames_u8: torch.Tensor, reducer: Optional[Reducer], device: str = "cpu",
            title: str = "") -> Visualization:
    """Encode one clip (uint8 ``[F, 3, H, W]``) with tracing on and collect what the images show."""
    from vidtldr.data.transforms import normalize, resize_uint8

    cfg = model.vision_encoder.cfg
    shown = resize_uint8(frames_u8, cfg.img_size)
    videos = normalize(shown)[None].to(device)
    wrapped = _SourceSnapshots(reducer) if reducer is not None else None
    with torch.no_grad():
        out = model.encode_vision(videos, reducer=wrapped, trace=True, trace_source=True)
    n0 = out.state.embedded_tokens or out.state.token_counts[0]  # patches, before any input-level removal
    final = out.state.source[0] if out.state.source is not None else None
    saliency = []
    for entry in out.state.trace:
        score = entry.get("score_obj")
        if score is None:  # only vid-TLDR scores tokens
            continue
        holder = holder_of_each_patch(
            None if wrapped.before.get(entry["layer"]) is None else wrapped.before[entry["layer"]][0], n0)
        per_token = score[0, :, 0].float().cpu().numpy()
        values = np.where(holder >= 0, per_token[np.clip(holder, 0, None)], np.nan)
        saliency.append((int(entry["layer"]), values))
    return Visualization(frames=shown.permute(0, 2, 3, 1).numpy(), grid=cfg.grid, patch=cfg.patch_size,
                         tubelet=cfg.tubelet_size, groups=holder_of_each_patch(final, n0),
                         saliency=saliency, token_counts=list(out.state.token_counts), title=title)


# ----------------------------------------------------------------------------- drawing


def group_colours(n: int) -> np.ndarray:
    """``[n, 3]`` uint8 colours, neighbours in index far apart in hue (golden-ratio steps), with
    brightness and saturation cycling so that many groups stay distinguishable."""
    out = np.empty((max(n, 0), 3), dtype=np.uint8)
    for k in range(n):
        hue = (k * 0.6180339887) % 1.0
        sat = (0.95, 0.7, 0.5)[k % 3]
        val = (1.0, 0.8, 0.9, 0.7)[(k // 3) % 4]
        out[k] = np.round(np.array(colorsys.hsv_to_rgb(hue, sat, val)) * 255)
    return out


def _frame_labels(vis: Visualization, values: np.ndarray, frame: int) -> np.ndarray:
    """Per-patch values of one displayed frame as a pixel map ``[S, S]`` (nearest upsampling)."""
    g, p = vis.grid, vis.patch
    t = frame // vis.tubelet
    block = values[t * g * g:(t + 1) * g * g].reshape(g, g)
    return np.repeat(np.repeat(block, p, axis=0), p, axis=1)


def _dimmed(frame: np.ndarray) -> np.ndarray:
    """Dark grey with light diagonal hatching: the look of a patch no token holds, distinct from
    the black of saliency 0 and from every group colour."""
    grey = frame.astype(np.float32).mean(axis=-1, keepdims=True) * 0.3
    rows, cols = np.indices(frame.shape[:2])
    hatch = ((rows + cols) % 8 == 0)[..., None]
    return np.repeat(np.where(hatch, 150.0, grey), 3, axis=-1)


def draw_groups(vis: Visualization, frame: int, alpha: float = 0.55, singletons: bool = False) -> np.ndarray:
    """uint8 ``[S, S, 3]``: each merged group (a final token holding two or more patches, in any
    frames) blended in its own colour, white outlines between tokens. Tokens that hold a single
    patch stay untinted unless ``singletons``, so the merges stand out."""
    labels = _frame_labels(vis, vis.groups, frame)
    image = vis.frames[frame].astype(np.float32)
    ids, counts = np.unique(vis.groups[vis.groups >= 0], return_counts=True)
    coloured = ids if singletons else ids[counts > 1]
    # colour index by rank of the holder, so the palette does not depend on which tokens survive
    rank = np.full(int(vis.groups.max()) + 2 if len(ids) else 1, -1)
    rank[coloured] = np.arange(len(coloured))
    palette = group_colours(len(coloured)).astype(np.float32)
    held = labels >= 0
    out = _dimmed(image)
    out[held] = image[held]
    tint = held & (rank[np.clip(labels, 0, None)] >= 0)
    out[tint] = (1 - alpha) * image[tint] + alpha * palette[rank[labels[tint]]]
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    out[edge] = 255.0
    return np.round(out).clip(0, 255).astype(np.uint8)


def draw_saliency(vis: Visualization, values: np.ndarray, frame: int, alpha: float = 0.7) -> np.ndarray:
    """uint8 ``[S, S, 3]``: the saliency heat map (inferno, 0..1) over the frame; dimmed where no
    token held the patch."""
    from matplotlib import colormaps

    pixels = _frame_labels(vis, values, frame)
    image = vis.frames[frame].astype(np.float32)
    known = ~np.isnan(pixels)
    heat = colormaps["inferno"](np.clip(np.nan_to_num(pixels), 0, 1))[..., :3] * 255
    out = _dimmed(image)
    out[known] = (1 - alpha) * image[known] + alpha * heat[known]
    return np.round(out).clip(0, 255).astype(np.uint8)


def strip(panels: Sequence[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Side by side with ``gap`` white pixels between panels."""
    h = panels[0].shape[0]
    parts = []
    for i, panel in enumerate(panels):
        if i:
            parts.append(np.full((h, gap, 3), 255, dtype=np.uint8))
        parts.append(panel)
    return np.concatenate(parts, axis=1)


def _save_png(array: np.ndarray, path: Path, title: str) -> Path:
    from PIL import Image, PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    meta.add_text("Title", title)
    with atomic_output(path) as tmp:  # a half-written image never has the final name
        Image.fromarray(array).save(tmp, format="PNG", optimize=True, pnginfo=meta)
    return path


def _rows(vis: Visualization) -> list[tuple[str, list[np.ndarray]]]:
    frames = range(vis.frames.shape[0])
    merged = int((np.unique(vis.groups[vis.groups >= 0], return_counts=True)[1] > 1).sum())
    rows = [("input frames", [vis.frames[f] for f in frames]),
            (f"{vis.token_counts[-1]} tokens\n({merged} merged groups)",
             [draw_groups(vis, f) for f in frames])]
    for layer, values in vis.saliency:
        rows.append((f"saliency\nblock {layer}", [draw_saliency(vis, values, f) for f in frames]))
    return rows


def write_overview(vis: Visualization, path: Path, panel_px: int = 180, palette: bool = True) -> Path:
    """One labelled figure: a row of input frames, one of groups, one per saliency map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    rows = _rows(vis)
    cols = vis.frames.shape[0]
    dpi = 100
    size = panel_px / dpi
    fig, axes = plt.subplots(len(rows), cols, figsize=(size * cols + 1.4, size * len(rows) + 0.9),
                             dpi=dpi, squeeze=False)
    for r, (label, panels) in enumerate(rows):
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if r == 0:
                ax.set_title(f"frame {c}", fontsize=8)
    # wrap to the figure width (about 7.5 px per character at this font size)
    fig.suptitle(textwrap.fill(vis.title, width=max(40, int(fig.get_figwidth() * dpi / 7.5))), fontsize=9)
    fig.text(0.5, 0.005, LEGEND, ha="center", va="bottom", fontsize=8)
    fig.tight_layout(rect=(0, 0.045, 1, 0.97))
    with atomic_output(path, ".png") as tmp:
        fig.savefig(tmp, dpi=dpi)
        plt.close(fig)
        if palette:  # 256 colours keep the README picture small; the heat map survives fine
            with Image.open(tmp) as img:
                img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(tmp, optimize=True)
    return path


def write_gif(vis: Visualization, path: Path, ms_per_frame: int = 600) -> Path:
    """One GIF frame per sampled frame: input | groups | saliency maps side by side."""
    from PIL import Image

    rows = _rows(vis)
    images = [Image.fromarray(strip([panels[f] for _, panels in rows]))
              for f in range(vis.frames.shape[0])]
    with atomic_output(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)
    return path


OUTPUTS_LIST = ".visualize_outputs.json"  # in out=: the files the last run wrote there (and only those)


def previous_outputs(out_dir: Path) -> list[str]:
    """Names of the files the previous run wrote into ``out_dir`` (plain names only: a list that
    names anything else is ignored, so nothing outside the folder can be touched)."""
    try:
        names = json.loads((out_dir / OUTPUTS_LIST).read_text())
    except (OSError, ValueError):
        return []
    return [n for n in names if isinstance(n, str) and n == Path(n).name and n not in ("", ".", "..")] \
        if isinstance(names, list) else []


def write_images(vis: Visualization, out_dir: str | Path, gif: bool = False, panel_px: int = 180
                 ) -> tuple[list[Path], list[Path]]:
    """(files written, files of an earlier run into the same folder that this run does not rewrite,
    now removed: e.g. the saliency maps of a vid-TLDR run when ToMe is drawn). Files this tool did
    not write are never touched."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier = previous_outputs(out_dir)
    frames = range(vis.frames.shape[0])
    written = [_save_png(strip([vis.frames[f] for f in frames]), out_dir / "frames.png", vis.title),
               _save_png(strip([draw_groups(vis, f) for f in frames]), out_dir / "groups.png", vis.title)]
    for layer, values in vis.saliency:
        written.append(_save_png(strip([draw_saliency(vis, values, f) for f in frames]),
                                 out_dir / f"saliency_layer{layer:02d}.png", f"{vis.title}; saliency, block {layer}"))
    written.append(write_overview(vis, out_dir / "overview.png", panel_px=panel_px))
    if gif:
        written.append(write_gif(vis, out_dir / "overview.gif"))
    stale = [out_dir / n for n in earlier if n not in {p.name for p in written} and (out_dir / n).is_file()]
    for path in stale:
        path.unlink()
    from vidtldr.run.cache import atomic_write_text

    atomic_write_text(out_dir / OUTPUTS_LIST, jsonio.dumps([p.name for p in written]))
    return written, stale


# ----------------------------------------------------------------------------- command line


def compose(overrides: Sequence[str]):
    """``configs/visualize.yaml`` (the evaluation's configuration plus this tool's keys) composed
    with ``overrides``; a bad override is a ConfigError naming it."""
    from vidtldr.config_utils import compose_config

    return compose_config(overrides, config_name="visualize")


def tiny_clip(folder: Path) -> Path:
    """A generated 224x224 clip (coloured block, moving bar, changing background)."""
    from fractions import Fraction

    from vidtldr.data.tiny import write_clip

    return write_clip(folder / "generated_tiny_clip.mp4", frames=24, fps=Fraction(8), width=224, height=224,
                      clip_index=2)


def describe_weights(spec) -> str:
    """How the images describe the weights the evaluation would use for this config (none for
    ``model.init=random``); a missing checkpoint is refused before anything is built."""
    from vidtldr.errors import MissingFilesError

    if spec.checkpoint is None:
        return f"seeded random weights (seed {spec.seed}), no checkpoint"
    if not Path(spec.checkpoint).is_file():
        raise MissingFilesError(f"checkpoint {spec.checkpoint} does not exist: set model.checkpoint=/path/to/file.pth, "
                                "or model.init=random for seeded random weights")
    return f"weights {Path(spec.checkpoint).name}"


def run(argv: Sequence[str]) -> dict:
    """Everything ``main`` does; returns the JSON summary."""
    from vidtldr.data.video import read_frames
    from vidtldr.run.assemble import build
    from vidtldr.run.runspec import resolve

    from vidtldr.config_values import integer

    cfg = compose(argv)
    # The evaluation's resolution and assembly (vidtldr/run/assemble.py), with the retrieval heads.
    spec = dataclasses.replace(resolve(cfg), heads="retrieval")
    panel = integer("panel", cfg.panel, low=MIN_PANEL)  # pixels per frame; checked before the model is built
    num_frames = spec.num_frames
    arch_cfg = spec.arch_config()
    device = spec.device
    weights = describe_weights(spec)
    model, reducer, _ = build(spec, arch_cfg)

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(cfg.video) if cfg.get("video") else tiny_clip(Path(tmp))
        shown_video = str(video) if cfg.get("video") else "generated tiny clip"
        frames = read_frames(video, num_frames)
    nonzero = [e for e in spec.schedule if e]
    title = (f"{spec.merge} r={nonzero if nonzero else 0} on {spec.model} ({spec.arch}), {weights}; "
             f"{Path(shown_video).name}, {num_frames} frames")
    vis = analyse(model, frames, reducer, device=device, title=title)
    vis.title += f"; tokens {vis.token_counts[0]} -> {vis.token_counts[-1]}"
    written, removed = write_images(vis, str(cfg.out), gif=bool(cfg.gif), panel_px=panel)
    return {"files": [str(p) for p in written], "removed": [str(p) for p in removed], "video": shown_video, "model": spec.model,
            "arch": spec.arch, "weights": weights, "merge": spec.merge, "schedule": list(spec.schedule),
            "token_counts": vis.token_counts, "groups": vis.num_groups,
            "saliency_layers": [layer for layer, _ in vis.saliency]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    with cli_guard("vidtldr.visualize"):
        try:
            summary = run(argv)
        except (ValueError, OSError) as exc:  # e.g. a frame-count mismatch, an unwritable folder
            raise VidtldrError(str(exc)) from None
        print(jsonio.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
