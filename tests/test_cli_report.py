"""`latentbridge report` as a user types it: one HTML page for two latent files, plus TensorBoard events."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from latentbridge.cli import app
from latentbridge.files import write_latent
from latentbridge.formats import get_format
from latentbridge.latent import Latent
from latentbridge.photos import photo_tensor
from latentbridge.report import read_events

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def latents(shared_weights, vaelight_files, tmp_path_factory):
    from latentbridge import codec, weights

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("rep")
    light = vaelight_files
    image = codec.encode(weights.load_vae(light), photo_tensor("astronaut", 128))
    a = write_latent(image, folder / "astronaut.latent")
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    b = write_latent(Latent(x, get_format("sd1"), "model"), folder / "noise.safetensors", container="safetensors")
    return a, b, str(light[1])


def test_report_writes_one_page_and_an_event_file(latents, tmp_path):
    a, b, light = latents
    out, tb = tmp_path / "report.html", tmp_path / "tb"
    args = ["report", str(a), str(b), "--vae", light, "-o", str(out), "--tensorboard", str(tb)]
    result = runner.invoke(app, args, env={"LATENTBRIDGE_HOME": str(tmp_path / "home")})
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "astronaut.latent" in page and "noise.safetensors" in page
    assert page.count("<section") == 0 and page.count('id="latent-') == 2
    for section in ("Inspect", "Identify", "Check", "Previews", "Diagnostics", "Comparison"):
        assert page.count(f"<h3>{section}</h3>") == 2
    assert str(tmp_path / "home" / "previews") in page  # the fits folder came from $LATENTBRIDGE_HOME
    (events,) = tb.iterdir()
    steps = {e["step"] for e in read_events(events) if "values" in e}
    assert steps == {0, 1}  # one step per latent file, in order


def test_report_needs_an_output(latents):
    a, _, _ = latents
    result = runner.invoke(app, ["report", str(a)])
    assert result.exit_code == 2 and "nothing to write" in result.output
