"""The nodes, in ComfyUI's V3 schema (``comfy_api.latest.io``): each a thin shell over latentbridge's face.

Imported by :func:`latentbridge.comfy.comfy_entrypoint` only, inside a running ComfyUI (it needs ``comfy_api``
at import time for the node base class); every other ComfyUI module is imported inside the functions that use it.

Conventions shared by the nodes (see the package docstring for the user's view):

* A LATENT's family comes from a connected MODEL's ``latent_format``, else the pack's tag in the dict, else a
  format chosen on the node (``format``); its space is ComfyUI's for the family (:mod:`._convert`).
* A VAE is ComfyUI's own object, seen through :mod:`._vae`: decodes and encodes go through it; its family comes
  from the file the graph loaded it from (followed through the hidden PROMPT), its TAESD scalars, or its geometry.
* Long work reports to ``comfy.utils.ProgressBar`` from latentbridge's ``Run.progress`` callback, which also stops
  it when the user presses cancel (ComfyUI's interrupt).
* A node that refuses raises a :class:`~latentbridge.LatentBridgeError` whose message is the whole fix: ComfyUI shows
  ``str(exception)`` in its error dialog and stops the graph there.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from comfy_api.latest import ComfyExtension, io, ui

from latentbridge import (
    VAE,
    FileFormatError,
    IncompatibleError,
    LatentBridgeError,
    LatentBridgeWarning,
    LatentFormat,
    Progress,
    Refine,
    Run,
    Tiling,
    __version__,
    check,
    decode,
    describe_weights,
    get_format,
    identify,
    latent_stats,
    list_formats,
    load_bridge,
    open_latent,
    preview,
    transfer,
    write_latent,
)
from latentbridge.comfy._convert import (
    FromComfy,
    ModelFormat,
    from_comfy,
    images_to_comfy,
    model_format,
    retag,
    tag_of,
    to_comfy,
)
from latentbridge.comfy._graph import origin, same_source, trace_here
from latentbridge.comfy._render import identification_text, provenance_lines, report_text, stop_message
from latentbridge.comfy._vae import VaeSource, View, known_source, remember_source, view
from latentbridge.library import Library, resolve_vae
from latentbridge.provenance import from_metadata, from_provenance

log = logging.getLogger("latentbridge")

CATEGORY = "latentbridge"
HOME_FOLDER = "latentbridge"  # ComfyUI model folder name (models/latentbridge): library, bridges/, previews/
LATENT_SUFFIXES = (".latent", ".npz", ".npy", ".pt")  # what Load Latent (latentbridge) lists from input/
MODES = ["stop", "warn", "pass"]
MODE_TIP = (
    "stop: an 'error' verdict stops the graph here, with the fix as the error message; warn: never stop, log the "
    "findings to ComfyUI's console when the verdict is not ok; pass: never stop, only report."
)
MODEL_TIP = (
    "Optional: the MODEL this latent belongs to. Its latent format names the family (SD1 and SDXL latents have the "
    "same shape; only this, a tag or a fingerprint tells them apart)."
)
FORMAT_TIP = "The latent's family when nothing else says it (auto: from the MODEL, the latentbridge tag, else unknown)."
HIDDEN = [io.Hidden.prompt, io.Hidden.unique_id]


# --- shared plumbing -------------------------------------------------------------------------------------------


def _hidden(cls: Any, name: str) -> Any:
    """A V3 hidden input (``prompt``, ``unique_id``, ``extra_pnginfo``); None when the node is called directly."""
    holder = getattr(cls, "hidden", None)
    return getattr(holder, name, None) if holder is not None else None


def _format_options() -> list[str]:
    return ["auto", *sorted(list_formats())]


def _chosen_format(name: str | None) -> LatentFormat | None:
    return None if name in (None, "", "auto") else get_format(name)


def home() -> Path:
    """The pack's folder: ComfyUI's models/latentbridge (registered as the model folder ``latentbridge``)."""
    import folder_paths

    if HOME_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[HOME_FOLDER] = (
            [os.path.join(folder_paths.models_dir, HOME_FOLDER)],
            {".safetensors", ".json", ".sqlite"},
        )
    path = Path(folder_paths.get_folder_paths(HOME_FOLDER)[0])
    path.mkdir(parents=True, exist_ok=True)
    return path


def _bridge_files() -> list[str]:
    folder = home() / "bridges"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".safetensors" and p.is_file())


def _latent_in(samples: Any, model: Any = None, format_name: str | None = None, what: str = "samples") -> FromComfy:
    mf: ModelFormat | None = model_format(model) if model is not None else None
    return from_comfy(samples, mf, format=_chosen_format(format_name), what=what)


def _source_of(cls: Any, vae: Any, input_name: str) -> VaeSource | None:
    """Where the graph loaded the VAE on ``input_name`` from (its file identified), or None."""
    known = known_source(vae)
    if known is not None:
        return known
    o = origin(_hidden(cls, "prompt"), _hidden(cls, "unique_id"), input_name)
    if o is None or not o.name:
        return None
    if not o.folder:
        return VaeSource(o.name, o.label)
    import folder_paths

    path = folder_paths.get_full_path(o.folder, o.name)
    if path is None:
        return VaeSource(o.name, o.label)
    try:
        info = describe_weights(path, hash=True if o.folder == "vae" else None)
    except LatentBridgeError as exc:
        log.warning("latentbridge could not identify %s: %s", path, exc)
        return VaeSource(o.name, o.label, path)
    return VaeSource(o.name, o.label, path, info)


def _vae_in(cls: Any, vae: Any, input_name: str = "vae", model_input: str = "model", model: Any = None) -> View:
    """The view of a VAE input; a MODEL on ``model_input`` names its family only when both come from one checkpoint."""
    fmt = None
    if model is not None and same_source(_hidden(cls, "prompt"), _hidden(cls, "unique_id"), input_name, model_input):
        fmt = model_format(model).format
    return view(vae, source=_source_of(cls, vae, input_name), model_format=fmt)


def _run(v: View, *, tiling: Tiling | None = None, max_memory: int | None = None) -> Run:
    """The VAE's own device and dtype, progress into ComfyUI's progress bar, ComfyUI's cancel honoured."""
    import comfy.model_management
    import comfy.utils

    bar = comfy.utils.ProgressBar(1)

    def progress(p: Progress) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(p.done, max(p.total, 1))

    return v.vae.own_run().replace(progress=progress, tiling=tiling or Tiling(), max_memory=max_memory)


def _format_notes(found: FromComfy, v: View | None = None) -> list[str]:
    how = {"model": "the MODEL's latent format", "tag": "the latentbridge tag", "given": "the node's format"}
    out = list(found.notes)
    if found.latent.format is not None:
        out.append(f"latent format {found.latent.format.name} from {how.get(found.format_source, '?')}")
    if v is not None:
        out += list(v.notes)
        vhow = {
            "file": "the file it was loaded from",
            "taesd": "its TAESD scaling",
            "model": "the MODEL of the same checkpoint",
            "geometry": "its geometry (the only format that fits)",
        }
        if v.vae.format is not None:
            out.append(f"VAE format {v.vae.format.name} from {vhow.get(v.format_source, '?')}")
        elif v.candidates:
            out.append(
                f"VAE format unknown: {len(v.candidates)} formats fit its geometry ({', '.join(v.candidates)}); "
                "connect the MODEL of the same checkpoint or load the VAE with VAELoader from a file latentbridge knows"
            )
    return out


def _checked(report: Any, mode: str, notes: list[str], node: str) -> str:
    """The findings text; raises for mode 'stop' and an 'error' verdict, logs for mode 'warn'."""
    text = report_text(report, notes)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "stop" and report.verdict == "error":
        raise IncompatibleError(stop_message(report))
    if mode == "warn" and report.verdict != "ok":
        log.warning("%s: %s", node, text)
    return text


# --- nodes -----------------------------------------------------------------------------------------------------


class CheckLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LatentBridgeCheck",
            display_name="Check Latent vs VAE (latentbridge)",
            category=CATEGORY,
            description=(
                "Checks that a latent and a VAE belong together before anything decodes it: channels, packing, "
                "ratios, sizes, empty or noise-like latents, raw vs model space, the family from the values. "
                "Passes the latent on; stops the graph with the fix on an 'error' verdict (mode stop)."
            ),
            inputs=[
                io.Latent.Input("samples", tooltip="The LATENT to check."),
                io.Vae.Input("vae", tooltip="The VAE that will decode it (ComfyUI's own VAE object)."),
                io.Combo.Input("mode", options=MODES, default="stop", tooltip=MODE_TIP),
                io.Boolean.Input(
                    "preflight",
                    default=False,
                    tooltip="Also decode a small centre crop with the VAE (and a decode→encode cycle) and score "
                    "how natural it looks: slower, catches a wrong family of the same shape.",
                ),
                io.Model.Input("model", optional=True, tooltip=MODEL_TIP),
                io.Combo.Input("format", options=_format_options(), default="auto", optional=True, tooltip=FORMAT_TIP),
            ],
            outputs=[
                io.Latent.Output(display_name="samples", tooltip="The same LATENT, tagged with its family."),
                io.String.Output(display_name="verdict", tooltip="ok, warn or error."),
                io.String.Output(display_name="findings", tooltip="Every finding with its fix, as text."),
            ],
            hidden=HIDDEN,
        )

    @classmethod
    def execute(cls, samples, vae, mode, preflight, model=None, format="auto") -> io.NodeOutput:
        found = _latent_in(samples, model, format)
        v = _vae_in(cls, vae, model=model)
        report = check(found.latent, v.vae, preflight=preflight, run=_run(v) if preflight else None)
        text = _checked(report, mode, _format_notes(found, v), "Check Latent vs VAE")
        out = retag(samples, found, source="Check Latent vs VAE")
        return io.NodeOutput(out, report.verdict, text, ui=ui.PreviewText(text))


class IdentifyLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LatentBridgeIdentify",
            display_name="Identify Latent (latentbridge)",
            category=CATEGORY,
            description=(
                "Says which latent family and space a LATENT's values look like (a calibrated statistical "
                "fingerprint against reference profiles), with the probabilities."
            ),
            inputs=[
                io.Latent.Input("samples", tooltip="The LATENT to fingerprint (its values only are used)."),
                io.Boolean.Input(
                    "tag_latent",
                    default=False,
                    tooltip="Write the identified format into the LATENT's latentbridge tag when the fingerprint "
                    "is confident, so later latentbridge nodes use it.",
                ),
            ],
            outputs=[
                io.Latent.Output(display_name="samples", tooltip="The same LATENT (tagged when asked and confident)."),
                io.String.Output(display_name="format", tooltip="The most probable format ('' when not confident)."),
                io.String.Output(display_name="space", tooltip="raw or model ('' when not confident)."),
                io.String.Output(display_name="summary", tooltip="The candidates with their probabilities."),
            ],
        )

    @classmethod
    def execute(cls, samples, tag_latent) -> io.NodeOutput:
        found = _latent_in(samples)
        ident = identify(found.latent, layout_known=True)
        best = ident.best if ident.confident else None
        fmt = best.format if best is not None else ""
        space = best.space if best is not None else ""
        text = identification_text(ident.to_dict())
        out: Mapping[str, Any] = samples
        if tag_latent and best is not None:
            out = retag(samples, found, source="Identify Latent (fingerprint)", format=get_format(fmt))
        return io.NodeOutput(out, fmt, space, text, ui=ui.PreviewText(text))


class InspectLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LatentBridgeInspect",
            display_name="Inspect Latent (latentbridge)",
            category=CATEGORY,
            description=(
                "Facts about a LATENT as text: shape, dtype, family and space and where they come from, value "
                "statistics, the latentbridge tag and provenance, what the graph says made it; and about a VAE: "
                "its architecture, family, geometry and the file it was loaded from."
            ),
            inputs=[
                io.Latent.Input("samples", tooltip="The LATENT to describe."),
                io.Vae.Input("vae", optional=True, tooltip="Optional: a VAE to describe too."),
                io.Model.Input("model", optional=True, tooltip=MODEL_TIP),
            ],
            outputs=[
                io.Latent.Output(display_name="samples", tooltip="The same LATENT."),
                io.String.Output(display_name="text", tooltip="The facts, one per line."),
            ],
            hidden=HIDDEN,
        )

    @classmethod
    def execute(cls, samples, vae=None, model=None) -> io.NodeOutput:
        found = _latent_in(samples, model)
        lat = found.latent
        stats = latent_stats(lat)
        overall = stats["overall"]
        t = lat.tensor
        lines = [
            f"LATENT {list(t.shape)} {lat.layout} {str(t.dtype).removeprefix('torch.')} on {t.device}",
            f"format: {lat.format_name or 'unknown'}"
            + (f" (from {found.format_source})" if found.format_source else "")
            + f"; space: {lat.space} (ComfyUI's convention for the family)",
        ]
        if overall.get("mean") is not None:
            lines.append(
                f"values: mean {overall['mean']:.4g}, std {overall['std']:.4g}, min {overall['min']:.4g}, "
                f"max {overall['max']:.4g}; NaN {overall['nan']}, inf {overall['inf']}"
            )
        else:
            lines.append(f"values: none finite (NaN {overall['nan']}, inf {overall['inf']})")
        others = sorted(k for k in samples if k not in ("samples",))
        for key in others:
            value = samples[key]
            shown = f"tensor {list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
            if key == "batch_index" and isinstance(value, list):
                shown = f"{value[:8]}{' …' if len(value) > 8 else ''}"
            lines.append(f"{key}: {shown}")
        tag = tag_of(samples)
        if tag is not None:
            lines.append(f"latentbridge tag: {tag.source or '?'}; provenance {json.dumps(tag.provenance.to_dict())}")
            if tag.metadata:
                lines.append(f"  loaded from a file with metadata: {', '.join(sorted(tag.metadata))}")
        lines.append("what the graph says made it:")
        traced = trace_here(_hidden(cls, "prompt"), _hidden(cls, "unique_id"))
        lines += [f"  {line}" for line in provenance_lines(traced)]
        lines += [f"note: {n}" for n in found.notes]
        if vae is not None:
            v = _vae_in(cls, vae, model=model)
            lines.append(f"VAE: {v.vae.describe()}")
            lines.append(
                f"  architecture {v.vae.architecture} ({v.signature or 'no single latentbridge signature'}), "
                f"{v.vae.dims}-D, {v.vae.dtype} on {v.vae.device}"
            )
            if v.source is not None:
                lines.append(f"  loaded by {v.source.loader or '?'} from {v.source.path or v.source.name}")
            lines += [f"  note: {n}" for n in _format_notes(found, v)[len(found.notes) :]]
        text = "\n".join(lines)
        return io.NodeOutput(samples, text, ui=ui.PreviewText(text))


class TransferLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LatentBridgeTransfer",
            display_name="Transfer Latent (latentbridge)",
            category=CATEGORY,
            description=(
                "Moves a latent from one VAE's family to another's: decode with from_vae and encode with to_vae "
                "(reencode), then optionally refine it so its decode matches (refine), or map it directly with a "
                "bridge file fitted by `latentbridge fit-bridge` (models/latentbridge/bridges)."
            ),
            inputs=[
                io.Latent.Input("samples", tooltip="The LATENT made by from_vae's family."),
                io.Vae.Input("from_vae", tooltip="The VAE whose latent this is (decodes it)."),
                io.Vae.Input("to_vae", tooltip="The VAE whose family the result belongs to (encodes it)."),
                io.Combo.Input(
                    "method",
                    options=["reencode", "refine", "bridge"],
                    default="reencode",
                    tooltip="reencode: decode then encode (through ComfyUI's VAE objects); refine: reencode, then "
                    "refine_steps gradient steps through to_vae's decoder (a copy outside ComfyUI's model "
                    "management, with gradients); bridge: a fitted latent-to-latent converter.",
                ),
                io.Int.Input(
                    "refine_steps", default=20, min=1, max=500, tooltip="Refinement steps per latent (method refine)."
                ),
                io.Combo.Input(
                    "bridge",
                    options=["none", *_bridge_files()],
                    default="none",
                    tooltip="The bridge file (method bridge), from models/latentbridge/bridges.",
                ),
                io.Model.Input("from_model", optional=True, tooltip="Optional: the MODEL the latent belongs to."),
                io.Model.Input(
                    "to_model", optional=True, tooltip="Optional: the MODEL of the target family (names to_vae's)."
                ),
            ],
            outputs=[
                io.Latent.Output(display_name="samples", tooltip="The latent in to_vae's family (ComfyUI's space)."),
                io.String.Output(display_name="report", tooltip="What was done."),
            ],
            hidden=HIDDEN,
        )

    @classmethod
    def execute(
        cls, samples, from_vae, to_vae, method, refine_steps, bridge="none", from_model=None, to_model=None
    ) -> io.NodeOutput:
        found = _latent_in(samples, from_model, what="samples")
        src = _vae_in(cls, from_vae, "from_vae", "from_model", from_model)
        dst_fmt = model_format(to_model).format if to_model is not None else None
        dst = view(to_vae, source=_source_of(cls, to_vae, "to_vae"), model_format=dst_fmt)
        latent = found.latent
        if latent.format is None and src.vae.format is not None:
            latent = latent.replace(format=src.vae.format)
        run = _run(dst)
        lines = [f"{method}: {src.vae.describe()} -> {dst.vae.describe()}"]
        if method == "reencode":
            out = transfer(latent, src.vae, dst.vae, method="reencode", run=run)
        elif method == "refine":
            with torch.inference_mode(False):
                out = transfer(latent, src.vae, _refinable(dst, to_vae), method=Refine(refine_steps), run=run)
        elif method == "bridge":
            if bridge in (None, "", "none"):
                raise ValueError(
                    "method 'bridge' needs a bridge file: fit one with `latentbridge fit-bridge`, put it in "
                    f"{home() / 'bridges'} and pick it in the node's bridge list (or use method reencode)"
                )
            path = home() / "bridges" / bridge
            if not path.is_file():
                raise FileFormatError(f"no bridge file {path}: put it there or pick another one")
            out = transfer(latent, src.vae, dst.vae, method=load_bridge(path), run=run)
            lines.append(f"bridge {path}")
        else:
            raise ValueError(f"method must be reencode, refine or bridge, got {method!r}")
        result = to_comfy(out, samples, source=f"Transfer Latent ({method})")
        lines.append(f"out: {list(result['samples'].shape)} {out.format_name or 'format unknown'}")
        lines += [f"note: {n}" for n in _format_notes(found, dst)]
        text = "\n".join(lines)
        return io.NodeOutput(result, text, ui=ui.PreviewText(text))


def _refinable(v: View, comfy_vae: Any) -> VAE:
    """The target VAE for refinement: encodes through the ComfyUI object, decodes with a plain copy of its network
    (made outside inference mode, so gradients can flow to the latent), on the VAE's device."""
    import dataclasses

    with torch.inference_mode(False):
        net = copy.deepcopy(comfy_vae.first_stage_model).to(comfy_vae.device).eval()

    def bind(module: torch.nn.Module) -> tuple[Any, Any]:
        def decode_copy(latents: torch.Tensor) -> torch.Tensor:
            return module.decode(latents)  # type: ignore[operator]

        return v.vae.encode, decode_copy

    encode, decode_fn = bind(net)
    return dataclasses.replace(v.vae, encode=encode, decode=decode_fn, module=net, bind=bind)


class SafeVAEDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LatentBridgeSafeDecode",
            display_name="Safe VAE Decode (latentbridge)",
            category=CATEGORY,
            description=(
                "VAE Decode that checks first (stops on a latent the VAE cannot decode correctly, with the fix), "
                "decodes through ComfyUI's VAE object, redoes in fp32 any sample that overflows in bf16/fp16, and "
                "tiles to stay inside a memory budget."
            ),
            inputs=[
                io.Latent.Input("samples", tooltip="The LATENT to decode."),
                io.Vae.Input("vae", tooltip="The VAE to decode with."),
                io.Combo.Input("mode", options=MODES, default="stop", tooltip=MODE_TIP),
                io.Int.Input(
                    "max_memory_mb",
                    default=0,
                    min=0,
                    max=1 << 20,
                    tooltip="Peak-memory budget of the decode in MiB; when latentbridge's estimate passes it, the "
                    "decode runs in tiles that fit. 0: no budget (ComfyUI's own batching and out-of-memory fallback).",
                ),
                io.Int.Input(
                    "tile_size",
                    default=0,
                    min=0,
                    max=16384,
                    step=8,
                    tooltip="Tile side in pixels (a multiple of the VAE's ratio); 0: whole images unless the memory "
                    "budget calls for tiles.",
                ),
                io.Model.Input("model", optional=True, tooltip=MODEL_TIP),
            ],
            outputs=[
                io.Image.Output(display_name="IMAGE", tooltip="The decoded images (video frames in the batch)."),
                io.String.Output(display_name="findings", tooltip="The check's findings and what the decode did."),
            ],
            hidden=HIDDEN,
        )

    @classmethod
    def execute(cls, samples, vae, mode, max_memory_mb, tile_size, model=None) -> io.NodeOutput:
        found = _latent_in(samples, model)
        v = _vae_in(cls, vae, model=model)
        notes = _format_notes(found, v)
        report = check(found.latent, v.vae)
        text = _checked(report, mode, notes, "Safe VAE Decode")
        tiling = Tiling(tile=int(tile_size)) if tile_size else Tiling()
        run = _run(v, tiling=tiling, max_memory=int(max_memory_mb) * 2**20 if max_memory_mb else None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LatentBridgeWarning)
            images = decode(v.vae, found.latent, run=run)
        said = [str(w.message) for w in caught if issubclass(w.category, LatentBridgeWarning)]
        for line in said:
            log.warning("Safe VAE Decode: %s", line)
        text += "".join(f"\ndecode: {line}" for line in said)
        return io.NodeOutput(images_to_comfy(images), text)


class SaveLatentTagged(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LatentBridgeSaveLatent",
            display_name="Save Latent (latentbridge)",
            category=CATEGORY,
            description=(
                "Saves a LATENT as a .latent file that ComfyUI's own Load Latent reads (same tensor), plus "
                "latentbridge's record: family, space, layout and provenance, and the prompt/workflow like SaveLatent."
            ),
            inputs=[
                io.Latent.Input("samples", tooltip="The LATENT to save."),
                io.String.Input(
                    "filename_prefix",
                    default="latents/latentbridge",
                    tooltip="Where under ComfyUI's output folder, as for SaveLatent.",
                ),
                io.Model.Input("model", optional=True, tooltip=MODEL_TIP),
                io.Combo.Input("format", options=_format_options(), default="auto", optional=True, tooltip=FORMAT_TIP),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo, io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, samples, filename_prefix, model=None, format="auto") -> io.NodeOutput:
        import folder_paths
        from comfy.cli_args import args

        found = _latent_in(samples, model, format)
        full_folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory()
        )
        metadata: dict[str, str] = {}
        if not args.disable_metadata:
            prompt, extra = _hidden(cls, "prompt"), _hidden(cls, "extra_pnginfo")
            if prompt is not None:
                metadata["prompt"] = json.dumps(prompt)
            if isinstance(extra, Mapping):
                metadata.update({str(k): json.dumps(v) for k, v in extra.items()})
        prov = found.latent.provenance
        latent = found.latent.replace(
            provenance=prov.then(f"saved by ComfyUI Save Latent (latentbridge {__version__})")
        )
        file = f"{filename}_{counter:05}_.latent"
        write_latent(latent, Path(full_folder) / file, container="latent", metadata=metadata)
        return io.NodeOutput(ui={"latents": [{"filename": file, "subfolder": subfolder, "type": "output"}]})


def _input_latents() -> list[str]:
    import folder_paths

    folder = folder_paths.get_input_directory()
    return sorted(
        f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)) and f.lower().endswith(LATENT_SUFFIXES)
    )


class LoadLatentTagged(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LatentBridgeLoadLatent",
            display_name="Load Latent (latentbridge)",
            category=CATEGORY,
            description=(
                "Loads a latent file from ComfyUI's input folder (.latent from SaveLatent or latentbridge, .npz/.npy/"
                ".pt) with its recorded family, space and provenance, converted to ComfyUI's space for the family."
            ),
            inputs=[
                io.Combo.Input("latent", options=_input_latents(), tooltip="A file in ComfyUI's input folder."),
                io.Combo.Input(
                    "format",
                    options=_format_options(),
                    default="auto",
                    tooltip="The family when the file does not record it (auto: as recorded, else unknown).",
                ),
            ],
            outputs=[
                io.Latent.Output(display_name="LATENT", tooltip="The latent, tagged with what the file records."),
                io.String.Output(display_name="info", tooltip="What the file records and how it was read."),
            ],
        )

    @classmethod
    def _path(cls, latent: str) -> Path:
        import folder_paths

        return Path(folder_paths.get_annotated_filepath(latent))

    @classmethod
    def execute(cls, latent, format="auto") -> io.NodeOutput:
        path = cls._path(latent)
        lf = open_latent(path, format=_chosen_format(format))
        result = to_comfy(lf.latent, source=f"Load Latent (latentbridge) {path.name}", metadata=lf.metadata)
        tag = tag_of(result)
        lines = [
            f"{path.name}: {lf.container}, written by {lf.writer or 'unknown'}",
            f"{list(result['samples'].shape)} format {lf.latent.format_name or 'unknown'}, "
            f"space {tag.space if tag is not None else '?'} (ComfyUI's)",
            *(f"note: {n}" for n in lf.notes),
        ]
        if lf.latent.provenance.to_dict():
            lines.append(f"provenance: {json.dumps(lf.latent.provenance.to_dict())}")
        text = "\n".join(lines)
        return io.NodeOutput(result, text)

    @classmethod
    def fingerprint_inputs(cls, latent, format="auto") -> Any:
        digest = hashlib.sha256()
        with open(cls._path(latent), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return (digest.hexdigest(), format)

    @classmethod
    def validate_inputs(cls, latent, format="auto") -> bool | str:
        import folder_paths

        if not folder_paths.exists_annotated_filepath(latent):
            return f"no latent file {latent!r} in ComfyUI's input folder"
        return True


class LatentPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LatentBridgePreview",
            display_name="Latent Preview (latentbridge)",
            category=CATEGORY,
            description=(
                "A quick picture of a latent without the full VAE: the family's published latent->RGB factors, "
                "factors fitted with `latentbridge fit-preview` (models/latentbridge/previews), or a tiny decoder "
                "(a TAESD-style VAE from VAELoader)."
            ),
            inputs=[
                io.Latent.Input("samples", tooltip="The LATENT to preview (its family must be known)."),
                io.Combo.Input(
                    "method",
                    options=["auto", "rgb", "fitted", "tiny"],
                    default="auto",
                    tooltip="auto: the tiny decoder if given, else fitted factors if stored, else published factors.",
                ),
                io.Vae.Input("tiny_vae", optional=True, tooltip="Optional: a tiny decoder (TAESD via VAELoader)."),
                io.Model.Input("model", optional=True, tooltip=MODEL_TIP),
                io.Combo.Input("format", options=_format_options(), default="auto", optional=True, tooltip=FORMAT_TIP),
            ],
            outputs=[io.Image.Output(display_name="IMAGE", tooltip="The preview (latent resolution for factors).")],
            hidden=HIDDEN,
        )

    @classmethod
    def execute(cls, samples, method, tiny_vae=None, model=None, format="auto") -> io.NodeOutput:
        found = _latent_in(samples, model, format)
        decoder = _vae_in(cls, tiny_vae, "tiny_vae") if tiny_vae is not None else None
        run = _run(decoder) if decoder is not None else Run()
        images = preview(
            found.latent,
            method,
            vae=decoder.vae if decoder is not None else None,
            fits_dir=home() / "previews",
            run=run,
        )
        image = images_to_comfy(images)
        return io.NodeOutput(image, ui=ui.PreviewImage(image, cls=cls))


class ResolveVAE(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LatentBridgeResolveVAE",
            display_name="Resolve VAE (latentbridge)",
            category=CATEGORY,
            description=(
                "Finds and loads the VAE a latent belongs to: from what the latent records (a file's prompt/"
                "workflow, latentbridge's provenance) and what this graph did to it, matched by name and hash "
                "against ComfyUI's models/vae folder through latentbridge's model library."
            ),
            inputs=[
                io.Latent.Input("samples", tooltip="The LATENT whose VAE to find."),
                io.Boolean.Input(
                    "include_checkpoints",
                    default=False,
                    tooltip="Also index models/checkpoints (names only, not hashed) and use a checkpoint's "
                    "baked-in VAE when the provenance names the checkpoint.",
                ),
            ],
            outputs=[
                io.Vae.Output(display_name="VAE", tooltip="The VAE, loaded by ComfyUI."),
                io.String.Output(display_name="name", tooltip="The file it was loaded from."),
                io.String.Output(display_name="reasons", tooltip="Why this file."),
            ],
            hidden=HIDDEN,
        )

    @classmethod
    def execute(cls, samples, include_checkpoints) -> io.NodeOutput:
        import comfy.sd
        import comfy.utils
        import folder_paths

        library = Library(home())
        vae_dirs = [d for d in folder_paths.get_folder_paths("vae") if os.path.isdir(d)]
        if vae_dirs:
            library.scan(*vae_dirs, hash=True)
        if include_checkpoints:
            ckpt_dirs = [d for d in folder_paths.get_folder_paths("checkpoints") if os.path.isdir(d)]
            if ckpt_dirs:
                library.scan(*ckpt_dirs, hash=False)
        report = trace_here(_hidden(cls, "prompt"), _hidden(cls, "unique_id"))
        tag = tag_of(samples)
        if tag is not None:
            report = report.merge(from_provenance(tag.provenance))
            if tag.metadata:
                report = report.merge(from_metadata(tag.metadata, kind="latent"))
        resolved = resolve_vae(report, library)
        entry = resolved.entry
        if entry.root == "built-in zoo":
            raise IncompatibleError(
                f"the latent's provenance names latentbridge's built-in VAE {entry.name}, which ComfyUI cannot load "
                "(ComfyUI builds SD-class VAEs at SD's widths only); decode it with `latentbridge decode` instead"
            )
        sd, metadata = comfy.utils.load_torch_file(entry.path, return_metadata=True)
        info = describe_weights(entry.path, hash=bool(entry.sha256) or None)
        if info.prefix:
            sd = {k[len(info.prefix) :]: t for k, t in sd.items() if k.startswith(info.prefix)}
        vae = comfy.sd.VAE(sd=sd, metadata=metadata)
        vae.throw_exception_if_invalid()
        remember_source(vae, VaeSource(Path(entry.path).name, "Resolve VAE (latentbridge)", entry.path, info))
        text = "\n".join(resolved.reasons)
        return io.NodeOutput(vae, entry.path, text, ui=ui.PreviewText(text))


NODES: tuple[type[io.ComfyNode], ...] = (
    CheckLatent,
    IdentifyLatent,
    InspectLatent,
    TransferLatent,
    SafeVAEDecode,
    SaveLatentTagged,
    LoadLatentTagged,
    LatentPreview,
    ResolveVAE,
)


class LatentBridgeExtension(ComfyExtension):
    """The pack: registers the model folder models/latentbridge, lists the nodes."""

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        home()  # ComfyUI 0.8.0 calls no on_load for custom nodes: register the folder here
        return list(NODES)
