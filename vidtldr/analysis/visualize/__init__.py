"""Images of what a reducer did: :func:`analyse` runs a model with a reducer and keeps, per block,
which final token holds each patch; :func:`draw_groups` / :func:`write_images` draw them."""

from vidtldr.analysis.visualize.command import analyse, draw_groups, group_colours, main, run, write_images

__all__ = ["analyse", "draw_groups", "group_colours", "main", "run", "write_images"]
