"""The headless harness against the real ComfyUI 0.8.0: packs load, stock graphs run through ComfyUI's own
validate_prompt + PromptExecutor, errors and progress reach the user as ComfyUI reports them, and stock VAE
decodes agree with latentbridge's loader on the same file.

VAEs: ComfyUI builds SD-class VAEs at SD's widths (128/256/512/512, comfy/sd.py), so these tests write
standard-width KL files with random weights (diffusers' own AutoencoderKL, seeded) and decode small latents;
the zoo's reduced widths are refused by ComfyUI, which one test shows.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import harness
import pytest
import torch
from safetensors.torch import load_file, save_file

# ComfyUI's LDM Decoder and diffusers' AutoencoderKL run the same weights in fp32 with different op orders;
# differences are float32 rounding (~1e-6), far below the bound of 0.5/255 mean abs on [0, 1] images.
DECODE_MEAN_TOL = 0.5 / 255
SD_WIDTHS = (128, 256, 512, 512)  # what comfy/sd.py's VAE builds for a KL f8 file (ch=128, ch_mult 1,2,4,4)


def _kl_file(path: Path, latent_channels: int, quant: bool, seed: int) -> Path:
    """A standard-width (SD-class) AutoencoderKL with random weights in diffusers' layout, fp32."""
    from diffusers import AutoencoderKL

    if not path.exists():
        torch.manual_seed(seed)
        model = AutoencoderKL(
            block_out_channels=SD_WIDTHS,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=latent_channels,
            use_quant_conv=quant,
            use_post_quant_conv=quant,
        )
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def sd_vae(comfy: harness.Comfy) -> Path:
    return _kl_file(comfy.models_dir("vae") / "sd_random.safetensors", 4, quant=True, seed=1)


@pytest.fixture(scope="module")
def kl16_vae(comfy: harness.Comfy) -> Path:
    return _kl_file(comfy.models_dir("vae") / "kl16_random.safetensors", 16, quant=False, seed=2)


def _write_latent(comfy: harness.Comfy, name: str, z: torch.Tensor) -> str:
    """A .latent file as ComfyUI's SaveLatent writes it, in ComfyUI's input folder (where LoadLatent reads)."""
    state = {"latent_tensor": z.contiguous(), "latent_format_version_0": torch.tensor([])}
    save_file(state, str(comfy.input_dir / name))
    return name


def test_probe_packs_load_as_v1_and_v3(comfy):
    assert {"lb_probe_v1.py", "lb_probe_v3"} <= set(comfy.packs)
    v1, v3 = comfy.node("LBProbeRaise"), comfy.node("LBProbeProgress")
    assert v1.RELATIVE_PYTHON_MODULE == "custom_nodes.lb_probe_v1"
    assert v3.RELATIVE_PYTHON_MODULE == "custom_nodes.lb_probe_v3"
    assert comfy.nodes.NODE_DISPLAY_NAME_MAPPINGS["LBProbeProgress"] == "latentbridge probe: progress"
    assert comfy.builtin_failed == ()  # every comfy_extras module imported in this environment


def test_a_pack_that_fails_to_import_is_reported(comfy, tmp_path):
    broken = tmp_path / "lb_broken.py"
    broken.write_text("import latentbridge_no_such_module\n")
    with pytest.raises(harness.ComfyHarnessError, match=r"(?s)import failed.*latentbridge_no_such_module"):
        comfy.load_pack(broken)
    empty = tmp_path / "lb_empty.py"
    empty.write_text("X = 1\n")
    with pytest.raises(harness.ComfyHarnessError, match="lack of NODE_CLASS_MAPPINGS"):
        comfy.load_pack(empty)


def test_saved_latent_loads_back_identically(comfy):
    """EmptyLatentImage -> SaveLatent; the file -> LoadLatent -> (V3 probe) -> SaveLatent: same tensor."""
    r = comfy.run(
        {
            "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 2}},
            "2": {"class_type": "LBProbeProgress", "inputs": {"samples": ["1", 0], "factor": -3.5, "steps": 3}},
            "3": {"class_type": "SaveLatent", "inputs": {"samples": ["2", 0], "filename_prefix": "latents/a"}},
        }
    )
    assert r.ok, r.error
    assert r.values["1"][0]["samples"].shape == (2, 4, 6, 8)
    (entry,) = r.ui["3"]["latents"]
    saved = comfy.output_dir / entry["subfolder"] / entry["filename"]
    stored = load_file(str(saved))
    assert set(stored) == {"latent_tensor", "latent_format_version_0"}
    torch.manual_seed(0)
    z = torch.randn(2, 4, 6, 8)
    name = _write_latent(comfy, "roundtrip.latent", z)
    r = comfy.run(
        {
            "1": {"class_type": "LoadLatent", "inputs": {"latent": name}},
            "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "latents/b"}},
        }
    )
    assert r.ok, r.error
    assert torch.equal(r.values["1"][0]["samples"], z)
    (entry,) = r.ui["2"]["latents"]
    assert torch.equal(load_file(str(comfy.output_dir / entry["subfolder"] / entry["filename"]))["latent_tensor"], z)


def test_latent_without_version_key_is_rescaled_by_load_latent(comfy):
    """LoadLatent divides a file without latent_format_version_0 by 0.18215 (an old, model-space SD latent)."""
    z = torch.ones(1, 4, 2, 2)
    save_file({"latent_tensor": z}, str(comfy.input_dir / "old.latent"))
    r = comfy.run(
        {
            "1": {"class_type": "LoadLatent", "inputs": {"latent": "old.latent"}},
            "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "latents/old"}},
        }
    )
    assert r.ok, r.error
    assert torch.allclose(r.values["1"][0]["samples"], z / 0.18215)


def test_a_node_error_reaches_the_user_with_its_message(comfy):
    message = "found a 4-channel latent; expected 16 channels; fix: connect the SD3 VAE"
    r = comfy.run(
        {
            "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "2": {"class_type": "LBProbeRaise", "inputs": {"samples": ["1", 0], "message": message}},
            "3": {"class_type": "SaveLatent", "inputs": {"samples": ["2", 0], "filename_prefix": "latents/err"}},
        }
    )
    assert not r.ok
    err = r.error
    assert (err["node_id"], err["node_type"], err["exception_type"]) == ("2", "LBProbeRaise", "ValueError")
    assert err["exception_message"].strip() == message  # ComfyUI appends "\n" + OOM tips (empty here)
    assert "1" in err["executed"] and "3" not in err["executed"]
    assert [e for e, _ in r.messages][-1] == "execution_error"


def test_validation_refuses_unknown_nodes_and_bad_inputs(comfy):
    r = comfy.run({"1": {"class_type": "LBNoSuchNode", "inputs": {}}})
    assert not r.ok and r.validation["type"] == "invalid_prompt"
    assert "LBNoSuchNode does not exist" in r.validation["message"]
    r = comfy.run(
        {
            "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "2": {"class_type": "LBProbeProgress", "inputs": {"samples": ["1", 0], "factor": 1.0, "steps": 1000}},
            "3": {"class_type": "SaveLatent", "inputs": {"samples": ["2", 0], "filename_prefix": "latents/v"}},
        }
    )
    assert not r.ok and r.validation["type"] == "prompt_outputs_failed_validation"
    assert r.node_errors["2"]["errors"][0]["type"] == "value_bigger_than_max"


def test_progress_bar_updates_reach_the_hook(comfy):
    r = comfy.run(
        {
            "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "2": {"class_type": "LBProbeProgress", "inputs": {"samples": ["1", 0], "factor": 2.0, "steps": 4}},
            "3": {"class_type": "SaveLatent", "inputs": {"samples": ["2", 0], "filename_prefix": "latents/p"}},
        }
    )
    assert r.ok, r.error
    assert [(n, v, t) for n, v, t in r.progress if n == "2"] == [("2", i, 4) for i in range(1, 5)]


@pytest.mark.parametrize("which", ["sd", "kl16"])
def test_stock_vae_decode_matches_latentbridge(comfy, sd_vae, kl16_vae, which):
    """LoadLatent -> VAELoader + VAEDecode -> PreviewImage, against latentbridge's load_vae on the same file."""
    from latentbridge.weights import load_vae

    path, channels = (sd_vae, 4) if which == "sd" else (kl16_vae, 16)
    torch.manual_seed(3)
    z = torch.randn(1, channels, 6, 8) * 2  # raw latents, as a ComfyUI LATENT holds them
    name = _write_latent(comfy, f"dec_{which}.latent", z)
    r = comfy.run(
        {
            "1": {"class_type": "LoadLatent", "inputs": {"latent": name}},
            "2": {"class_type": "VAELoader", "inputs": {"vae_name": path.name}},
            "3": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["2", 0]}},
            "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
        }
    )
    assert r.ok, r.error
    vae = r.values["2"][0]
    assert (vae.latent_channels, vae.vae_dtype) == (channels, torch.float32)
    image = r.values["3"][0]  # [N, H, W, 3] in [0, 1]
    assert image.shape == (1, 48, 64, 3)
    ours = load_vae(path, hash=False)
    with torch.no_grad():
        want = ((ours.decode(z) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
    assert (image - want).abs().mean() < DECODE_MEAN_TOL
    assert image.std() > 0.01  # a real picture of random weights, not a constant


def test_zoo_vae_is_refused_by_comfyui(comfy):
    """The zoo's reduced widths (16/32/48/96) do not fit the SD-width network ComfyUI builds for every KL f8 file:
    its VAE loader fails in load_state_dict with size mismatches (comfy/sd.py, VAE.__init__)."""
    from latentbridge.zoo import zoo_path

    shutil.copy(zoo_path("zoo-a"), comfy.models_dir("vae") / "zoo-a.safetensors")
    r = comfy.run(
        {
            "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "2": {"class_type": "VAELoader", "inputs": {"vae_name": "zoo-a.safetensors"}},
            "3": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["2", 0]}},
            "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
        }
    )
    assert not r.ok
    assert r.error["node_type"] == "VAELoader"
    assert "size mismatch" in r.error["exception_message"]
    assert "decoder.conv_in.weight" in r.error["exception_message"]


def test_the_harness_writes_nothing_into_comfyui(comfy):
    """After every run above, no file or folder in the ComfyUI tree changed since ComfyUI was imported."""
    newer = [p for p in [comfy.root, *comfy.root.rglob("*")] if p.stat().st_mtime >= comfy.started_at]
    assert newer == []


def test_empty_latent_into_vae_decode(comfy, sd_vae, kl16_vae):
    """EmptyLatentImage -> VAEDecode: a 4-channel VAE decodes the zeros (as latentbridge does); a 16-channel VAE
    fails in its first convolution — the failure the pack's check exists for."""
    from latentbridge.weights import load_vae

    def graph(vae_name: str) -> dict:
        return {
            "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
            "2": {"class_type": "VAELoader", "inputs": {"vae_name": vae_name}},
            "3": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["2", 0]}},
            "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
        }

    r = comfy.run(graph(sd_vae.name))
    assert r.ok, r.error
    with torch.no_grad():
        want = ((load_vae(sd_vae, hash=False).decode(torch.zeros(1, 4, 6, 8)) + 1) / 2).clamp(0, 1)
    assert (r.values["3"][0] - want.permute(0, 2, 3, 1)).abs().mean() < DECODE_MEAN_TOL
    r = comfy.run(graph(kl16_vae.name))
    assert not r.ok and r.error["node_type"] == "VAEDecode"
    assert "expected input[1, 4, 6, 8] to have 16 channels" in r.error["exception_message"]
