"""latentbridge's ComfyUI node pack: checks every latent/VAE hand-off inside the user's own graph.

Nodes (category "latentbridge"): Check Latent vs VAE, Identify Latent, Inspect Latent, Transfer Latent, Safe VAE
Decode, Save Latent and Load Latent (tagged .latent files that ComfyUI's own Load Latent reads), Latent Preview,
Resolve VAE. They use ComfyUI's V3 node schema (``comfy_api.latest``), registered through
:func:`comfy_entrypoint`, which ComfyUI calls when it loads ``custom_nodes/latentbridge`` (the repository root's
``__init__.py`` re-exports it).

The pack is a shell over latentbridge's public face: ComfyUI's LATENT dicts and VAE objects are translated to
:class:`latentbridge.Latent` values and :class:`latentbridge.VAE` views whose encode and decode go through the
ComfyUI object (its model management applies). Importing this package imports neither ComfyUI nor torch; the node
module needs a running ComfyUI and is imported by :func:`comfy_entrypoint` only.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NODE_IDS", "comfy_entrypoint"]

NODE_IDS: tuple[str, ...] = (
    "LatentBridgeCheck",
    "LatentBridgeIdentify",
    "LatentBridgeInspect",
    "LatentBridgeTransfer",
    "LatentBridgeSafeDecode",
    "LatentBridgeSaveLatent",
    "LatentBridgeLoadLatent",
    "LatentBridgePreview",
    "LatentBridgeResolveVAE",
)
"""The node ids the pack registers (``class_type`` in API-format prompts)."""


async def comfy_entrypoint() -> Any:
    """ComfyUI's V3 entry point: the pack's ``ComfyExtension`` (imports the nodes, which need ComfyUI)."""
    from latentbridge.comfy._nodes import LatentBridgeExtension

    return LatentBridgeExtension()
