"""latentbridge's node pack inside the real ComfyUI 0.8.0: it loads as ComfyUI loads custom_nodes/latentbridge, every
node runs directly, and example graphs run through ComfyUI's own validate_prompt + PromptExecutor.

VAEs: ComfyUI builds SD-class VAEs at SD's widths only (comfy/sd.py), so the zoo's reduced VAEs are refused by it
(test_comfy_smoke.test_zoo_vae_is_refused_by_comfyui); these tests use standard-width random-weight KL files
(SD-class 4 channels, a 16-channel SD3/FLUX.1 layout), a TAESD in ComfyUI's combined layout, and a tiny Wan 2.1
VAE (ComfyUI reads Wan's widths from the file). Random weights make no natural images, so statistical findings are
not asserted on; shapes, channels, decodes and files are.
"""

from __future__ import annotations

import json
import shutil

import harness
import pytest
import torch
from safetensors.torch import load_file
from test_comfy_smoke import DECODE_MEAN_TOL

import latentbridge as lb
from latentbridge.comfy import NODE_IDS
from latentbridge.comfy._convert import to_comfy
from latentbridge.comfy._vae import view
from latentbridge.files import open_latent

PACK = "latentbridge"


def _vae(comfy: harness.Comfy, name: str):
    """A ComfyUI VAE object, loaded by the stock VAELoader."""
    return comfy.node("VAELoader")().load_vae(name)[0]


def _encode(comfy: harness.Comfy, vae, photo: str) -> dict:
    """LoadImage + VAEEncode, called directly: the photo's LATENT."""
    image = comfy.node("LoadImage")().load_image(photo)[0]
    return comfy.node("VAEEncode")().encode(vae, image)[0]


def _exec(comfy: harness.Comfy, node: str, **inputs):
    """Call a pack node's execute directly (no graph: its hidden inputs are absent); the NodeOutput."""
    return comfy.node(node).execute(**inputs)


# --- loading --------------------------------------------------------------------------------------------------


def test_the_pack_loads_as_custom_nodes_latentbridge(comfy):
    """ComfyUI imported the repository's custom_nodes/latentbridge folder with no error and
    registered every node of the V3 extension, each with a description and a tooltip on every input and output."""
    assert comfy.packs[PACK].name == PACK
    for node_id in NODE_IDS:
        cls = comfy.node(node_id)
        assert cls.RELATIVE_PYTHON_MODULE == "custom_nodes.latentbridge"
        assert comfy.nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id].endswith("(latentbridge)")
        schema = cls.GET_SCHEMA()
        assert schema.category == "latentbridge" and len(schema.description) > 40
        untipped = [i.id for i in schema.inputs if not i.tooltip] + [
            o.display_name for o in schema.outputs if not o.tooltip
        ]
        assert untipped == [], f"{node_id}: no tooltip on {untipped}"
    assert comfy.builtin_failed == ()


def test_comfyui_reads_the_registry_fields_of_the_pack_folder(comfy):
    """comfy_config/config_parser.py reads custom_nodes/latentbridge/pyproject.toml as the registry does; it names no
    dependency (latentbridge is installed with pip, and nothing may change ComfyUI's torch)."""
    from comfy_config import config_parser

    config = config_parser.extract_node_configuration(str(comfy.packs[PACK]))
    assert config.project.name == "latentbridge" and config.project.version == lb.__version__
    assert config.tool_comfy.display_name and config.project.supported_comfyui_version == ">=0.8.0"
    assert config.project.supported_os == ["OS Independent"]
    assert config.project.dependencies == []


# --- each node, called directly -------------------------------------------------------------------------------


def test_check_passes_a_matching_pair_and_stops_a_mismatched_one(comfy, sd_vae, kl16_vae, photo):
    sd, kl16 = _vae(comfy, sd_vae.name), _vae(comfy, kl16_vae.name)
    latent = _encode(comfy, sd, photo)
    out = _exec(comfy, "LatentBridgeCheck", samples=latent, vae=sd, mode="stop", preflight=False)
    passed, verdict, text = out.args
    assert torch.equal(passed["samples"], latent["samples"]) and verdict in ("ok", "warn")
    assert "channel-mismatch" not in text
    with pytest.raises(
        lb.IncompatibleError,
        match=r"stopped the graph.*The latent has 4 channels; ComfyUI VAE \(AutoencodingEngine\) takes 16",
    ):
        _exec(comfy, "LatentBridgeCheck", samples=latent, vae=kl16, mode="stop", preflight=False)
    _, verdict, text = _exec(comfy, "LatentBridgeCheck", samples=latent, vae=kl16, mode="pass", preflight=False).args
    assert verdict == "error" and "error channel-mismatch" in text and "fix:" in text


def test_check_reads_the_family_from_a_connected_model(comfy, sd_vae, photo):
    """A MODEL's latent_format names the latent's family (a stand-in MODEL holding ComfyUI's own SDXL format)."""
    from comfy.latent_formats import SDXL

    class Model:  # what the node reads of a ModelPatcher: get_model_object("latent_format")
        def get_model_object(self, name):
            assert name == "latent_format"
            return SDXL()

    sd = _vae(comfy, sd_vae.name)
    latent = _encode(comfy, sd, photo)
    out, _, text = _exec(
        comfy, "LatentBridgeCheck", samples=latent, vae=sd, mode="pass", preflight=False, model=Model()
    ).args
    assert "format sdxl (recorded)" in text and "latent format sdxl from the MODEL's latent format" in text
    assert out["latentbridge"].format == "sdxl"  # the tag later nodes read


def test_identify_and_inspect(comfy, sd_vae, photo):
    sd = _vae(comfy, sd_vae.name)
    latent = _encode(comfy, sd, photo)
    same, fmt, space, summary = _exec(comfy, "LatentBridgeIdentify", samples=latent, tag_latent=False).args
    assert same is latent and fmt in ("", *lb.list_formats()) and space in ("raw", "model", "") and "%" in summary
    _, text = _exec(comfy, "LatentBridgeInspect", samples=latent, vae=sd).args
    assert "LATENT [1, 4, 8, 8] NCHW float32" in text
    assert "architecture autoencoder_kl (autoencoder_kl/ldm)" in text
    assert "VAE format unknown: 5 formats fit its geometry (sd1, sdxl, playground25, zoo-a, zoo-b)" in text


def test_transfer_reencodes_through_comfyuis_vae_objects(comfy, sd_vae, kl16_vae, photo):
    """reencode = the target VAE object's encode of the source VAE object's decode (float32 rounding apart)."""
    sd, kl16 = _vae(comfy, sd_vae.name), _vae(comfy, kl16_vae.name)
    latent = _encode(comfy, sd, photo)
    latent["noise_mask"] = torch.ones(1, 1, 64, 64)
    out, report = _exec(
        comfy, "LatentBridgeTransfer", samples=latent, from_vae=sd, to_vae=kl16, method="reencode", refine_steps=1
    ).args
    with torch.inference_mode():
        want = kl16.encode(sd.decode(latent["samples"]))
    assert out["samples"].shape == (1, 16, 8, 8) and "noise_mask" in out
    # [0, 1] -> [-1, 1] -> [0, 1] between the two objects: a few float32 ulps, amplified by the encoder
    assert torch.allclose(out["samples"], want, atol=1e-4 * float(want.abs().max()))
    assert report.startswith("reencode: ComfyUI VAE (AutoencoderKL) (format unknown, raw, 4 ch / 8×")


def test_transfer_refines_towards_the_source_decode(comfy, sd_vae, kl16_vae, photo):
    """refine: steps through a copy of the target decoder bring its decode closer to the source decode than the
    plain re-encode (what reencode gives, computed here with the two ComfyUI objects)."""
    sd, kl16 = _vae(comfy, sd_vae.name), _vae(comfy, kl16_vae.name)
    latent = _encode(comfy, sd, photo)
    refined = _exec(
        comfy, "LatentBridgeTransfer", samples=latent, from_vae=sd, to_vae=kl16, method="refine", refine_steps=2
    ).args[0]
    with torch.inference_mode():
        target = sd.decode(latent["samples"])
        before = (kl16.decode(kl16.encode(target)) - target).pow(2).mean()
        after = (kl16.decode(refined["samples"]) - target).pow(2).mean()
    assert after < before  # refine_latent keeps each sample's best iterate: never worse, and Adam moves it


def test_safe_decode_equals_stock_vae_decode(comfy, sd_vae, kl16_vae, taesd_vae, photo):
    for vae_file, channels in ((sd_vae, 4), (kl16_vae, 16), (taesd_vae, 4)):
        vae = _vae(comfy, vae_file.name)
        torch.manual_seed(channels)
        latent = {"samples": torch.randn(2, channels, 6, 8) * 2}
        image, _ = _exec(
            comfy, "LatentBridgeSafeDecode", samples=latent, vae=vae, mode="pass", max_memory_mb=0, tile_size=0
        ).args
        stock = comfy.node("VAEDecode")().decode(vae, latent)[0]
        assert image.shape == stock.shape == (2, 48, 64, 3)
        assert (image - stock).abs().mean() < DECODE_MEAN_TOL, vae_file.name


def test_safe_decode_redoes_overflowing_samples_in_fp32(comfy, sd_vae):
    """A ComfyUI VAE object in fp16: a sample whose values pass fp16's range (65504) turns to NaN there; that sample
    is decoded again in fp32 through a second ComfyUI VAE object, the other keeps its fp16 decode."""
    from comfy.sd import VAE
    from comfy.utils import load_torch_file

    state = load_torch_file(str(sd_vae))
    vae16 = VAE(sd=dict(state), dtype=torch.float16)
    vae32 = VAE(sd=dict(state))
    torch.manual_seed(0)
    z = torch.randn(2, 4, 4, 4)
    z[1] *= 1e5  # beyond fp16's range: inf on the cast, NaN after the first GroupNorm; fine in fp32
    with torch.inference_mode():
        plain = vae16.decode(z)
    assert torch.isfinite(plain[0]).all() and torch.isnan(plain[1]).any()
    image, text = _exec(
        comfy, "LatentBridgeSafeDecode", samples={"samples": z}, vae=vae16, mode="pass", max_memory_mb=0, tile_size=0
    ).args
    with torch.inference_mode():
        want = vae32.decode(z[1:])
    assert torch.isfinite(image).all()
    assert torch.equal(image[0], plain[0])
    assert (image[1] - want[0]).abs().mean() < DECODE_MEAN_TOL
    assert "sample 1 overflowed in fp16" in text and "computed it again in fp32" in text


def test_safe_decode_tiles(comfy, sd_vae):
    """tile_size: the decode runs tile by tile through the ComfyUI object, with whole-image GroupNorm statistics
    over 2 passes (ComfyUI's GroupNorm layers are torch GroupNorms), progress per tile, close to the whole decode."""
    from latentbridge.codec import plan_tiles

    vae = _vae(comfy, sd_vae.name)
    torch.manual_seed(1)
    latent = {"samples": torch.randn(1, 4, 12, 12)}
    args = {"samples": latent, "vae": vae, "mode": "pass", "max_memory_mb": 0}
    whole = _exec(comfy, "LatentBridgeSafeDecode", tile_size=0, **args).args[0]
    comfy._progress.clear()
    tiled = _exec(comfy, "LatentBridgeSafeDecode", tile_size=64, **args).args[0]
    assert tiled.shape == whole.shape == (1, 96, 96, 3)
    # the SD mid-block's attention still sees one tile, so the two differ — by far less than a tenth of the range
    assert 0 < (tiled - whole).abs().mean() < 0.1
    steps = plan_tiles(12, 12, 8, 2).count * 2  # 8-cell tiles with the default quarter overlap, 2 passes
    assert [v for _, v, t in comfy._progress if t == steps] == list(range(steps + 1))


def test_safe_decode_tiles_inside_a_memory_budget(comfy, taesd_vae):
    """max_memory_mb: when latentbridge's estimate of the whole decode passes the budget, it tiles, and says so."""
    vae = _vae(comfy, taesd_vae.name)
    v = view(vae)
    shape = (1, 4, 32, 32)
    whole = lb.estimate_memory(v.vae, shape, run=v.vae.own_run())
    tiled = lb.estimate_memory(v.vae, shape, run=v.vae.own_run().replace(tiling=lb.Tiling(tile=128)))
    assert tiled < whole
    budget_mb = (whole + tiled) / 2 / 2**20
    assert int(budget_mb) * 2**20 > tiled  # whole MiB between the two estimates
    latent = {"samples": torch.randn(shape)}
    image, text = _exec(
        comfy, "LatentBridgeSafeDecode", samples=latent, vae=vae, mode="pass", max_memory_mb=int(budget_mb), tile_size=0
    ).args
    assert image.shape == (1, 256, 256, 3)
    assert "runs in tiles of" in text


def test_save_and_load_tagged_latent(comfy, sd_vae, photo):
    """The pack's .latent loads in the stock LoadLatent with the same tensor, and in the pack's loader with its
    family and provenance."""
    sd = _vae(comfy, sd_vae.name)
    latent = _encode(comfy, sd, photo)
    out = _exec(comfy, "LatentBridgeSaveLatent", samples=latent, filename_prefix="latents/direct", format="sdxl")
    (entry,) = out.ui["latents"]
    saved = comfy.output_dir / entry["subfolder"] / entry["filename"]
    shutil.copy(saved, comfy.input_dir / "direct.latent")
    stock = comfy.node("LoadLatent")().load("direct.latent")[0]
    assert torch.equal(stock["samples"], latent["samples"])
    ours, info = _exec(comfy, "LatentBridgeLoadLatent", latent="direct.latent", format="auto").args
    assert torch.equal(ours["samples"], latent["samples"])
    assert ours["latentbridge"].format == "sdxl" and "written by latentbridge" in info
    assert open_latent(saved).latent.format_name == "sdxl"


def test_preview_with_factors_and_with_a_tiny_decoder(comfy, taesd_vae):
    torch.manual_seed(2)
    latent = {"samples": torch.randn(1, 4, 6, 8)}
    (image,) = _exec(comfy, "LatentBridgePreview", samples=latent, method="rgb", format="sd1").args
    assert image.shape == (1, 6, 8, 3) and image.min() >= 0 and image.max() <= 1
    taesd = _vae(comfy, taesd_vae.name)
    (tiny,) = _exec(comfy, "LatentBridgePreview", samples=latent, method="tiny", tiny_vae=taesd, format="sd1").args
    assert tiny.shape == (1, 48, 64, 3)
    stock = comfy.node("VAEDecode")().decode(taesd, latent)[0]  # the same TAESD object, ComfyUI's decode
    assert (tiny - stock).abs().mean() < DECODE_MEAN_TOL
    with pytest.raises(lb.LatentBridgeError, match="format is unknown"):
        _exec(comfy, "LatentBridgePreview", samples=latent, method="rgb")


def test_taesd_format_comes_from_its_scalars(comfy, taesd_vae):
    """ComfyUI's TAESD keeps the latent scaling (vae_scale 0.18215): the view names sd1 from it."""
    v = view(_vae(comfy, taesd_vae.name))
    assert v.vae.format is lb.get_format("sd1") and v.format_source == "taesd" and v.signature == "taesd/comfyui"


def test_resolve_vae_from_a_tagged_latent(comfy, sd_vae):
    """Called directly (no graph): the latent's tag names the VAE file; the library finds it in models/vae."""
    latent = lb.Latent(torch.randn(1, 4, 6, 8), "sd1", "raw", provenance=lb.Provenance(vae_name=sd_vae.name))
    vae, name, reasons = _exec(
        comfy, "LatentBridgeResolveVAE", samples=to_comfy(latent), include_checkpoints=False
    ).args
    assert name == str(sd_vae) and sd_vae.name in reasons
    assert vae.latent_channels == 4
    with pytest.raises(lb.LibraryError, match="names no VAE"):
        _exec(comfy, "LatentBridgeResolveVAE", samples={"samples": torch.randn(1, 4, 6, 8)}, include_checkpoints=False)


# --- graphs through validate_prompt + PromptExecutor ----------------------------------------------------------


def _encode_graph(photo: str, vae_name: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": photo}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": vae_name}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["2", 0]}},
    }


def test_graph_stops_with_a_clear_message_on_a_mismatched_vae(comfy, sd_vae, kl16_vae, photo):
    graph = _encode_graph(photo, sd_vae.name) | {
        "4": {"class_type": "VAELoader", "inputs": {"vae_name": kl16_vae.name}},
        "5": {
            "class_type": "LatentBridgeCheck",
            "inputs": {"samples": ["3", 0], "vae": ["4", 0], "mode": "stop", "preflight": False},
        },
        "6": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "latents/mismatch"}},
    }
    r = comfy.run(graph)
    assert not r.ok
    err = r.error
    assert (err["node_id"], err["node_type"]) == ("5", "LatentBridgeCheck")
    assert err["exception_type"] == "latentbridge.errors.IncompatibleError"
    message = err["exception_message"].strip()
    assert message.startswith("latentbridge stopped the graph before decoding this latent ([1, 4, 8, 8]")
    assert "has 4 channels; kl16_random.safetensors takes 16" in message and "fix:" in message
    assert "\n" not in message  # one paragraph in ComfyUI's error dialog
    assert "6" not in err["executed"]
    graph["5"]["inputs"]["mode"] = "warn"
    r = comfy.run(graph)
    assert r.ok, r.error
    assert r.values["5"][1] == "error" and "6" in r.ui


def test_graph_transfers_and_decodes(comfy, sd_vae, kl16_vae, photo):
    """VAEEncode (SD) -> Transfer (SD -> 16 ch) -> Check + Safe VAE Decode with the 16-channel VAE, equal to the stock
    VAEDecode of the same LATENT; SaveLatent of the result; Inspect names what the graph did."""
    graph = _encode_graph(photo, sd_vae.name) | {
        "4": {"class_type": "VAELoader", "inputs": {"vae_name": kl16_vae.name}},
        "5": {
            "class_type": "LatentBridgeTransfer",
            "inputs": {
                "samples": ["3", 0],
                "from_vae": ["2", 0],
                "to_vae": ["4", 0],
                "method": "reencode",
                "refine_steps": 20,
                "bridge": "none",
            },
        },
        "6": {
            "class_type": "LatentBridgeCheck",
            "inputs": {"samples": ["5", 0], "vae": ["4", 0], "mode": "stop", "preflight": False},
        },
        "7": {
            "class_type": "LatentBridgeSafeDecode",
            "inputs": {"samples": ["6", 0], "vae": ["4", 0], "mode": "stop", "max_memory_mb": 0, "tile_size": 0},
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["4", 0]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["7", 0]}},
        "10": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
        "11": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "latents/moved"}},
        "12": {"class_type": "LatentBridgeInspect", "inputs": {"samples": ["5", 0]}},
        "13": {"class_type": "PreviewAny", "inputs": {"source": ["12", 1]}},
    }
    r = comfy.run(graph)
    assert r.ok, r.error
    assert r.values["5"][0]["samples"].shape == (1, 16, 8, 8)
    assert r.values["6"][1] != "error" and "channel-mismatch" not in r.values["6"][2]
    ours, stock = r.values["7"][0], r.values["8"][0]
    assert ours.shape == stock.shape == (1, 64, 64, 3)
    assert (ours - stock).abs().mean() < DECODE_MEAN_TOL
    (entry,) = r.ui["11"]["latents"]
    assert load_file(str(comfy.output_dir / entry["subfolder"] / entry["filename"]))["latent_tensor"].shape[1] == 16
    inspect_text = r.values["12"][1]
    assert f"vae '{kl16_vae.name}' encoded the pixels" in inspect_text  # traced through Transfer's to_vae
    assert f"vae '{kl16_vae.name}' decoded this latent" in inspect_text  # Safe VAE Decode is a decoder to the tracer
    assert [n for n, _, _ in r.progress if n == "7"]  # the decode reported progress under its node id


def test_graph_saves_a_latent_stock_loadlatent_reads(comfy, sd_vae, photo):
    """VAEEncode -> Save Latent (latentbridge); the file -> stock LoadLatent -> SaveLatent: the same tensor; the
    file carries the prompt, so Resolve VAE after the pack's loader finds the VAE that encoded it."""
    graph = _encode_graph(photo, sd_vae.name) | {
        "4": {
            "class_type": "LatentBridgeSaveLatent",
            "inputs": {"samples": ["3", 0], "filename_prefix": "latents/tagged"},
        },
    }
    r = comfy.run(graph)
    assert r.ok, r.error
    (entry,) = r.ui["4"]["latents"]
    saved = comfy.output_dir / entry["subfolder"] / entry["filename"]
    assert json.loads(open_latent(saved).metadata["prompt"])["4"]["class_type"] == "LatentBridgeSaveLatent"
    shutil.copy(saved, comfy.input_dir / "tagged.latent")
    r2 = comfy.run(
        {
            "1": {"class_type": "LoadLatent", "inputs": {"latent": "tagged.latent"}},
            "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "latents/stock"}},
            "3": {"class_type": "LatentBridgeLoadLatent", "inputs": {"latent": "tagged.latent", "format": "auto"}},
            "4": {
                "class_type": "LatentBridgeResolveVAE",
                "inputs": {"samples": ["3", 0], "include_checkpoints": False},
            },
            "5": {
                "class_type": "LatentBridgeSafeDecode",
                "inputs": {"samples": ["3", 0], "vae": ["4", 0], "mode": "stop", "max_memory_mb": 0, "tile_size": 0},
            },
            "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
        }
    )
    assert r2.ok, r2.error
    encoded = r.values["3"][0]["samples"]
    assert torch.equal(r2.values["1"][0]["samples"], encoded)
    (stock_entry,) = r2.ui["2"]["latents"]
    assert torch.equal(load_file(str(comfy.output_dir / "latents" / stock_entry["filename"]))["latent_tensor"], encoded)
    assert torch.equal(r2.values["3"][0]["samples"], encoded)
    assert r2.values["4"][1] == str(sd_vae)
    assert "encoded it with vae 'sd_random.safetensors'" in r2.values["4"][2]


def test_graph_resolves_the_vae_that_encoded_the_latent(comfy, sd_vae, photo):
    """Resolve VAE traces this graph back to the VAELoader that encoded the latent and loads that file."""
    graph = _encode_graph(photo, sd_vae.name) | {
        "4": {"class_type": "LatentBridgeResolveVAE", "inputs": {"samples": ["3", 0], "include_checkpoints": False}},
        "5": {
            "class_type": "LatentBridgeSafeDecode",
            "inputs": {"samples": ["3", 0], "vae": ["4", 0], "mode": "stop", "max_memory_mb": 0, "tile_size": 0},
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["2", 0]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
        "8": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }
    r = comfy.run(graph)
    assert r.ok, r.error
    assert r.values["4"][1] == str(sd_vae)
    assert (r.values["5"][0] - r.values["6"][0]).abs().mean() < DECODE_MEAN_TOL


def test_graph_refines_inside_comfyuis_inference_mode(comfy, sd_vae, kl16_vae, photo):
    """ComfyUI runs nodes under torch.inference_mode; refinement needs gradients and still runs."""
    graph = _encode_graph(photo, sd_vae.name) | {
        "4": {"class_type": "VAELoader", "inputs": {"vae_name": kl16_vae.name}},
        "5": {
            "class_type": "LatentBridgeTransfer",
            "inputs": {
                "samples": ["3", 0],
                "from_vae": ["2", 0],
                "to_vae": ["4", 0],
                "method": "refine",
                "refine_steps": 2,
                "bridge": "none",
            },
        },
        "6": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "latents/refined"}},
    }
    r = comfy.run(graph)
    assert r.ok, r.error
    assert r.values["5"][0]["samples"].shape == (1, 16, 8, 8)


def test_graph_decodes_video_as_stock_vaedecode(comfy, photo):
    """A tiny Wan 2.1 VAE (ComfyUI reads Wan's widths from the file): 5 frames -> VAEEncode -> a 5-D LATENT ->
    Safe VAE Decode equals the stock VAEDecode (frames folded into the batch)."""
    from diffusers import AutoencoderKLWan
    from safetensors.torch import save_file
    from test_weights import to_wan_original

    path = comfy.models_dir("vae") / "wan21_nodes.safetensors"
    if not path.exists():
        torch.manual_seed(3)
        model = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2).eval()
        save_file(to_wan_original(model.state_dict(), 2), str(path))
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": photo}},
        "2": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": 5}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": path.name}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["3", 0]}},
        "5": {
            "class_type": "LatentBridgeSafeDecode",
            "inputs": {"samples": ["4", 0], "vae": ["3", 0], "mode": "stop", "max_memory_mb": 0, "tile_size": 0},
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["3", 0]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
        "8": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }
    r = comfy.run(graph)
    assert r.ok, r.error
    assert r.values["4"][0]["samples"].shape == (1, 16, 2, 8, 8)
    ours, stock = r.values["5"][0], r.values["6"][0]
    assert ours.shape == stock.shape == (5, 64, 64, 3)
    assert (ours - stock).abs().mean() < DECODE_MEAN_TOL


def test_comfyuis_cancel_stops_a_decode(comfy, sd_vae):
    """The progress callback raises ComfyUI's interrupt (what the cancel button sets) at the decode's next step."""
    import comfy.model_management as mm

    vae = _vae(comfy, sd_vae.name)
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            _exec(
                comfy,
                "LatentBridgeSafeDecode",
                samples={"samples": torch.randn(1, 4, 6, 8)},
                vae=vae,
                mode="pass",
                max_memory_mb=0,
                tile_size=0,
            )
    finally:
        mm.interrupt_current_processing(False)


def test_check_with_preflight_decodes_through_the_comfyui_object(comfy, sd_vae, photo):
    """preflight: test decodes (and the decode→encode cycle) run through the ComfyUI VAE object."""
    sd = _vae(comfy, sd_vae.name)
    latent = _encode(comfy, sd, photo)
    _, verdict, text = _exec(comfy, "LatentBridgeCheck", samples=latent, vae=sd, mode="pass", preflight=True).args
    assert verdict in ("ok", "warn", "error") and "preflight" in text
