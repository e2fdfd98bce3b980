"""Test-time views: the image and small diagonal shifts of it (optionally mirrored), as (mirror, dy, dx) triples.

One definition serves the heatmap, which averages its map over the views, and the headline, which is the mean of
the views' logits when the model card says ``tta_headline``: serving, calibration and evaluation all build the
views from the card's ``explain`` entry here.
"""

from __future__ import annotations

from typing import Any

import torch

# (mirror left-right, dy, dx): one view of the image
View = tuple[bool, int, int]

def cam_views(flip_average: bool = True, shift: int = 0) -> list[View]:
    """(mirror, dy, dx) of each view a map is averaged over: identity first; the set is closed under mirroring."""
    offsets = [(0, 0)] + ([(shift, shift), (shift, -shift), (-shift, shift), (-shift, -shift)] if shift else [])
    return [(flip, dy, dx) for flip in ((False, True) if flip_average else (False,)) for dy, dx in offsets]


# default diagonal shift of the views, as a share of the input size: within training's translate augmentation
DEFAULT_VIEW_SHIFT = 0.04


def configured_views(explain: dict[str, Any], size: int,
                     default_shift: float = DEFAULT_VIEW_SHIFT) -> list[View]:
    """The views a model card's ``explain`` entry names (``flip_average``, ``shift`` as a share of ``size``).

    One definition for the heatmap's views and the test-time augmentation's, in serving, calibration and
    evaluation alike.
    """
    return cam_views(bool(explain.get("flip_average", True)), round(float(explain.get("shift", default_shift)) * size))


def _shift(t: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """Move the last two axes' content by (dy, dx) pixels, filling the uncovered border with ``fill``."""
    if dy == 0 and dx == 0:
        return t
    h, w = t.shape[-2:]
    out = torch.full_like(t, fill)
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = \
        t[..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return out


def view_batch(x: torch.Tensor, views: list[View], fill: float) -> torch.Tensor:
    """(N, C, S, S) -> (V*N, C, S, S), view-major (all images' identity views first when views[0] is identity)."""
    return torch.cat([_shift(x.flip(-1) if flip else x, dy, dx, fill) for flip, dy, dx in views])


def merge_view_maps(maps: torch.Tensor, views: list[View], n: int) -> torch.Tensor:
    """(V*N, S, S) maps of :func:`view_batch`'s views -> (N, S, S): each moved back, averaged where it saw."""
    total = torch.zeros((n, *maps.shape[-2:]))
    cover = torch.zeros_like(total)
    for v, (flip, dy, dx) in enumerate(views):
        back = _shift(maps[v * n : (v + 1) * n], -dy, -dx, 0.0)
        seen = _shift(torch.ones_like(back), -dy, -dx, 0.0)
        total += back.flip(-1) if flip else back
        cover += seen.flip(-1) if flip else seen
    return total / cover.clamp(min=1.0)
