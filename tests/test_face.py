"""The public face: what `import latentbridge` offers, what it costs, and values checked where they enter."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch

import latentbridge as lb
from latentbridge.errors import InputTypeError, SpaceError, UnknownFormatError


def _fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (imports start from nothing) and return its stdout."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_importing_the_face_and_the_cli_help_do_not_import_torch():
    code = (
        "import sys, latentbridge\n"
        "from typer.testing import CliRunner\n"
        "from latentbridge.cli import app\n"
        "r = CliRunner().invoke(app, ['--help']); d = CliRunner().invoke(app, ['decode', '--help'])\n"
        "print(r.exit_code, d.exit_code, 'torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    assert _fresh_python(code) == "0 0 False False"


def test_every_face_name_loads_and_is_documented():
    assert set(lb.__all__) == {"__version__", *lb._EXPORTS}
    for name in lb.__all__:
        value = getattr(lb, name)
        if isinstance(value, type) or inspect.isfunction(value):  # classes and functions; Literal aliases aside
            assert value.__doc__, f"latentbridge.{name} has no docstring"
    assert dir(lb) == sorted(lb.__all__)
    with pytest.raises(AttributeError, match="module 'latentbridge' has no attribute 'nope'"):
        lb.nope  # noqa: B018


def test_submodules_of_the_same_stem_do_not_shadow_face_functions():
    import latentbridge.checks
    import latentbridge.fingerprint
    import latentbridge.previews
    import latentbridge.transfers  # noqa: F401 (imported for the side effect on the package's attributes)

    assert callable(lb.check) and callable(lb.identify) and callable(lb.preview) and callable(lb.transfer)


def test_a_format_given_by_name_is_checked_when_the_latent_is_made():
    lat = lb.Latent(torch.zeros(1, 4, 8, 8), format="sd1", space="raw")
    assert lat.format is lb.get_format("sd1")
    with pytest.raises(UnknownFormatError, match=r"Latent\(format='sdl'\): unknown latent format 'sdl'.*'sd1'"):
        lb.Latent(torch.zeros(1, 4, 8, 8), format="sdl")
    with pytest.raises(InputTypeError, match="a latent format is a registry name such as 'sd1' or a LatentFormat"):
        lb.Latent(torch.zeros(1, 4, 8, 8), format=4)  # type: ignore[arg-type]
    with pytest.raises(SpaceError, match="unknown space 'rwa': expected one of 'raw', 'model', 'unknown'"):
        lb.Latent(torch.zeros(1, 4, 8, 8), space="rwa")  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match=r"Latent\.tensor must be a torch\.Tensor, got list"):
        lb.Latent([1.0, 2.0])  # type: ignore[arg-type]
    assert lat.replace(format="sdxl").format is lb.get_format("sdxl")


def test_a_latent_made_from_strings_writes_and_reads_back(tmp_path):
    lat = lb.Latent(torch.randn(1, 128, 4, 4), format="flux2", space="model")
    back = lb.read_latent(lb.write_latent(lat, tmp_path / "a.latent"))
    assert back.format_name == "flux2" and back.space == "model" and torch.equal(back.tensor, lat.tensor)


def tiny_kl():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(16, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        scaling_factor=0.13025,
    ).eval()


def test_a_diffusers_autoencoder_is_taken_as_it_is():
    module = tiny_kl()
    vae = lb.as_vae(module)
    # the config's scaling_factor is what diffusers pipelines scale latents by: SDXL's 0.13025 names sdxl
    assert vae.format is lb.get_format("sdxl") and vae.native_space == "raw" and vae.module is module
    assert lb.load_vae(module).format is lb.get_format("sdxl")
    with pytest.raises(lb.IncompatibleError, match="wraps a AutoencoderKL already in memory as it is"):
        lb.load_vae(module, dtype="bf16")
    lat = lb.Latent(torch.randn(1, 4, 8, 8), format="sdxl", space="raw")
    report = lb.check(lat, module)  # a diffusers module where a VAE is asked for
    assert report.vae.format is lb.get_format("sdxl") and report.vae.name == "AutoencoderKL"
    other = lb.check(lb.Latent(torch.randn(1, 4, 8, 8), format="sd1", space="raw"), module)
    assert other.finding("family-mismatch").severity == "error"  # a recorded sd1 latent, an SDXL VAE
    with pytest.raises(InputTypeError, match=r"needs a VAE or a diffusers autoencoder module .* got str"):
        lb.as_vae("zoo-a")


def test_image_range_helpers_convert_between_unit_and_signed():
    x = torch.tensor([0.0, 0.25, 1.0])
    assert torch.equal(lb.to_signed(x), torch.tensor([-1.0, -0.5, 1.0]))
    assert torch.equal(lb.to_unit(lb.to_signed(x)), x)
    assert torch.equal(lb.to_unit(torch.tensor([-3.0, 3.0])), torch.tensor([0.0, 1.0]))  # clamped
