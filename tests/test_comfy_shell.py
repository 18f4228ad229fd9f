"""The ComfyUI pack's pure parts, without ComfyUI: importing it, reading the running prompt, rendering reports.

(The nodes themselves run in ComfyUI's own environment: tests/comfy.)
"""

from __future__ import annotations

import sys

import torch

import latentbridge as lb
from latentbridge.comfy import NODE_IDS
from latentbridge.comfy._graph import origin, same_source, trace_here
from latentbridge.comfy._render import report_text, stop_message

PROMPT = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "latent_image": ["5", 0], "seed": 1}},
    "10": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}},
    "11": {"class_type": "LatentBridgeCheck", "inputs": {"samples": ["3", 0], "vae": ["10", 0], "model": ["4", 0]}},
    "12": {"class_type": "LatentBridgeSafeDecode", "inputs": {"samples": ["11", 0], "vae": ["4", 2]}},
    "13": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "latents/other"}},
}


def test_importing_the_pack_imports_neither_comfyui_nor_the_nodes():
    assert "LatentBridgeCheck" in NODE_IDS and len(set(NODE_IDS)) == 9
    assert "comfy_api" not in sys.modules and "latentbridge.comfy._nodes" not in sys.modules


def test_origin_names_the_loader_and_its_file():
    vae = origin(PROMPT, "11", "vae")
    assert vae is not None and (vae.cls, vae.role, vae.name, vae.folder) == (
        "VAELoader",
        "vae_loader",
        "sdxl_vae.safetensors",
        "vae",
    )
    baked = origin(PROMPT, "12", "vae")
    assert baked is not None and (baked.label, baked.folder) == ("CheckpointLoaderSimple #4", "checkpoints")
    assert origin(PROMPT, "11", "nonexistent") is None and origin(None, "11", "vae") is None


def test_same_source_is_one_checkpoint_for_vae_and_model():
    both = dict(PROMPT)
    both["12"] = {"class_type": "LatentBridgeSafeDecode", "inputs": {"vae": ["4", 2], "model": ["4", 0]}}
    assert same_source(both, "12", "vae", "model") is not None
    assert same_source(PROMPT, "11", "vae", "model") is None  # the VAE comes from its own loader


def test_trace_here_starts_at_the_node_whatever_other_save_nodes_exist():
    """The latent at node 12 was sampled by the checkpoint and is decoded with its baked-in VAE; the other
    SaveLatent (an empty latent) does not take over the trace."""
    report = trace_here(PROMPT, "12")
    found = {(e.role, e.relation, e.name) for e in report.by_role("vae", "checkpoint")}
    assert ("checkpoint", "sampled", "sd_xl_base_1.0.safetensors") in found
    assert ("checkpoint", "decoded", "sd_xl_base_1.0.safetensors") in found  # Safe VAE Decode is a decoder
    missing = trace_here(PROMPT, "12", "nonexistent")
    assert not missing.evidence and "not linked" in missing.gaps[0].reason


def test_report_text_and_stop_message_render_from_the_report():
    """Rendered from Report.to_dict(): every finding with its fix; the stop message is one paragraph."""
    vae = lb.load_vae("zoo-c")  # 16 channels
    report = lb.check(lb.Latent(torch.randn(1, 4, 8, 8), "zoo-a", "raw"), vae)
    assert report.verdict == "error"
    text = report_text(report, ["latent format zoo-a from the node's format"])
    assert text.startswith("ERROR  latent [1, 4, 8, 8] NCHW: format zoo-a")
    assert "error channel-mismatch:" in text and "fix:" in text and text.endswith("from the node's format")
    message = stop_message(report)
    assert message.startswith("latentbridge stopped the graph before decoding this latent ([1, 4, 8, 8], zoo-a)")
    assert "\n" not in message and message.endswith("Set the node's mode to 'warn' to decode anyway.")
    for f in report.findings:
        if f.severity == "error":
            assert f.message[1:] in message and f.fix in message
