"""latentbridge's ComfyUI node pack: link or copy this folder to ComfyUI/custom_nodes/latentbridge.

The nodes live in the latentbridge package (``latentbridge.comfy``); this folder only hands ComfyUI their V3 entry
point. Install latentbridge into ComfyUI's own Python first (it does not pin torch, so ComfyUI's torch and CUDA
build stay as they are)::

    <ComfyUI's python> -m pip install /path/to/latentbridge

When the package is not installed but this folder is (a link to) the one inside a latentbridge checkout, the
checkout's src/ is used, and only latentbridge's dependencies must be installed.
"""

import logging
import os
import sys

try:
    from latentbridge.comfy import comfy_entrypoint
except ModuleNotFoundError as exc:
    if exc.name != "latentbridge":
        raise
    _src = os.path.join(os.path.dirname(os.path.realpath(__file__)), os.pardir, os.pardir, "src")
    if not os.path.isfile(os.path.join(_src, "latentbridge", "comfy", "__init__.py")):
        raise ModuleNotFoundError(
            "the latentbridge node pack needs the latentbridge package in ComfyUI's Python: run "
            f"`{sys.executable} -m pip install /path/to/latentbridge` (it leaves ComfyUI's torch as it is), "
            "or link this folder from a latentbridge checkout",
            name="latentbridge",
        ) from exc
    sys.path.insert(0, os.path.normpath(_src))
    logging.getLogger("latentbridge").info("latentbridge is not installed; using the checkout at %s", _src)
    from latentbridge.comfy import comfy_entrypoint

__all__ = ["comfy_entrypoint"]
