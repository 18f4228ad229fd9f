"""Per-channel statistics of a latent: what `inspect` shows and what a human checks first."""

from __future__ import annotations

from typing import Any

import torch

from latentbridge.latent import Latent


def _summary(values: torch.Tensor) -> dict[str, Any]:
    """mean/std/min/max of the finite values of a 1-D float64 tensor, plus NaN and ±inf counts."""
    finite = values[torch.isfinite(values)]
    out: dict[str, Any] = {
        "count": int(values.numel()),
        "nan": int(torch.isnan(values).sum()),
        "inf": int(torch.isinf(values).sum()),
    }
    if finite.numel():
        out.update(
            mean=float(finite.mean()),
            std=float(finite.std(correction=0)),
            min=float(finite.min()),
            max=float(finite.max()),
        )
    else:
        out.update(mean=None, std=None, min=None, max=None)
    return out


def latent_stats(latent: Latent) -> dict[str, Any]:
    """Statistics of a latent, overall and per channel, in the space it is in (not converted).

    Args:
        latent: any layout with a C dimension, any float dtype (computed in float64 on the CPU).

    Returns:
        ``{"shape", "dtype", "layout", "space", "format", "overall": {...}, "channels": [{...}, ...]}`` where each
        summary holds ``count``, ``nan``, ``inf`` (counts of NaN and ±inf values) and the ``mean``, population
        ``std``, ``min`` and ``max`` of the finite values (None when none is finite). JSON-ready.
    """
    x = latent.tensor.detach().to("cpu", torch.float64)
    c = latent.layout.index("C")
    per_channel = x.movedim(c, 0).reshape(x.shape[c], -1)
    channels = [{"channel": i, **_summary(per_channel[i])} for i in range(per_channel.shape[0])]
    return {
        "shape": list(latent.shape),
        "dtype": str(latent.tensor.dtype).removeprefix("torch."),
        "layout": latent.layout,
        "space": latent.space,
        "format": latent.format_name or None,
        "overall": _summary(x.reshape(-1)),
        "channels": channels,
    }
