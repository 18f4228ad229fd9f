"""Check a device name against this torch build and this machine before anything is loaded onto it."""

from __future__ import annotations

import torch

from latentbridge.errors import DeviceError

_EXAMPLES = "cpu, cuda, cuda:1 or mps"


def check_device(device: str | torch.device) -> torch.device:
    """The ``torch.device`` that ``device`` names, once this torch and this machine are known to have it.

    Raises:
        DeviceError: not a device name; ``cuda`` on a torch built without CUDA or a machine without a visible GPU;
            an index past the GPUs there are; ``mps`` where Metal is unavailable; any other kind of device.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:  # torch's answers to a malformed device string
        raise DeviceError(f"device {str(device)!r} (--device) is not a device name: expected {_EXAMPLES}") from exc
    if dev.type == "cpu" or dev.type == "meta":
        return dev
    if dev.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise DeviceError(
                f"device {str(device)!r} (--device): this torch ({torch.__version__}) was built without CUDA; run on "
                "--device cpu, or install a CUDA build of torch"
            )
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {str(device)!r} (--device): torch has CUDA but sees no GPU here (no driver, or "
                "CUDA_VISIBLE_DEVICES hides them); run on --device cpu"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(
                f"device {str(device)!r} (--device): this machine has {count} CUDA device(s), cuda:0 to "
                f"cuda:{count - 1}; pick one of those"
            )
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"device {str(device)!r} (--device): Metal (mps) is not available here; use --device cpu")
        return dev
    raise DeviceError(f"device {str(device)!r} (--device): latentbridge runs on {_EXAMPLES}")
