"""The example workflows in examples/comfyui: the API prompts run (or validate) in the real ComfyUI, and each UI
workflow is the same graph as the frontend saves it (what scripts/comfy_examples.py writes from the API prompt)."""

from __future__ import annotations

import json

import pytest
import torch
from test_comfy_smoke import DECODE_MEAN_TOL
from workflow import api_to_ui, node_info

from latentbridge.provenance import read_prompt, read_workflow

EXAMPLES = ("check_and_decode", "mismatch_stops", "transfer")


def _load(name: str, form: str) -> dict:
    from harness import REPO

    return json.loads((REPO / "examples" / "comfyui" / f"{name}.{form}.json").read_text())


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_ui_workflow_is_the_api_prompt_as_the_frontend_saves_it(comfy, name):
    prompt = _load(name, "api")
    infos = {
        e["class_type"]: node_info(comfy.node(e["class_type"]), comfy.nodes.NODE_DISPLAY_NAME_MAPPINGS, e["class_type"])
        for e in prompt.values()
    }
    assert _load(name, "ui") == api_to_ui(prompt, infos), "run scripts/comfy_examples.py in .venv-comfy"


@pytest.mark.parametrize("name", EXAMPLES)
def test_both_forms_trace_to_the_same_files(comfy, name):
    """latentbridge's provenance tracer reads the two forms alike (as if the example had saved a latent)."""

    def files(report):
        return sorted((e.role, e.relation, e.name) for e in report.by_role("vae", "checkpoint"))

    assert files(read_prompt(_load(name, "api"))) == files(read_workflow(_load(name, "ui")))
    assert files(read_prompt(_load(name, "api")))


def test_the_transfer_example_runs(comfy, sd_vae, kl16_vae, photo):
    """transfer.api.json with this machine's files: an SD-class VAE as the source, the 16-channel one as target."""
    prompt = _load("transfer", "api")
    prompt["1"]["inputs"]["image"] = photo
    prompt["2"]["inputs"]["vae_name"] = sd_vae.name
    prompt["4"]["inputs"]["vae_name"] = kl16_vae.name
    r = comfy.run(prompt)
    assert r.ok, r.error
    assert r.values["5"][0]["samples"].shape == (1, 16, 8, 8)
    assert r.values["6"][1] != "error"
    (saved,) = r.ui["8"]["images"]
    assert saved["filename"].startswith("latentbridge_transfer")
    assert r.ui["10"]["text"] and r.ui["11"]["text"]  # Preview as Text shows the report and the findings
    kl16 = comfy.node("VAELoader")().load_vae(kl16_vae.name)[0]
    with torch.inference_mode():  # the graph's LATENT was made under ComfyUI's inference mode
        stock = comfy.node("VAEDecode")().decode(kl16, r.values["5"][0])[0]
    assert (r.values["7"][0] - stock).abs().mean() < DECODE_MEAN_TOL


def test_the_check_example_is_valid_but_for_its_model_files(comfy):
    """check_and_decode.api.json names an SDXL checkpoint and VAE that this machine lacks: ComfyUI's validation
    refuses exactly those two file names, nothing else in the graph."""
    r = comfy.run(_load("check_and_decode", "api"))
    assert not r.ok
    refused = sorted(
        (node, e["extra_info"]["input_name"]) for node, errs in r.node_errors.items() for e in errs["errors"]
    )
    assert {e["type"] for errs in r.node_errors.values() for e in errs["errors"]} == {"value_not_in_list"}
    assert set(refused) == {("4", "ckpt_name"), ("10", "vae_name")}


def test_the_mismatch_example_stops_at_the_check(comfy, sd_vae, kl16_vae, photo):
    """mismatch_stops.api.json: an SD-class latent checked against a 16-channel VAE stops at the Check node with the
    fix; nothing after it runs."""
    prompt = _load("mismatch_stops", "api")
    prompt["1"]["inputs"]["image"] = photo
    prompt["2"]["inputs"]["vae_name"] = sd_vae.name
    prompt["4"]["inputs"]["vae_name"] = kl16_vae.name
    r = comfy.run(prompt)
    assert not r.ok and r.error["node_id"] == "5"
    assert "has 4 channels; kl16_random.safetensors takes 16" in r.error["exception_message"]
    assert not {"6", "7"} & set(r.error["executed"])
