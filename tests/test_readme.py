"""The README's Python example runs as it stands (the "Python API" section's code blocks, in order)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of the README section whose heading is ``section``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], flags=re.S)


def test_the_python_api_example_runs(tmp_path, monkeypatch):
    from latentbridge import zoo

    if not zoo.zoo_path("zoo-a").is_file():
        pytest.skip(f"zoo VAE zoo-a is not built in this checkout ({zoo.zoo_path('zoo-a')} missing)")
    blocks = python_blocks("Python API")
    assert blocks, "the README's Python API section has no python block"
    monkeypatch.chdir(tmp_path)  # the example writes astronaut.latent where it runs
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    lines = out.getvalue().splitlines()
    assert lines[0] == "zoo-a raw (1, 4, 16, 16)"
    assert lines[2].startswith("error family-mismatch - the recorded format is another latent space")
    assert "decode zoo-a (9 tiles of 56×56 px): 18/18" in lines
    assert (tmp_path / "astronaut.latent").is_file()
