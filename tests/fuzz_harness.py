"""A deterministic mutation fuzzer over every latentbridge reader: targets, seeds, mutators, an isolated runner.

Used by ``tests/test_fuzz_readers.py`` (a bounded number of cases in CI) and ``benchmarks/fuzz_readers.py``
(≥ 10⁵ cases). Nothing here is random at run time: case ``i`` of a run with seed ``s`` always mutates the same
seed file the same way (``random.Random(f"{s}:{i}")``), so any case can be written back out and replayed
(:func:`write_case`).

* **Targets** (:data:`TARGETS`): a public reader called on a file, and the seed files it is fuzzed from. A
  reader answers a bad file with a :class:`~latentbridge.errors.LatentBridgeError` that names the file; any
  other exception, a hang or a memory blow-up is a finding. Register more with :func:`register` (a reader, a
  seed builder, a weight): the provenance readers of ComfyUI graphs and A1111 infotexts are registered so.
* **Seeds**: valid files built by latentbridge's own writers (and by torch/NumPy/Pillow where the file is
  someone else's: ComfyUI latents, kohya caches, state dicts), small enough that thousands of cases run in
  seconds.
* **Mutators** (:data:`MUTATORS`): bit flips, byte insertions and deletions, truncations, overwrites with
  boundary integers, splices; structure-aware ones that keep the container valid around the damage:
  safetensors header JSON (valid JSON with other types, values and nesting, the provenance record inside it
  too), .npy header dicts, zip members rewritten with valid CRCs (so the damage reaches the pickle or the
  array), zip header fields, PNG chunks with recomputed CRCs (huge sizes, damaged zlib, edited text records).
* **Runner** (:func:`run`): cases run in a worker process under an address-space limit
  (``resource.RLIMIT_AS``) with a per-case timeout; a worker that stalls is killed and the case counted as a
  hang, one that dies as a crash, a MemoryError (or an allocator failure) as a memory blow-up.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MEMORY_LIMIT = 4 * 2**30  # bytes of address space per worker (the 4 GB)
CASE_TIMEOUT = 10.0  # seconds before a case counts as a hang (a clean case takes milliseconds)

# --- outcomes --------------------------------------------------------------------------------------------

OK = "ok"  # the reader accepted the file (a mutation may leave a file valid)
REFUSED = "refused"  # a LatentBridgeError that names the file: the contract
BAD_OUTCOMES = ("unnamed", "unhandled", "memory", "hang", "crash")  # prefixes of findings


def is_finding(outcome: str) -> bool:
    """True for an outcome that breaks the contract (anything but ok / refused)."""
    return outcome.split(":", 1)[0] in BAD_OUTCOMES


# --- targets ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seed:
    """A valid input: its files (name -> bytes); ``main`` is the one the reader is called on."""

    name: str
    files: dict[str, bytes]
    main: str
    fuzz: tuple[str, ...] = ()  # the files mutations may touch (default: main only)


@dataclass(frozen=True, slots=True)
class Target:
    """A public reader and the seeds it is fuzzed from.

    Attributes:
        name: registry key.
        call: the reader, called with the path of the main file (a path inside a fresh folder).
        seeds: builds the seed inputs (called once per worker, in a scratch folder it may use).
        weight: relative share of the cases of a run.
    """

    name: str
    call: Callable[[Path], Any]
    seeds: Callable[[Path], list[Seed]]
    weight: float = 1.0


TARGETS: dict[str, Target] = {}


def register(target: Target) -> Target:
    """Add a target to :data:`TARGETS` (a duplicate name is an error)."""
    if target.name in TARGETS:
        raise ValueError(f"fuzz target {target.name!r} is registered twice")
    TARGETS[target.name] = target
    return target


# --- seeds -----------------------------------------------------------------------------------------------


def _latent_seeds(scratch: Path) -> list[Seed]:
    """Every latent container latentbridge reads, each a small valid file."""
    import numpy as np
    import safetensors.torch
    import torch

    from latentbridge.files import write_latent
    from latentbridge.formats import get_format
    from latentbridge.latent import Latent, Provenance

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    prov = Provenance(
        vae_name="zoo-a",
        vae_sha256="ab" * 32,
        source_image="astronaut",
        seed=7,
        prompt="a fox",
        tool="latentbridge test",
        history=("encode zoo-a", "transfer zoo-a->zoo-b"),
        extra=(("padding", "0,0,0,8"), ("note", "x")),
    )
    lat = Latent(x, get_format("zoo-a"), "raw", "NCHW", prov)
    seeds: list[Seed] = []
    for container, suffix in (("latent", ".latent"), ("safetensors", ".safetensors"), ("pt", ".pt"), ("npz", ".npz")):
        p = scratch / f"ours{suffix}"
        write_latent(lat if container != "npz" else lat.replace(tensor=x.bfloat16()), p, container=container)
        seeds.append(Seed(f"latentbridge-{container}", {p.name: p.read_bytes()}, p.name))
    p = scratch / "ours.npy"
    write_latent(lat, p, container="npy")
    side = p.name + ".latentbridge.json"
    files = {p.name: p.read_bytes(), side: (scratch / side).read_bytes()}
    seeds.append(Seed("latentbridge-npy+sidecar", files, p.name, (p.name, side)))

    def st(name: str, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> None:
        seeds.append(Seed(name, {f"{name}.safetensors": safetensors.torch.save(tensors, metadata=meta)}, ""))

    st("comfyui-latent", {"latent_tensor": x, "latent_format_version_0": torch.tensor([])}, {"prompt": '{"3": {}}'})
    st("comfyui-legacy", {"latent_tensor": x.half()})
    st(
        "musubi-cache",
        {"latents_1x8x8_float32": torch.randn(16, 1, 8, 8, generator=g)},
        {"architecture": "wan", "format_version": "1.0.1", "width": "64", "height": "64"},
    )
    buf = io.BytesIO()
    torch.save({"samples": x, "batch_index": [0]}, buf)
    seeds.append(Seed("comfyui-dict-pt", {"samples.pt": buf.getvalue()}, "samples.pt"))
    buf = io.BytesIO()
    torch.save(x, buf, _use_new_zipfile_serialization=False)  # a legacy (pre-1.6) torch pickle
    seeds.append(Seed("legacy-pt", {"legacy.pt": buf.getvalue()}, "legacy.pt"))
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        latents_64x64=x[0].numpy(),
        original_size=np.array([64, 64]),
        crop_ltrb=np.array([0, 0, 64, 64]),
        latents_flipped_64x64=x[0].flip(-1).numpy(),
    )
    seeds.append(Seed("kohya-npz", {"cache_sd.npz": buf.getvalue()}, "cache_sd.npz"))
    buf = io.BytesIO()
    np.save(buf, x.numpy())
    seeds.append(Seed("plain-npy", {"plain.npy": buf.getvalue()}, "plain.npy"))
    return [_main(s) for s in seeds]


def _main(seed: Seed) -> Seed:
    main = seed.main or next(iter(seed.files))
    return Seed(seed.name, seed.files, main, seed.fuzz or (main,))


def _weight_seeds(scratch: Path) -> list[Seed]:
    """Small weight files of an architecture signature detection knows (VAEApprox), in every container."""
    import safetensors.torch
    import torch

    from latentbridge.models.vaeapprox import VAEApprox

    torch.manual_seed(0)
    sd = {k: v.half() for k, v in VAEApprox(4).state_dict().items()}
    seeds = [Seed("vaeapprox-safetensors", {"vaeapprox.safetensors": safetensors.torch.save(sd)}, "")]
    buf = io.BytesIO()
    torch.save(sd, buf)
    seeds.append(Seed("vaeapprox-pt", {"vaeapprox.pt": buf.getvalue()}, ""))
    buf = io.BytesIO()
    torch.save(sd, buf, _use_new_zipfile_serialization=False)
    seeds.append(Seed("vaeapprox-legacy-pt", {"vaeapprox-legacy.pt": buf.getvalue()}, ""))
    buf = io.BytesIO()
    torch.save({"state_dict": sd, "global_step": 12, "epoch": 1}, buf)
    seeds.append(Seed("lightning-ckpt", {"model.ckpt": buf.getvalue()}, ""))
    return [_main(s) for s in seeds]


def _folder_seeds(scratch: Path) -> list[Seed]:
    """A diffusers model folder (config.json + weights), a sharded one (index + two shards), and an ONNX file."""
    import safetensors.torch
    import torch
    from onnx import TensorProto, helper

    from latentbridge.models.vaeapprox import VAEApprox

    torch.manual_seed(0)
    sd = {k: v.half() for k, v in VAEApprox(4).state_dict().items()}
    config = json.dumps({"_class_name": "AutoencoderKL", "latent_channels": 4, "scaling_factor": 0.18215}).encode()
    weights = safetensors.torch.save(sd)
    folder = {"config.json": config, "diffusion_pytorch_model.safetensors": weights}
    seeds = [Seed("diffusers-folder", folder, ".", tuple(folder))]
    keys = sorted(sd)
    halves = {
        "model-00001-of-00002.safetensors": keys[: len(keys) // 2],
        "model-00002-of-00002.safetensors": keys[len(keys) // 2 :],
    }
    index = {"metadata": {"total_size": 1}, "weight_map": {k: name for name, ks in halves.items() for k in ks}}
    sharded = {"config.json": config, "diffusion_pytorch_model.safetensors.index.json": json.dumps(index).encode()}
    sharded.update({name: safetensors.torch.save({k: sd[k] for k in ks}) for name, ks in halves.items()})
    seeds.append(Seed("diffusers-sharded", sharded, ".", tuple(sharded)))
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 4, 1, 1], [0.1] * 12)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "preview",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [weight],
    )
    model = helper.make_model(graph, producer_name="latentbridge-fuzz")
    seeds.append(_main(Seed("onnx", {"tiny.onnx": model.SerializeToString()}, "")))
    return seeds


def _zoo_seeds(scratch: Path) -> list[Seed]:
    """The zoo-a VAE file (3 MB, diffusers config in its metadata): mutations of its header reach load_vae."""
    from latentbridge.zoo import zoo_path

    return [_main(Seed("zoo-a", {"zoo-a.safetensors": zoo_path("zoo-a").read_bytes()}, ""))]


def _image_seeds(scratch: Path) -> list[Seed]:
    """PNG (RGB, 16-bit grey, palette with transparency, with a latentbridge provenance chunk), JPEG, WebP."""
    import numpy as np
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    seeds = []

    def save(name: str, image: Image.Image, **kw: Any) -> None:
        buf = io.BytesIO()
        image.save(buf, **kw)
        seeds.append(_main(Seed(name, {name: buf.getvalue()}, "")))

    info = PngInfo()
    meta = {"latent": "in.latent", "vae": "zoo-a", "provenance": {"seed": 3, "history": ["encode zoo-a"]}}
    info.add_text("latentbridge", json.dumps(meta))
    save("rgb.png", rgb, format="PNG", pnginfo=info)
    save("grey16.png", Image.fromarray(rng.integers(0, 65535, (16, 16), dtype=np.uint16)), format="PNG")
    save("palette.png", rgb.convert("P"), format="PNG", transparency=0)
    save("photo.jpg", rgb, format="JPEG", quality=80)
    save("photo.webp", rgb, format="WEBP", quality=80)
    return seeds


def _png_metadata_seeds(scratch: Path) -> list[Seed]:
    return [s for s in _image_seeds(scratch) if s.main == "rgb.png"]


def _fit_seeds(scratch: Path) -> list[Seed]:
    """A stored preview fit (what `fit-preview` writes), from the zoo's published factors."""
    from latentbridge.formats import get_format
    from latentbridge.previews import PreviewFit, save_fit

    fmt = get_format("zoo-a")
    fit = PreviewFit(
        vae_sha256="cd" * 32,
        vae_name="zoo-a",
        format="zoo-a",
        space="model",
        factors=tuple(tuple(float(v) for v in row) for row in fmt.rgb_factors),
        bias=tuple(float(v) for v in fmt.rgb_bias) if fmt.rgb_bias else (0.0, 0.0, 0.0),
        images=("astronaut", "chelsea"),
        cells=2048,
        fit_psnr=30.5,
        published_psnr=29.0,
        created="2025-01-01T00:00:00Z",
    )
    path = save_fit(fit, scratch)
    return [_main(Seed("preview-fit", {path.name: path.read_bytes()}, ""))]


def _bridge_seeds(scratch: Path) -> list[Seed]:
    """A bridge file laid out as `fit-bridge` writes it (both converters, the JSON record), untrained weights."""
    import safetensors.torch
    import torch

    from latentbridge.bridge import META_KEY, BridgeConfig, BridgeNet

    torch.manual_seed(0)
    configs = {
        k: BridgeConfig(4, 4, 8, 8, hidden=8, blocks=1 if k == "conv" else 0, kind=k) for k in ("linear", "conv")
    }
    tensors = {f"{k}.{n}": v.contiguous() for k, cfg in configs.items() for n, v in BridgeNet(cfg).state_dict().items()}
    end = {"vae_sha256": "", "format": "zoo-a", "space": "raw", "channels": 4, "spatial_ratio": 8}
    meta = {
        "version": 1,
        "src": {"vae_name": "zoo-a", **end},
        "dst": {"vae_name": "zoo-b", **end, "format": "zoo-b"},
        "configs": {k: c.to_dict() for k, c in configs.items()},
        "scores": {"nmse_linear": 0.1, "nmse_conv": 0.05},
    }
    data = safetensors.torch.save(tensors, metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    return [_main(Seed("bridge", {"bridge.safetensors": data}, ""))]


# ComfyUI's default text-to-image graph in API form (its script_examples/basic_api_example.py), with a VAELoader and
# a SaveLatent; the same graph in the frontend's UI form (schema 0.4 links [id, from, slot, to, slot, type]); an
# A1111 infotext. The provenance readers trace these; the mutators reach inside them (JSON inside a string).
COMFY_PROMPT = {
    "3": {
        "class_type": "KSampler",
        "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0],
                   "seed": 8566257, "steps": 20, "cfg": 8, "sampler_name": "euler", "scheduler": "normal",
                   "denoise": 1},
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl_base.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 1, "height": 1024, "width": 1024}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "a red fox"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "blurry"}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["10", 0]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    "10": {"class_type": "VAELoader", "inputs": {"vae_name": "SDXL/sdxl_vae.safetensors"}},
    "11": {"class_type": "SaveLatent", "inputs": {"filename_prefix": "latents/ComfyUI", "samples": ["3", 0]}},
}  # fmt: skip


def _ui_node(nid: int, cls: str, inputs: list, outputs: list, widgets: list | None = None, mode: int = 0) -> dict:
    node = {"id": nid, "type": cls, "pos": [0, nid * 50], "size": [300, 100], "flags": {}, "order": nid,
            "mode": mode, "inputs": inputs, "outputs": outputs, "properties": {"Node name for S&R": cls}}  # fmt: skip
    if widgets is not None:
        node["widgets_values"] = widgets
    return node


COMFY_WORKFLOW = {
    "last_node_id": 11,
    "last_link_id": 5,
    "nodes": [
        _ui_node(4, "CheckpointLoaderSimple", [], [{"name": "MODEL", "type": "MODEL", "links": [1], "slot_index": 0}],
                 ["sdxl_base.safetensors"]),
        _ui_node(3, "KSampler", [{"name": "model", "type": "MODEL", "link": 1}],
                 [{"name": "LATENT", "type": "LATENT", "links": [2, 3], "slot_index": 0}],
                 [156680208700286, "randomize", 20, 8, "euler", "normal", 1]),
        _ui_node(10, "VAELoader", [], [{"name": "VAE", "type": "VAE", "links": [4], "slot_index": 0}],
                 ["SDXL/sdxl_vae.safetensors"]),
        _ui_node(8, "VAEDecode", [{"name": "samples", "type": "LATENT", "link": 2},
                                  {"name": "vae", "type": "VAE", "link": 4}],
                 [{"name": "IMAGE", "type": "IMAGE", "links": [5], "slot_index": 0}]),
        _ui_node(9, "SaveImage", [{"name": "images", "type": "IMAGE", "link": 5}], [], ["ComfyUI"]),
        _ui_node(11, "SaveLatent", [{"name": "samples", "type": "LATENT", "link": 3}], [], ["latents/ComfyUI"]),
    ],
    "links": [[1, 4, 0, 3, 0, "MODEL"], [2, 3, 0, 8, 0, "LATENT"], [3, 3, 0, 11, 0, "LATENT"],
              [4, 10, 0, 8, 1, "VAE"], [5, 8, 0, 9, 0, "IMAGE"]],
    "groups": [],
    "config": {},
    "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}},
    "version": 0.4,
}  # fmt: skip
A1111_PARAMETERS = (
    "a red fox in the snow, (detailed fur:1.2), <lora:foxes:0.8>\nNegative prompt: lowres, watermark\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3735928559, Size: 832x1216, "
    "Model hash: 31e35c80fc, Model: sd_xl_base_1.0, VAE hash: 235745af8d, VAE: sdxl_vae.safetensors, "
    'Lora hashes: "foxes: 1a2b3c4d5e6f", Version: v1.10.1'
)


def _provenance_seeds(scratch: Path) -> list[Seed]:
    """What the provenance readers read: ComfyUI .latent and PNG files with prompt/workflow, A1111 PNG and JPEG."""
    import numpy as np
    import safetensors.torch
    import torch
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    prompt, workflow = json.dumps(COMFY_PROMPT), json.dumps(COMFY_WORKFLOW)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    latent = safetensors.torch.save(
        {"latent_tensor": x, "latent_format_version_0": torch.tensor([])},
        metadata={"prompt": prompt, "workflow": workflow},
    )
    seeds = [Seed("comfyui-latent-graph", {"ComfyUI_00001_.latent": latent}, "")]
    pixels = Image.fromarray(np.full((16, 16, 3), 128, np.uint8))
    for name, texts in (("comfyui.png", {"prompt": prompt, "workflow": workflow}),
                        ("00001-3735928559.png", {"parameters": A1111_PARAMETERS})):  # fmt: skip
        info = PngInfo()
        for k, v in texts.items():
            info.add_text(k, v)
        buf = io.BytesIO()
        pixels.save(buf, format="PNG", pnginfo=info, compress_level=4)
        seeds.append(Seed(name, {name: buf.getvalue()}, ""))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111_PARAMETERS.encode("utf-16-be")  # piexif's UserComment
    buf = io.BytesIO()
    pixels.save(buf, format="JPEG", exif=exif)
    seeds.append(Seed("a1111.jpg", {"00002.jpg": buf.getvalue()}, ""))
    return [_main(s) for s in seeds]


# --- the readers -----------------------------------------------------------------------------------------


def _read_latent(path: Path) -> Any:
    from latentbridge.files import latent_stats, open_latent

    info = open_latent(path)
    return latent_stats(info.latent)  # what `inspect` does next: per-channel statistics of the values


def _classify(path: Path) -> Any:
    from latentbridge.files import classify

    return classify(path)


def _describe(path: Path) -> Any:
    from latentbridge.weights import describe

    return describe(path, hash=False)


def _load_vae(path: Path) -> Any:
    from latentbridge.weights import load_vae

    return load_vae(path, hash=False)


def _load_image(path: Path) -> Any:
    from latentbridge.images import load_image

    return load_image(path)


def _png_metadata(path: Path) -> Any:
    from latentbridge.images import read_png_metadata

    return read_png_metadata(path)


def _load_fit(path: Path) -> Any:
    from latentbridge.previews import load_fit

    return load_fit(path)


def _load_bridge(path: Path) -> Any:
    from latentbridge.bridge import load_bridge

    return load_bridge(path, kind="conv")


def _read_provenance(path: Path) -> Any:
    from latentbridge.provenance import read_provenance

    return read_provenance(path).to_dict()


def _latent_provenance(path: Path) -> Any:
    from latentbridge.files import open_latent
    from latentbridge.provenance import from_latent_file

    return from_latent_file(open_latent(path)).to_dict()


register(Target("read_latent", _read_latent, _latent_seeds, 4.0))
register(Target("classify", _classify, lambda d: _latent_seeds(d) + _weight_seeds(d / "w"), 1.0))
register(Target("describe", _describe, lambda d: _weight_seeds(d) + _folder_seeds(d / "f"), 2.0))
register(Target("load_vae", _load_vae, _weight_seeds, 1.0))
register(Target("load_vae_zoo", _load_vae, _zoo_seeds, 0.25))
register(Target("load_image", _load_image, _image_seeds, 2.0))
register(Target("png_metadata", _png_metadata, _png_metadata_seeds, 1.0))
register(Target("preview_fit", _load_fit, _fit_seeds, 0.5))
register(Target("bridge", _load_bridge, _bridge_seeds, 0.5))
register(Target("read_provenance", _read_provenance, _provenance_seeds, 1.5))
register(
    Target(
        "latent_provenance", _latent_provenance, lambda d: _latent_seeds(d)[:7] + _provenance_seeds(d / "p")[:1], 0.5
    )
)


# Targets that misbehave on purpose, to test the runner itself; a name starting with "_" is never in a default run.
def _stall(path: Path) -> None:
    time.sleep(3600)


def _crash(path: Path) -> None:
    os._exit(3)


def _one_file(scratch: Path) -> list[Seed]:
    return [Seed("bytes", {"x.bin": b"\x00" * 16}, "x.bin", ("x.bin",))]


register(Target("_stall", _stall, _one_file))
register(Target("_crash", _crash, _one_file))


def default_targets() -> list[str]:
    """Every registered reader (the runner's own test targets left out)."""
    return [n for n in TARGETS if not n.startswith("_")]


# --- mutators --------------------------------------------------------------------------------------------

INTERESTING_INTS = (0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**32)
INTERESTING_INTS += (2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1)
Mutator = Callable[[random.Random, bytes], bytes | None]  # None: does not apply to these bytes


def _pos(rng: random.Random, n: int) -> int:
    """A position, biased to the first 1 KiB half of the time (headers live there)."""
    if n == 0:
        return 0
    return rng.randrange(min(n, 1024)) if rng.random() < 0.5 else rng.randrange(n)


def bit_flip(rng: random.Random, data: bytes) -> bytes | None:
    if not data:
        return None
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        i = _pos(rng, len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def insert_bytes(rng: random.Random, data: bytes) -> bytes | None:
    i = _pos(rng, len(data))
    blob = bytes(rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256))) for _ in range(rng.choice((1, 2, 4, 8, 64))))
    return data[:i] + blob + data[i:]


def delete_bytes(rng: random.Random, data: bytes) -> bytes | None:
    if len(data) < 2:
        return None
    i = _pos(rng, len(data) - 1)
    return data[:i] + data[i + rng.choice((1, 2, 4, 8, 64, 512)) :]


def truncate(rng: random.Random, data: bytes) -> bytes | None:
    if len(data) < 2:
        return None
    return data[: rng.randrange(len(data))]


def overwrite_int(rng: random.Random, data: bytes) -> bytes | None:
    """A boundary integer (2**31, 2**63, …) written over 1, 2, 4 or 8 bytes, little- or big-endian."""
    width = rng.choice((1, 2, 4, 8))
    if len(data) < width:
        return None
    value = rng.choice(INTERESTING_INTS) % (1 << (8 * width))
    i = _pos(rng, len(data) - width + 1)
    return data[:i] + value.to_bytes(width, rng.choice(("little", "big"))) + data[i + width :]


def splice(rng: random.Random, data: bytes) -> bytes | None:
    """A chunk of the file copied over another place (repeated headers, shifted structures)."""
    if len(data) < 4:
        return None
    a, n = _pos(rng, len(data)), rng.choice((4, 16, 64, 256))
    b = _pos(rng, len(data))
    return data[:b] + data[a : a + n] + data[b + n :]


BYTE_MUTATORS: dict[str, Mutator] = {
    "bit-flip": bit_flip,
    "insert": insert_bytes,
    "delete": delete_bytes,
    "truncate": truncate,
    "int": overwrite_int,
    "splice": splice,
}


def _deep(rng: random.Random) -> Any:
    depth = rng.choice((70, 200, 1100, 100_000))
    return json.loads("[" * depth + "]" * depth) if depth < 500 else _DeepText("[" * depth + "]" * depth)


class _DeepText(str):
    """JSON text too deep for json.dumps/loads to build as objects: spliced in verbatim by :func:`_dumps`."""


def _values(rng: random.Random) -> Any:
    return (
        rng.choice(
            (
                0,
                -1,
                1,
                2**31,
                2**63,
                2**64 + 1,
                10**30,
                -(10**20),
                0.5,
                -1e308,
                float("nan"),
                float("inf"),
                True,
                None,
                "",
                "x",
                "F32",
                "BF16",
                "I64",
                "U8",
                "F8_E4M3",
                "bogus",
                "raw",
                "model",
                "NCHW",
                "sd1",
                "zoo-a",
                "…\u0000\ud7ff",
                "x" * 70_000,
                [],
                {},
                [0],
                [-1, 2],
                [2**62, 2**62],
                [0, 0],
                [1, 4, 0, 8],
                [[1]],
                ["1", "2"],
                {"a": 1},
                {"dtype": "F32"},
            )
        )
        if rng.random() < 0.93
        else _deep(rng)
    )


_JSON_TEXT = re.compile(r"\s*[\[{]")


def _mutate_json(rng: random.Random, obj: Any, depth: int = 0) -> Any:
    """One change somewhere in a JSON value; strings that hold JSON (our records) are mutated inside, too."""
    if isinstance(obj, dict) and obj and rng.random() < 0.8:
        key = rng.choice(list(obj))
        roll = rng.random()
        out = dict(obj)
        if roll < 0.1:
            del out[key]
        elif roll < 0.2:
            out[rng.choice(("x", "__metadata__", "latent", "seed", key + "_"))] = _values(rng)
        else:
            out[key] = _mutate_json(rng, obj[key], depth + 1)
        return out
    if isinstance(obj, list) and obj and rng.random() < 0.8:
        i = rng.randrange(len(obj))
        out = list(obj)
        roll = rng.random()
        if roll < 0.1:
            del out[i]
        elif roll < 0.2:
            out.append(_values(rng))
        else:
            out[i] = _mutate_json(rng, obj[i], depth + 1)
        return out
    if isinstance(obj, str) and _JSON_TEXT.match(obj) and rng.random() < 0.7:
        try:
            inner = json.loads(obj)
        except ValueError:
            inner = None
        if inner is not None:
            return _dumps(_mutate_json(rng, inner, depth + 1))
    if isinstance(obj, int | float) and not isinstance(obj, bool) and rng.random() < 0.5:
        return rng.choice((obj + 1, obj - 1, -obj, obj * 2**20, str(obj), float(obj), obj * 1.5))
    return _values(rng)


def _dumps(obj: Any) -> str:
    """json.dumps that splices :class:`_DeepText` values in as raw JSON text."""
    deep: list[str] = []

    def default(o: Any) -> Any:
        raise TypeError(type(o).__name__)

    def walk(o: Any) -> Any:
        if isinstance(o, _DeepText):
            deep.append(str(o))
            return f"\x00deep{len(deep) - 1}\x00"
        if isinstance(o, dict):
            return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    text = json.dumps(walk(obj), default=default)
    for i, raw in enumerate(deep):
        text = text.replace(f'"\\u0000deep{i}\\u0000"', raw)
    return text


def safetensors_json(rng: random.Random, data: bytes) -> bytes | None:
    """Valid JSON in a safetensors header with a changed type, value, key or nesting; length prefix fixed up."""
    if len(data) < 9 or data[8:9] != b"{":
        return None
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError:
        return None
    head = _dumps(_mutate_json(rng, header)).encode("utf-8")
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + data[8 + n :]


def npy_header(rng: random.Random, data: bytes) -> bytes | None:
    """A changed .npy header dict literal (shape, descr, fortran_order, syntax), header length fixed up."""
    if not data.startswith(b"\x93NUMPY") or len(data) < 10:
        return None
    major = data[6]
    lw = 2 if major == 1 else 4
    (hlen,) = struct.unpack("<H" if lw == 2 else "<I", data[8 : 8 + lw])
    start = 8 + lw
    text = data[start : start + hlen].decode("latin1")
    body = data[start + hlen :]
    edits = (
        lambda t: re.sub(r"'shape': \([^)]*\)", "'shape': " + rng.choice(_SHAPES), t),
        lambda t: re.sub(r"'descr': '[^']*'", "'descr': " + rng.choice(_DESCRS), t),
        lambda t: t.replace("False", rng.choice(("True", "1", "'no'", "None", "Fals"))),
        lambda t: t[: rng.randrange(len(t))],
        lambda t: t.replace("}", rng.choice((", 'extra': 1}", "", "}}", ", 'shape': ()}"))),
        lambda t: "(" * 100_000 + t,
        lambda t: t.replace("{", "{" + "[" * rng.choice((50, 5000)), 1),
        lambda t: t.replace("'", '"'),
        lambda t: t.replace("(", rng.choice(("[", "((", "(1e999, ", "(-1, ", "(True, ")), 1),
    )
    text = rng.choice(edits)(text)
    raw = text.encode("latin1", "replace")
    if rng.random() < 0.8:
        raw = raw.rstrip(b"\n") + b"\n"
        length = len(raw)
    else:
        length = rng.choice((0, 1, len(raw) + 7, 65535))
    if lw == 2 and length >= 2**16:
        return data[:6] + bytes((2, 0)) + struct.pack("<I", length) + raw + body
    return data[:8] + struct.pack("<H" if lw == 2 else "<I", length) + raw + body


_SHAPES = (
    "()",
    "(0,)",
    "(1, 4, 0, 8)",
    "(-1, 4)",
    "(2**40,)",
    "(1099511627776, 1099511627776)",
    "(4294967296,)",
    "(1, 4, 8)",
    "(1, 4, 8, 8, 1, 1, 1)",
    "('a',)",
    "(1.5,)",
    "((1,),)",
    "[1, 4, 8, 8]",
    "None",
    "(True, 4)",
)
_DESCRS = (
    "'|O'",
    "'<U10'",
    "'V8'",
    "'<f16'",
    "'>f4'",
    "'<c8'",
    "'<i8'",
    "'|b1'",
    "[('a', '<f4')]",
    "'zz'",
    "1",
    "None",
)


def _rezip(members: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # "Duplicate name": a duplicated member is one of the mutations
        for info, data in members:
            zf.writestr(info, data)
    return buf.getvalue()


def _members(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return [(i, zf.read(i)) for i in zf.infolist()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, zlib.error):
        return None


def zip_member(rng: random.Random, data: bytes) -> bytes | None:
    """One member of a zip (.npz array, .pt data.pkl or storage) damaged, renamed, dropped or recompressed; the
    archive is rewritten with valid CRCs so the damage reaches NumPy's or torch's parser."""
    if not data.startswith(b"PK"):
        return None
    members = _members(data)
    if not members:
        return None
    i = rng.randrange(len(members))
    pkl = [j for j, (info, _) in enumerate(members) if info.filename.endswith(".pkl")]
    if pkl and rng.random() < 0.5:
        i = rng.choice(pkl)  # the pickle is where damage is most interesting
    info, content = members[i]
    roll = rng.random()
    if roll < 0.6:
        mutate = (
            rng.choice([npy_header] * 3 + list(BYTE_MUTATORS.values())) if content.startswith(b"\x93NUMPY") else None
        )
        mutate = mutate or rng.choice(list(BYTE_MUTATORS.values()))
        new = mutate(rng, content)
        members[i] = (info, content if new is None else new)
    elif roll < 0.7:
        info2 = zipfile.ZipInfo(rng.choice(("x.npy", "../evil.npy", info.filename + ".npy", "a/data.pkl", "")) or "z")
        members[i] = (info2, content)
    elif roll < 0.8:
        del members[i]
    elif roll < 0.9:
        members.append((info, content))  # a duplicate name
    else:
        info.compress_type = zipfile.ZIP_DEFLATED
        members[i] = (info, content)
    try:
        return _rezip(members)
    except (ValueError, OSError):
        return None


def zip_fields(rng: random.Random, data: bytes) -> bytes | None:
    """A field of a zip local header or central directory (sizes, method, name length, offsets) changed."""
    spots = [m.start() for m in re.finditer(rb"PK\x03\x04|PK\x01\x02|PK\x05\x06|PK\x06\x06", data)]
    if not spots:
        return None
    at = rng.choice(spots)
    sig = data[at : at + 4]
    # (offset in the record, width) of interesting fields: method, CRC, sizes, name/extra lengths, offsets
    fields = {
        b"PK\x03\x04": ((8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)),
        b"PK\x01\x02": ((10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (42, 4)),
        b"PK\x05\x06": ((8, 2), (10, 2), (12, 4), (16, 4), (20, 2)),
        b"PK\x06\x06": ((24, 8), (32, 8), (40, 8), (48, 8)),
    }[sig]
    off, width = rng.choice(fields)
    if at + off + width > len(data):
        return None
    value = rng.choice((*INTERESTING_INTS, 8, 12, 14, 93, 99)) % (1 << (8 * width))
    return data[: at + off] + value.to_bytes(width, "little") + data[at + off + width :]


def _chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    out, i = [], 8
    while i + 8 <= len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        out.append((kind, data[i + 8 : i + 8 + n]))
        i += 12 + n
    return out


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    parts = [b"\x89PNG\r\n\x1a\n"]
    for kind, body in chunks:
        parts.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
    return b"".join(parts)


def png_chunk(rng: random.Random, data: bytes) -> bytes | None:
    """A PNG chunk changed with its CRC recomputed: huge or zero sizes, bad depths, damaged zlib, edited text."""
    chunks = _chunks(data)
    if not chunks:
        return None
    roll = rng.random()
    kinds = [k for k, _ in chunks]
    if roll < 0.3 and b"IHDR" in kinds:
        i = kinds.index(b"IHDR")
        body = bytearray(chunks[i][1])
        which = rng.random()
        if which < 0.6:
            w, h = rng.choice(
                ((100_000, 100_000), (2**31 - 1, 1), (0, 16), (12_000, 12_000), (20_000, 20_000), (1, 2**24))
            )
            body[0:8] = struct.pack(">II", w, h)
        else:
            body[8 + rng.randrange(5)] = rng.choice((0, 1, 3, 5, 7, 16, 255))
        chunks[i] = (b"IHDR", bytes(body))
    elif roll < 0.5 and b"IDAT" in kinds:
        i = kinds.index(b"IDAT")
        new = rng.choice(list(BYTE_MUTATORS.values()))(rng, chunks[i][1])
        chunks[i] = (b"IDAT", new if new is not None else b"")
    elif roll < 0.75 and b"tEXt" in kinds:
        i = kinds.index(b"tEXt")
        key, _, text = chunks[i][1].partition(b"\x00")
        try:
            value = json.loads(text.decode("latin1"))
            text = _dumps(_mutate_json(rng, value)).encode("latin1", "replace")
        except ValueError:
            text = text[: len(text) // 2]
        chunks[i] = (b"tEXt", key + b"\x00" + text)
    elif roll < 0.85:
        i = rng.randrange(len(chunks))
        chunks.insert(i, chunks[i])  # a duplicated chunk (two IHDRs, two IDATs …)
    else:
        del chunks[rng.randrange(len(chunks))]
    return _png(chunks)


def json_text(rng: random.Random, data: bytes) -> bytes | None:
    """A JSON file (sidecar record) with a valid-JSON mutation."""
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return _dumps(_mutate_json(rng, value)).encode("utf-8")


STRUCTURE_MUTATORS: dict[str, Mutator] = {
    "safetensors-json": safetensors_json,
    "npy-header": npy_header,
    "zip-member": zip_member,
    "zip-fields": zip_fields,
    "png-chunk": png_chunk,
    "json": json_text,
}
MUTATORS: dict[str, Mutator] = {**BYTE_MUTATORS, **STRUCTURE_MUTATORS}


def mutate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """(mutator name, mutated bytes): structure-aware half the time when one applies, else byte-level."""
    if rng.random() < 0.5:
        names = list(STRUCTURE_MUTATORS)
        rng.shuffle(names)
        for name in names:
            try:
                out = STRUCTURE_MUTATORS[name](rng, data)
            except (ValueError, RecursionError, OverflowError):  # bytes the mutator's own parser cannot take
                out = None
            if out is not None:
                return name, out
    for _ in range(8):
        name = rng.choice(list(BYTE_MUTATORS))
        out = BYTE_MUTATORS[name](rng, data)
        if out is not None:
            return name, out
    return "insert", insert_bytes(rng, data) or b"\x00"


# --- cases -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """One fuzz case: which target, which seed, which file was mutated how, and the files to write."""

    index: int
    target: str
    seed: str
    file: str
    mutator: str
    files: dict[str, bytes] = field(repr=False)
    main: str = ""


def choose_target(rng: random.Random, names: list[str]) -> str:
    weights = [TARGETS[n].weight for n in names]
    return rng.choices(names, weights)[0]


def make_case(index: int, run_seed: int, names: list[str], seeds: dict[str, list[Seed]]) -> Case:
    """Case ``index`` of a run: deterministic in (run_seed, index, the seeds)."""
    rng = random.Random(f"{run_seed}:{index}")
    target = choose_target(rng, names)
    seed = rng.choice(seeds[target])
    file = rng.choice(seed.fuzz)
    files = dict(seed.files)
    mutator, files[file] = mutate(rng, files[file])
    if rng.random() < 0.1:  # now and then a second mutation on top
        name2, files[file] = mutate(rng, files[file])
        mutator += "+" + name2
    return Case(index, target, seed.name, file, mutator, files, seed.main)


def write_case(case: Case, folder: Path) -> Path:
    """Write the case's files into ``folder`` (emptied first); returns the main file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_file() or old.is_symlink():
            old.unlink()
    for name, data in case.files.items():
        (folder / name).write_bytes(data)
    return folder if case.main == "." else folder / case.main


_ALLOC = re.compile(r"can't allocate memory|not enough memory|out of memory|std::bad_alloc|Cannot allocate", re.I)


def classify_exception(exc: BaseException, folder: Path) -> str:
    """The outcome of a reader that raised ``exc`` on the files in ``folder`` (see :data:`BAD_OUTCOMES`)."""
    from latentbridge.errors import LatentBridgeError

    if isinstance(exc, LatentBridgeError):
        return REFUSED if str(folder) in str(exc) else f"unnamed:{type(exc).__name__}"
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and _ALLOC.search(str(exc))):
        return f"memory:{type(exc).__name__}"
    return f"unhandled:{type(exc).__name__}"


def run_case(case: Case, folder: Path) -> tuple[str, str]:
    """(outcome, detail) of calling the case's reader on its files."""
    path = write_case(case, folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings are not outcomes here (the CLI prints them)
        try:
            TARGETS[case.target].call(path)
        except Exception as exc:
            outcome = classify_exception(exc, folder)
            return outcome, f"{type(exc).__name__}: {exc}"[:300]
    return OK, ""


def build_seeds(names: list[str], scratch: Path) -> dict[str, list[Seed]]:
    """Every target's seeds, each built in its own empty folder under ``scratch``."""
    out = {}
    for n in names:
        folder = scratch / n
        folder.mkdir(parents=True)
        out[n] = TARGETS[n].seeds(folder)
    return out


# --- the isolated runner ---------------------------------------------------------------------------------


def worker_main() -> None:
    """Worker process: read a job (JSON on stdin), run its cases, print one JSON line per case."""
    import resource

    job = json.loads(sys.stdin.readline())
    limit = int(job["memory_limit"])
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.setrecursionlimit(int(job.get("recursion_limit", 1000)))
    import torch

    torch.set_num_threads(1)
    names = job["targets"]
    with tempfile.TemporaryDirectory(prefix="lbfuzz-") as tmp:
        scratch, folder = Path(tmp) / "seeds", Path(tmp) / "case"
        scratch.mkdir()
        seeds = build_seeds(names, scratch)
        print(json.dumps({"ready": True}), flush=True)
        for i in range(job["start"], job["stop"]):
            case = make_case(i, job["seed"], names, seeds)
            print(
                json.dumps({"start": i, "target": case.target, "seed": case.seed, "mutator": case.mutator}), flush=True
            )
            t0 = time.perf_counter()
            outcome, detail = run_case(case, folder)
            line = {
                "i": i,
                "target": case.target,
                "seed": case.seed,
                "mutator": case.mutator,
                "outcome": outcome,
                "detail": detail,
                "s": round(time.perf_counter() - t0, 4),
            }
            print(json.dumps(line), flush=True)


@dataclass
class Report:
    """Outcome counts of a run, with one example per finding kind."""

    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)
    by_target: dict[str, Counter] = field(default_factory=dict)
    examples: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0
    slowest: float = 0.0

    def add(self, line: dict) -> None:
        self.cases += 1
        outcome = line["outcome"]
        self.outcomes[outcome] += 1
        self.by_target.setdefault(line["target"], Counter())[outcome] += 1
        self.slowest = max(self.slowest, float(line.get("s", 0.0)))
        key = f"{outcome} {line.get('detail', '')[:60]}" if is_finding(outcome) else outcome
        self.examples.setdefault(key, line)

    @property
    def findings(self) -> Counter:
        return Counter({k: v for k, v in self.outcomes.items() if is_finding(k)})

    def kinds(self) -> Counter:
        """Counts by outcome kind: ok, refused, unnamed, unhandled, memory, hang, crash."""
        out: Counter = Counter()
        for k, v in self.outcomes.items():
            out[k.split(":", 1)[0]] += v
        return out


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO / "src"), str(HERE)]
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MALLOC_ARENA_MAX="2", PYTHONHASHSEED="0")
    return env


def _start(job: dict, nice: int) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "import fuzz_harness as h; h.worker_main()"]
    pre = (lambda: os.nice(nice)) if nice else None
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_worker_env(),
        preexec_fn=pre,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(job).encode() + b"\n")
    proc.stdin.flush()
    return proc


def _finish(proc: subprocess.Popen) -> None:
    """Stop a worker (if it still runs) and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def _lines(proc: subprocess.Popen, timeout: float, first_timeout: float) -> Iterator[dict | None]:
    """Lines from a worker; None when it stalls for longer than the timeout (then it is killed).

    The pipe is read with ``os.read`` on its file descriptor: a buffered ``readline`` would pull several lines
    into Python's buffer, where ``select`` cannot see them.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    wait, buf = first_timeout, b""
    while True:
        while b"\n" not in buf:
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                proc.kill()
                proc.wait()
                yield None
                return
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        wait = timeout
        yield json.loads(line)


def run(
    n: int,
    *,
    seed: int = 0,
    targets: list[str] | None = None,
    start: int = 0,
    memory_limit: int = MEMORY_LIMIT,
    timeout: float = CASE_TIMEOUT,
    nice: int = 0,
    on_line: Callable[[dict], None] | None = None,
) -> Report:
    """Run cases ``start`` … ``start + n - 1`` in isolated workers and count their outcomes.

    A worker that stops answering for ``timeout`` seconds is killed: its current case is a hang (it is retried
    once in a fresh worker with 3× the time, so a loaded machine does not fake one). A worker that dies is a
    crash (a memory blow-up when the address-space limit killed it).
    """
    names = targets or default_targets()
    report = Report()
    t0 = time.perf_counter()
    i, stop = start, start + n
    retried: set[int] = set()
    while i < stop:
        job = {"targets": names, "seed": seed, "start": i, "stop": stop, "memory_limit": memory_limit}
        proc = _start(job, nice)
        case_timeout = timeout * (3 if i in retried else 1)
        got_ready = False
        current: dict = {}
        for line in _lines(proc, case_timeout, first_timeout=max(120.0, case_timeout)):
            if line is None:
                if not got_ready:
                    raise RuntimeError("a fuzz worker did not start within 120 s")
                if i not in retried:
                    retried.add(i)
                    break  # retry case i once, with more time
                line = {**current, "i": i, "outcome": "hang", "detail": f"no answer in {case_timeout:g} s"}
            elif "ready" in line:
                got_ready = True
                continue
            elif "start" in line:
                current = {k: v for k, v in line.items() if k != "start"}
                continue
            report.add(line)
            if on_line is not None:
                on_line(line)
            i = line["i"] + 1
            if line["outcome"] == "hang":
                break
        else:
            rc = proc.wait()
            if i < stop:  # died before finishing: the case it was on is a crash
                if not got_ready:
                    raise RuntimeError(f"a fuzz worker failed to start (exit code {rc})")
                kind = "memory:killed" if rc in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT) else "crash"
                line = {**current, "i": i, "outcome": f"{kind}:{rc}", "detail": f"the worker died (exit code {rc})"}
                report.add(line)
                if on_line is not None:
                    on_line(line)
                i += 1
        _finish(proc)
    report.seconds = time.perf_counter() - t0
    return report


def replay(index: int, seed: int = 0, targets: list[str] | None = None, folder: Path | None = None) -> tuple[str, str]:
    """Rebuild case ``index`` in-process and run it (for debugging a finding)."""
    names = targets or default_targets()
    with tempfile.TemporaryDirectory() as tmp:
        seeds = build_seeds(names, Path(tmp))
        case = make_case(index, seed, names, seeds)
        return run_case(case, folder or Path(tmp) / "case")
