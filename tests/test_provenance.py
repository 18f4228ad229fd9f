"""latentbridge.provenance: real ComfyUI graphs (API and UI format, as SaveLatent and SaveImage store them), A1111
infotexts in their real format, trainer caches and latentbridge's own records, and bad metadata that must give a
"cannot trace" answer, never a raw exception.

Every ComfyUI node class and input name used below exists in ComfyUI 0.8.0 (the file is named where a graph uses
it); ``test_node_table_matches_comfyui_source`` checks latentbridge's whole node table against that source tree.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

from latentbridge.cli import app
from latentbridge.errors import FileFormatError
from latentbridge.files import write_latent
from latentbridge.latent import Latent, Provenance
from latentbridge.provenance import (
    NODE_KINDS,
    Evidence,
    ProvenanceReport,
    _comfy,
    from_metadata,
    kohya_name,
    parse_parameters,
    read_parameters,
    read_prompt,
    read_provenance,
    read_workflow,
)

REPO = Path(__file__).resolve().parents[1]
COMFYUI = Path(os.environ.get("LATENTBRIDGE_SHARED", REPO.parent / "shared")) / "comfyui"
runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def _vae(report: ProvenanceReport) -> list[tuple[str, str, str]]:
    return [(e.role, e.relation, e.name) for e in report.by_role("vae", "checkpoint", "model")]


# --- graphs ------------------------------------------------------------------------------------------------------


def default_prompt() -> dict:
    """ComfyUI's default text-to-image graph in API format (script_examples/basic_api_example.py), plus a VAELoader
    (nodes.py VAELoader.vae_name) whose VAE decodes, and a SaveLatent (nodes.py SaveLatent.samples) of the sampled
    latent."""
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "cfg": 8,
                "denoise": 1,
                "latent_image": ["5", 0],
                "model": ["4", 0],
                "negative": ["7", 0],
                "positive": ["6", 0],
                "sampler_name": "euler",
                "scheduler": "normal",
                "seed": 8566257,
                "steps": 20,
            },
            "_meta": {"title": "KSampler"},
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl_base.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 1, "height": 1024, "width": 1024}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "a red fox"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "blurry"}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["10", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
        "10": {"class_type": "VAELoader", "inputs": {"vae_name": "SDXL/sdxl_vae.safetensors"}},
        "11": {"class_type": "SaveLatent", "inputs": {"filename_prefix": "latents/ComfyUI", "samples": ["3", 0]}},
    }


def img2img_prompt(vae_from_checkpoint: bool = False) -> dict:
    """LoadImage -> VAEEncode -> KSampler (denoise 0.6) -> SaveLatent (all nodes.py), the VAE from a VAELoader or
    from the checkpoint's third output (CheckpointLoaderSimple RETURN_TYPES = MODEL, CLIP, VAE)."""
    vae = ["4", 2] if vae_from_checkpoint else ["10", 0]
    return {
        "2": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
        "3": {
            "class_type": "KSampler",
            "inputs": {"model": ["4", 0], "latent_image": ["12", 0], "seed": 1, "steps": 10, "denoise": 0.6},
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "dreamshaper_8.safetensors"}},
        "10": {"class_type": "VAELoader", "inputs": {"vae_name": "vae-ft-mse-840000-ema-pruned.safetensors"}},
        "12": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": vae}},
        "13": {
            "class_type": "LatentUpscaleBy",
            "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact", "scale_by": 1.5},
        },
        "11": {"class_type": "SaveLatent", "inputs": {"filename_prefix": "latents/ComfyUI", "samples": ["13", 0]}},
    }


def default_workflow() -> dict:
    """The same default graph in the frontend's UI format (schema 0.4: links as [id, origin, origin_slot, target,
    target_slot, type]), with what real saved workflows carry: a group, a legacy Reroute between the VAELoader and the
    VAEDecode, the VAE name coming from a PrimitiveNode through a converted widget, a bypassed (mode 4)
    LatentUpscale before the SaveLatent, a muted (mode 2) second SaveLatent and the KSampler's control_after_generate
    widget value."""

    def node(nid, cls, inputs=(), outputs=(), widgets=None, mode=0, **extra):
        out = {
            "id": nid,
            "type": cls,
            "pos": [0, nid * 50],
            "size": [300, 100],
            "flags": {},
            "order": nid,
            "mode": mode,
            "inputs": [dict(i) for i in inputs],
            "outputs": [dict(o) for o in outputs],
            "properties": {"Node name for S&R": cls},
        }
        if widgets is not None:
            out["widgets_values"] = widgets
        out.update(extra)
        return out

    def inp(name, typ, link, **extra):
        return {"name": name, "type": typ, "link": link, **extra}

    def out(name, typ, links):
        return {"name": name, "type": typ, "links": links, "slot_index": 0}

    nodes = [
        node(
            4,
            "CheckpointLoaderSimple",
            (),
            (out("MODEL", "MODEL", [1]), out("CLIP", "CLIP", [3, 5]), out("VAE", "VAE", [])),
            ["sdxl_base.safetensors"],
        ),
        node(5, "EmptyLatentImage", (), (out("LATENT", "LATENT", [2]),), [1024, 1024, 1]),
        node(
            6, "CLIPTextEncode", (inp("clip", "CLIP", 3),), (out("CONDITIONING", "CONDITIONING", [4]),), ["a red fox"]
        ),
        node(7, "CLIPTextEncode", (inp("clip", "CLIP", 5),), (out("CONDITIONING", "CONDITIONING", [6]),), ["blurry"]),
        node(
            3,
            "KSampler",
            (
                inp("model", "MODEL", 1),
                inp("positive", "CONDITIONING", 4),
                inp("negative", "CONDITIONING", 6),
                inp("latent_image", "LATENT", 2),
            ),
            (out("LATENT", "LATENT", [7, 12]),),
            [156680208700286, "randomize", 20, 8, "euler", "normal", 1],
        ),
        node(
            10,
            "VAELoader",
            (inp("vae_name", "COMBO", 14, widget={"name": "vae_name"}),),
            (out("VAE", "VAE", [8]),),
            ["SDXL/sdxl_vae.safetensors"],
        ),
        node(
            20,
            "PrimitiveNode",
            (),
            ({"name": "COMBO", "type": "COMBO", "links": [14], "widget": {"name": "vae_name"}},),
            ["SDXL/sdxl_vae.safetensors", "fixed", ""],
            title="VAE file",
        ),
        node(15, "Reroute", (inp("", "*", 8),), (out("VAE", "VAE", [9]),)),
        node(8, "VAEDecode", (inp("samples", "LATENT", 7), inp("vae", "VAE", 9)), (out("IMAGE", "IMAGE", [10]),)),
        node(9, "SaveImage", (inp("images", "IMAGE", 10),), (), ["ComfyUI"]),
        node(
            13,
            "LatentUpscale",
            (inp("samples", "LATENT", 12),),
            (out("LATENT", "LATENT", [13]),),
            ["nearest-exact", 2048, 2048, "disabled"],
            mode=4,
        ),
        node(11, "SaveLatent", (inp("samples", "LATENT", 13),), (), ["latents/ComfyUI"]),
        node(16, "SaveLatent", (inp("samples", "LATENT", None),), (), ["latents/unused"], mode=2),
    ]
    links = [
        [1, 4, 0, 3, 0, "MODEL"],
        [2, 5, 0, 3, 3, "LATENT"],
        [3, 4, 1, 6, 0, "CLIP"],
        [4, 6, 0, 3, 1, "CONDITIONING"],
        [5, 4, 1, 7, 0, "CLIP"],
        [6, 7, 0, 3, 2, "CONDITIONING"],
        [7, 3, 0, 8, 0, "LATENT"],
        [8, 10, 0, 15, 0, "VAE"],
        [9, 15, 0, 8, 1, "VAE"],
        [10, 8, 0, 9, 0, "IMAGE"],
        [12, 3, 0, 13, 0, "LATENT"],
        [13, 13, 0, 11, 0, "LATENT"],
        [14, 20, 0, 10, 0, "COMBO"],
    ]
    return {
        "last_node_id": 20,
        "last_link_id": 14,
        "nodes": nodes,
        "links": links,
        "groups": [{"id": 1, "title": "Load models", "bounding": [0, 0, 400, 600], "color": "#3f789e", "flags": {}}],
        "config": {},
        "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}, "frontendVersion": "1.28.8"},
        "version": 0.4,
    }


def save_latent_file(path: Path, tensor: torch.Tensor, prompt: dict | None, workflow: dict | None) -> Path:
    """A .latent as ComfyUI's SaveLatent writes it (nodes.py: metadata {"prompt": json.dumps(prompt)} plus each
    extra_pnginfo entry as JSON, tensors latent_tensor + latent_format_version_0, via comfy.utils.save_torch_file =
    safetensors.torch.save_file)."""
    metadata = {"prompt": json.dumps(prompt) if prompt is not None else ""}
    if workflow is not None:
        metadata["workflow"] = json.dumps(workflow)
    safetensors.torch.save_file(
        {"latent_tensor": tensor.contiguous(), "latent_format_version_0": torch.tensor([])},
        str(path),
        metadata=metadata,
    )
    return path


def save_image_file(path: Path, prompt: dict | None, workflow: dict | None, **texts: str) -> Path:
    """A PNG as ComfyUI's SaveImage writes it (nodes.py: PngInfo.add_text("prompt", json.dumps(prompt)), then each
    extra_pnginfo entry; compress_level 4), or with other text chunks (A1111's "parameters")."""
    info = PngInfo()
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt))
    if workflow is not None:
        info.add_text("workflow", json.dumps(workflow))
    for k, v in texts.items():
        info.add_text(k, v)
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(path, pnginfo=info, compress_level=4)
    return path


# --- the node table against ComfyUI's source ---------------------------------------------------------------------


def _class_block(source: str, cls: str) -> str:
    """The source of one node class: a V1 ``class X`` body or a V3 schema with ``node_id="X"``."""
    for pattern in (rf"^class {re.escape(cls)}\b.*?(?=^class |\Z)", rf'node_id="{re.escape(cls)}".*?(?=node_id=|\Z)'):
        m = re.search(pattern, source, re.S | re.M)
        if m:
            return m.group(0)
    return ""


def test_node_table_matches_comfyui_source():
    if not COMFYUI.is_dir():
        pytest.skip(f"ComfyUI source not found at {COMFYUI} (set LATENTBRIDGE_SHARED to the shared folder)")
    checked = 0
    for kind in NODE_KINDS:
        if kind.file.startswith("city96/"):
            continue  # ComfyUI-GGUF is not in the shared tree; read from its public nodes.py
        where = REPO if kind.file.startswith("src/latentbridge/") else COMFYUI  # the pack's own nodes: this repo
        block = _class_block((where / kind.file).read_text(encoding="utf-8"), kind.cls)
        assert block, f"{kind.cls} not defined in {kind.file}"
        names = (*kind.file_inputs, *kind.widgets, *kind.latent_inputs, *kind.image_inputs, kind.vae_input)
        for name in (n for n in (*names, kind.model_input, kind.guider_input) if n):
            assert f'"{name}"' in block, f"{kind.cls} in {kind.file} has no input {name!r}"
        if kind.outputs and kind.role != "primitive" and "RETURN_TYPES" in block:
            declared = re.search(r"RETURN_TYPES = \(([^)]*)\)", block)
            assert declared and tuple(re.findall(r'"(\w+)"', declared.group(1))) == kind.outputs, kind.cls
        checked += 1
    assert checked >= 50


# --- API format -----------------------------------------------------------------------------------------------


def test_api_prompt_traces_saved_latent_and_image():
    prompt = default_prompt()
    latent = read_prompt(json.dumps(prompt), kind="latent")
    assert _vae(latent) == [
        ("checkpoint", "sampled", "sdxl_base.safetensors"),
        ("vae", "decoded", "SDXL/sdxl_vae.safetensors"),
    ]
    vae = latent.by_role("vae")[0]
    assert vae.via == ("VAEDecode #8.vae", "VAELoader #10") and vae.source == "ComfyUI prompt"
    assert dict(latent.facts)["seed"] == "8566257" and dict(latent.facts)["latent origin"].startswith(
        "EmptyLatentImage 1024×1024"
    )
    image = read_prompt(prompt, kind="image")  # parsed graphs are accepted too (ComfyUI nodes, web services)
    assert _vae(image)[0] == ("vae", "decoded", "SDXL/sdxl_vae.safetensors")
    assert image.by_role("vae")[0].via == ("SaveImage #9.images", "VAEDecode #8.vae", "VAELoader #10")
    assert not latent.gaps and not image.gaps


def test_img2img_encode_vae_and_baked_vae():
    separate = read_prompt(img2img_prompt(), kind="latent")
    assert ("vae", "encoded", "vae-ft-mse-840000-ema-pruned.safetensors") in _vae(separate)
    assert ("checkpoint", "sampled", "dreamshaper_8.safetensors") in _vae(separate)
    assert separate.by_role("vae")[0].via[:2] == ("SaveLatent #11.samples", "LatentUpscaleBy #13.samples")
    # the LoadImage before the encoder is where the pixels came from, not a gap in the latent's chain
    baked = read_prompt(img2img_prompt(vae_from_checkpoint=True), kind="latent")
    enc = [e for e in baked.evidence if e.relation == "encoded"]
    assert [(e.role, e.name) for e in enc] == [("checkpoint", "dreamshaper_8.safetensors")]
    assert "baked" in enc[0].note
    # the VAELoader no node uses is still named, as "listed" (not traced to the latent)
    assert ("vae", "listed", "vae-ft-mse-840000-ema-pruned.safetensors") in _vae(baked)


def test_custom_sampler_unet_gguf_and_clip_loaders():
    """SamplerCustomAdvanced with a BasicGuider (comfy_extras/nodes_custom_sampler.py), the model from city96's
    UnetLoaderGGUF through a LoraLoaderModelOnly (nodes.py), text encoders from a DualCLIPLoader (nodes.py)."""
    prompt = {
        "1": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "flux1-dev-Q4_K_S.gguf"}},
        "2": {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {"model": ["1", 0], "lora_name": "x.safetensors", "strength_model": 1.0},
        },
        "3": {
            "class_type": "DualCLIPLoader",
            "inputs": {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp8.safetensors", "type": "flux"},
        },
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["3", 0], "text": "a fox"}},
        "5": {"class_type": "BasicGuider", "inputs": {"model": ["2", 0], "conditioning": ["4", 0]}},
        "6": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "7": {"class_type": "RandomNoise", "inputs": {"noise_seed": 42}},
        "8": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "9": {
            "class_type": "BasicScheduler",
            "inputs": {"model": ["2", 0], "scheduler": "simple", "steps": 20, "denoise": 1.0},
        },
        "10": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["7", 0],
                "guider": ["5", 0],
                "sampler": ["8", 0],
                "sigmas": ["9", 0],
                "latent_image": ["6", 0],
            },
        },
        "11": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "12": {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["11", 0]}},
        "13": {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "latents/flux"}},
    }
    rep = read_prompt(prompt)
    assert ("model", "sampled", "flux1-dev-Q4_K_S.gguf") in _vae(rep)
    assert ("vae", "decoded", "ae.safetensors") in _vae(rep)
    model = rep.by_role("model")[0]
    assert model.via == (
        "SaveLatent #13.samples",
        "SamplerCustomAdvanced #10.guider",
        "BasicGuider #5.model",
        "LoraLoaderModelOnly #2.model",
        "UnetLoaderGGUF #1",
    )
    assert {e.name for e in rep.by_role("text_encoder")} == {"clip_l.safetensors", "t5xxl_fp8.safetensors"}
    assert all(not e.traced for e in rep.by_role("text_encoder"))


def test_diffusers_loader_and_checkpoint_loader_with_config():
    """DiffusersLoader (nodes.py: model_path, RETURN_TYPES MODEL, CLIP, VAE) and the deprecated CheckpointLoader
    (config_name, ckpt_name): their VAE outputs are the checkpoint's own."""
    prompt = {
        "1": {"class_type": "DiffusersLoader", "inputs": {"model_path": "stable-diffusion-xl-base-1.0"}},
        "2": {
            "class_type": "CheckpointLoader",
            "inputs": {"config_name": "v1-inference.yaml", "ckpt_name": "sd15.ckpt"},
        },
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "4": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "latent_image": ["3", 0]}},
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "x"}},
    }
    rep = read_prompt(prompt, kind="image")
    assert _vae(rep) == [
        ("checkpoint", "decoded", "stable-diffusion-xl-base-1.0"),
        ("checkpoint", "sampled", "sd15.ckpt"),
    ]
    prompt["5"]["inputs"]["vae"] = ["1", 1]  # the CLIP output is no VAE
    assert any("DiffusersLoader #1 output 1 is not its VAE" in g.reason for g in read_prompt(prompt, kind="image").gaps)


def test_several_save_nodes_file_name_picks_the_writer():
    prompt = default_prompt()
    prompt["20"] = {"class_type": "VAELoader", "inputs": {"vae_name": "other_vae.safetensors"}}
    prompt["21"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["22", 0], "vae": ["20", 0]}}
    prompt["22"] = {"class_type": "LoadImage", "inputs": {"image": "x.png"}}
    prompt["23"] = {
        "class_type": "SaveLatent",
        "inputs": {"samples": ["21", 0], "filename_prefix": "latents/%date:yyyy-MM-dd%/encoded"},
    }
    both = read_prompt(prompt)
    assert {e.name for e in both.by_role("vae", traced=True)} == {"SDXL/sdxl_vae.safetensors", "other_vae.safetensors"}
    assert "save nodes" in dict(both.facts)
    mine = read_prompt(prompt, file_name="encoded_00003_.latent")
    assert {e.name for e in mine.by_role("vae", traced=True)} == {"other_vae.safetensors"}
    first = read_prompt(prompt, file_name="ComfyUI_00012_.latent")
    assert "other_vae.safetensors" not in {e.name for e in first.by_role("vae", traced=True)}


# --- UI format ------------------------------------------------------------------------------------------------


def test_ui_workflow_reroute_primitive_bypass_mute_group():
    wf = default_workflow()
    loader = next(n for n in wf["nodes"] if n["id"] == 10)
    loader["widgets_values"] = ["stale.safetensors"]  # the converted widget's value comes from the PrimitiveNode
    rep = read_workflow(json.dumps(wf))
    vae = rep.by_role("vae", traced=True)
    assert [(e.relation, e.name) for e in vae] == [("decoded", "SDXL/sdxl_vae.safetensors")]
    # the bypassed LatentUpscale passes its input through; the Reroute is transparent; the PrimitiveNode holds the name
    assert vae[0].via == ("VAEDecode #8.vae", "Reroute #15.", "VAELoader #10")
    assert ("checkpoint", "sampled", "sdxl_base.safetensors") in _vae(rep)
    assert not rep.gaps  # the muted SaveLatent is not a sink; the group changes nothing
    next(n for n in wf["nodes"] if n["id"] == 15)["mode"] = (
        2  # mute the Reroute: the VAEDecode's VAE cannot have come through it
    )
    muted = read_workflow(wf)
    assert any("Reroute #15 is muted" in g.reason for g in muted.gaps)
    assert not muted.by_role("vae", traced=True)


def test_ui_workflow_schema_1_link_objects_and_subgraph():
    wf = default_workflow()
    wf["version"] = 1
    wf["state"] = {"lastGroupId": 1, "lastNodeId": 20, "lastLinkId": 14, "lastRerouteId": 0}
    wf["links"] = [
        {"id": i, "origin_id": o, "origin_slot": os_, "target_id": t, "target_slot": ts, "type": ty}
        for i, o, os_, t, ts, ty in wf["links"]
    ]
    assert [(e.relation, e.name) for e in read_workflow(wf).by_role("vae", traced=True)] == [
        ("decoded", "SDXL/sdxl_vae.safetensors")
    ]
    sub_id = "6c1a2f0e-8a4b-4c43-9d6e-1f2a3b4c5d6e"
    wf["definitions"] = {"subgraphs": [{"id": sub_id, "name": "Sampler block", "nodes": [], "links": []}]}
    next(n for n in wf["nodes"] if n["id"] == 3)["type"] = sub_id  # the sampler became a subgraph
    rep = read_workflow(wf)
    assert any("subgraph 'Sampler block'" in g.reason and "does not trace inside it" in g.reason for g in rep.gaps)


def test_saved_latent_file_as_comfyui_writes_it(tmp_path):
    path = save_latent_file(
        tmp_path / "ComfyUI_00001_.latent", torch.randn(1, 4, 8, 8), default_prompt(), default_workflow()
    )
    rep = read_provenance(path)
    assert rep.sources[:2] == ("ComfyUI prompt", "ComfyUI workflow")
    traced = {(e.source, e.relation, e.name) for e in rep.by_role("vae", traced=True)}
    assert traced == {
        ("ComfyUI prompt", "decoded", "SDXL/sdxl_vae.safetensors"),
        ("ComfyUI workflow", "decoded", "SDXL/sdxl_vae.safetensors"),
    }
    # SaveLatent writes "prompt": "" when the prompt is None: nothing to read, not an error
    empty = read_provenance(save_latent_file(tmp_path / "b.latent", torch.randn(1, 4, 8, 8), None, None))
    assert not empty.found and not empty.sources


def test_png_as_saveimage_writes_it(tmp_path):
    path = save_image_file(tmp_path / "ComfyUI_00001_.png", default_prompt(), default_workflow())
    rep = read_provenance(path)
    assert ("vae", "decoded", "SDXL/sdxl_vae.safetensors") in _vae(rep)
    assert {e.source for e in rep.by_role("vae", traced=True)} == {"ComfyUI prompt", "ComfyUI workflow"}
    result = runner.invoke(app, ["inspect", str(path)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "provenance found" in result.output and "vae 'SDXL/sdxl_vae.safetensors' decoded" in result.output
    as_json = json.loads(runner.invoke(app, ["inspect", str(path), "--json"], env=WIDE).output)
    assert as_json["kind"] == "image" and as_json["provenance_found"]["evidence"][0]["role"] == "vae"


def test_inspect_latent_shows_provenance(tmp_path):
    path = save_latent_file(tmp_path / "ComfyUI_00001_.latent", torch.randn(1, 4, 8, 8), img2img_prompt(), None)
    result = runner.invoke(app, ["inspect", str(path)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "vae 'vae-ft-mse-840000-ema-pruned.safetensors' encoded the pixels" in result.output
    out = json.loads(runner.invoke(app, ["inspect", str(path), "--json"], env=WIDE).output)
    vae = [e for e in out["provenance_found"]["evidence"] if e["role"] == "vae"]
    assert vae[0]["via"][-1] == "VAELoader #10" and vae[0]["relation"] == "encoded"


# --- A1111 / Forge / SD.Next ------------------------------------------------------------------------------------

A1111_FULL = (
    "masterpiece, best quality, a red fox in the snow,\n"
    "(detailed fur:1.2), <lora:foxes:0.8>\n"
    "Negative prompt: lowres, bad anatomy,\n"
    "watermark\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3735928559, Size: 832x1216, "
    "Model hash: 31e35c80fc, Model: sd_xl_base_1.0, VAE hash: 235745af8d, VAE: sdxl_vae.safetensors, "
    'Denoising strength: 0.35, Lora hashes: "foxes: 1a2b3c4d5e6f", Hires prompt: "a fox, \\"snow\\": winter", '
    "Version: v1.10.1"
)


def test_a1111_infotext_full():
    p = parse_parameters(A1111_FULL)
    assert p.prompt == "masterpiece, best quality, a red fox in the snow,\n(detailed fur:1.2), <lora:foxes:0.8>"
    assert p.negative_prompt == "lowres, bad anatomy,\nwatermark"
    assert p.get("Lora hashes") == "foxes: 1a2b3c4d5e6f" and p.get("Hires prompt") == 'a fox, "snow": winter'
    assert p.get("Size") == "832x1216" and p.get("Version") == "v1.10.1"
    rep = read_parameters(A1111_FULL)
    assert [(e.role, e.relation, e.name, e.hash, e.hash_kind) for e in rep.evidence] == [
        ("checkpoint", "sampled", "sd_xl_base_1.0", "31e35c80fc", "sha256"),
        ("vae", "decoded", "sdxl_vae.safetensors", "235745af8d", "sha256"),
    ]
    assert dict(rep.facts)["seed"] == "3735928559"


def test_a1111_old_hash_and_no_vae_and_forge_modules():
    # A1111's own docstring example (modules/infotext_utils.py): the old 8-digit model hash (AutoV1)
    old = read_parameters(
        "girl with an artist's beret, determined, blue eyes\nNegative prompt: ugly, fat\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b"
    )
    assert [(e.role, e.relation, e.hash, e.hash_kind) for e in old.evidence] == [
        ("checkpoint", "sampled", "45dee52b", "autov1"),
        ("checkpoint", "decoded", "45dee52b", "autov1"),
    ]
    assert "baked" in old.evidence[1].note or "own VAE" in old.evidence[1].note
    forge = read_parameters(
        "a fox\nSteps: 20, Sampler: Euler, Seed: 1, Model: flux1-dev-fp8, Module 1: ae, Module 2: clip_l"
    )
    assert [e.relation for e in forge.evidence] == ["sampled"]  # no claim that the checkpoint's VAE decoded it
    assert any("Module" not in g.reason or "extra modules" in g.reason for g in forge.gaps)
    bare = read_parameters("just a prompt, with a comma: and a colon")
    assert not bare.evidence and parse_parameters("just a prompt").prompt == "just a prompt"


def test_a1111_png_and_jpeg_exif(tmp_path):
    png = read_provenance(save_image_file(tmp_path / "00001-3735928559.png", None, None, parameters=A1111_FULL))
    assert ("vae", "decoded", "sdxl_vae.safetensors") in _vae(png)
    # JPEG: the infotext in EXIF UserComment, as piexif's UserComment.dump(..., encoding="unicode") writes it
    jpg = tmp_path / "00002.jpg"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111_FULL.encode("utf-16-be")
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(jpg, exif=exif)
    assert _vae(read_provenance(jpg)) == _vae(png)


# --- trainers, modelspec, latentbridge's own records ------------------------------------------------------------


def test_latentbridge_record_and_chunk(tmp_path):
    sha = "ccfab488594d7d6d84da92d83994b36a31428c00044bf44c1d48fe44c5fd4f06"
    prov = Provenance(vae_name="zoo-a", vae_sha256=sha, history=("encode zoo-a",))
    path = write_latent(
        Latent(torch.randn(1, 4, 8, 8), None, "raw", provenance=prov).replace(format="zoo-a"), tmp_path / "x.latent"
    )
    rep = read_provenance(path)
    assert [(e.role, e.relation, e.name, e.hash) for e in rep.by_role("vae")] == [("vae", "encoded", "zoo-a", sha)]
    assert rep.families() == ("zoo-a",)
    split = from_metadata(
        {"latentbridge.provenance": json.dumps({"vae_name": "taef2", "vae_sha256": f"{'a' * 64}+{'b' * 64}"})}
    )
    assert [e.hash for e in split.by_role("vae")] == ["a" * 64, "b" * 64]


def test_modelspec_musubi_aitoolkit_kohya(tmp_path):
    spec = from_metadata({"modelspec.architecture": "stable-diffusion-xl-v1-base/lora", "modelspec.title": "x"})
    assert spec.families() == ("sdxl",) and ("title", "x") in spec.facts
    assert from_metadata({"architecture": "wan", "format_version": "1.0.1"}, channels=48).families() == ("wan22",)
    ambiguous = from_metadata({"architecture": "wan", "format_version": "1.0.1"})
    assert not ambiguous.families() and "several latent formats" in ambiguous.gaps[0].reason
    assert from_metadata({"architecture": "hunyuan_video", "format_version": "1.0.1"}).families() == ("hunyuan_video",)
    assert from_metadata({"latent_space_version": "flux1", "latent_version": "1"}).families() == ("flux1",)
    assert from_metadata({"latent_space_version": "sdxl"}).families() == ("sdxl",)
    assert "maps to no registered format" in from_metadata({"latent_space_version": "omnigen9"}).gaps[0].reason
    assert kohya_name("photo_0512x0768_sdxl.npz").families() == ("sdxl",)
    assert kohya_name("photo_1024x1024_flux.npz").families() == ("flux1",)
    assert kohya_name("photo_0512x0512_sd.npz").families() == ("sd1",)
    assert kohya_name("photo.npz") is None
    # a real musubi cache file, read from its header only
    path = tmp_path / "img_00001_0064x0064_wan.safetensors"
    safetensors.torch.save_file(
        {"latents_1x8x8_bfloat16": torch.zeros(16, 1, 8, 8, dtype=torch.bfloat16)},
        str(path),
        metadata={"architecture": "wan", "width": "64", "height": "64", "format_version": "1.0.1"},
    )
    assert read_provenance(path).families() == ("wan21",)


# --- bad metadata ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt, reason",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2, 3]", "JSON list, expected an object of nodes"),
        (json.dumps("x"), "not valid JSON"),
        ("   ", "empty"),
        ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
        (b"\xff\xfe\x00", "not UTF-8"),
        ({"1": 5, "2": {"class_type": 3}}, "not nodes"),
    ],
)
def test_bad_prompts_give_gaps_not_exceptions(prompt, reason):
    rep = read_prompt(prompt)
    assert any(reason in g.reason for g in rep.gaps), rep.gaps
    assert not rep.by_role("vae", traced=True)


def test_graph_errors_cycles_and_limits(monkeypatch):
    prompt = default_prompt()
    prompt["3"]["inputs"]["latent_image"] = ["13", 0]  # KSampler <- LatentUpscaleBy <- KSampler: a cycle
    prompt["13"] = {
        "class_type": "LatentUpscaleBy",
        "inputs": {"samples": ["3", 0], "upscale_method": "area", "scale_by": 2},
    }
    rep = read_prompt(prompt)
    assert ("vae", "decoded", "SDXL/sdxl_vae.safetensors") in _vae(rep)  # terminates, still finds what it can
    broken = copy.deepcopy(default_prompt())
    broken["10"]["inputs"]["vae_name"] = 17  # wrong type
    rep = read_prompt(broken)
    assert any("VAELoader #10 input 'vae_name' is a int, not a file name" in g.reason for g in rep.gaps)
    broken["11"]["inputs"]["samples"] = ["99", 0]  # a link to no node is a literal to the API reader
    assert any("SaveLatent #11 has no linked latent input" in g.reason for g in read_prompt(broken).gaps)
    unknown = default_prompt()
    unknown["10"] = {"class_type": "EfficientLoader", "inputs": {"vae_name": "Baked VAE", "ckpt_name": "x.ckpt"}}
    named = read_prompt(unknown).by_role("vae", traced=True)[0]
    assert named.name == "Baked VAE" and "unknown to latentbridge" in named.note
    unknown["10"] = {"class_type": "MysteryNode", "inputs": {"seed": 3}}
    assert any("does not know node class 'MysteryNode'" in g.reason for g in read_prompt(unknown).gaps)
    monkeypatch.setattr(_comfy, "MAX_NODES", 5)
    assert "above the 5 traced" in read_prompt(default_prompt()).gaps[0].reason
    monkeypatch.setattr(_comfy, "MAX_JSON_CHARS", 100)
    assert "above the 100 latentbridge reads" in read_prompt(json.dumps(default_prompt())).gaps[0].reason


def test_bad_workflow_and_files(tmp_path):
    assert "expected the frontend's graph" in read_workflow({"nodes": "x"}).gaps[0].reason
    wf = default_workflow()
    wf["links"] = [["x"], {"id": "a"}, None, *wf["links"]]
    wf["nodes"] = [5, {"id": 1}, *wf["nodes"]]
    rep = read_workflow(wf)
    assert ("vae", "decoded", "SDXL/sdxl_vae.safetensors") in _vae(rep)
    assert any("2 entries of the workflow's nodes are not nodes" in g.reason for g in rep.gaps)
    assert not from_metadata({"prompt": 12, "workflow": None, "parameters": b"\xff"}).by_role("vae")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(FileFormatError):
        read_provenance(text)
    with pytest.raises(FileFormatError, match="no such file"):
        read_provenance(tmp_path / "missing.latent")
    with pytest.raises(ValueError, match="kind must be one of"):
        from_metadata({}, kind="video")


def test_evidence_values_check_themselves():
    with pytest.raises(ValueError, match="unknown evidence role 'lora'"):
        Evidence("lora", "decoded", "x")
    with pytest.raises(ValueError, match="unknown hash kind 'md5'"):
        Evidence("vae", "decoded", "x", "n", "ab", "md5")
    e = Evidence("vae", "decoded", "ComfyUI prompt", "a.safetensors", via=("VAEDecode #8.vae", "VAELoader #10"))
    assert e.to_dict() == {
        "role": "vae",
        "relation": "decoded",
        "source": "ComfyUI prompt",
        "name": "a.safetensors",
        "via": ["VAEDecode #8.vae", "VAELoader #10"],
    }
    rep = ProvenanceReport((e,), (), ("ComfyUI prompt",)).merge(ProvenanceReport((e,), (), ("A1111 parameters",)))
    assert len(rep.evidence) == 1 and rep.sources == ("ComfyUI prompt", "A1111 parameters")
