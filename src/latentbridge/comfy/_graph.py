"""What the running prompt (ComfyUI's hidden ``PROMPT`` input, the API-format graph) says about a node's inputs.

* :func:`origin` follows one input's link to the node that feeds it (a VAELoader, a checkpoint loader …) and
  names the model file it loaded;
* :func:`trace_here` reads the provenance of the latent arriving at a node with latentbridge's ComfyUI graph
  tracer (:func:`latentbridge.provenance.read_prompt`), as if a SaveLatent stood at that node: which VAE encoded
  it, which checkpoint sampled it, which VAE the graph decodes it with.

Everything works on plain dicts; a missing or malformed prompt gives "nothing known", never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from latentbridge.provenance import NODE_KINDS, Gap, ProvenanceReport, read_prompt

KINDS = {k.cls: k for k in NODE_KINDS}
SINK_ID = "latentbridge-trace"  # the stand-in SaveLatent's node id (ComfyUI ids are digits or "a:b" paths)
SINK_PREFIX = "latentbridge_trace_here"
# ComfyUI's model folder of each loader role's files (folder_paths names)
FOLDERS = {"vae_loader": "vae", "checkpoint_loader": "checkpoints", "model_loader": "diffusion_models"}


@dataclass(frozen=True, slots=True)
class Origin:
    """The node feeding an input, and the model file it names.

    Attributes:
        node: its id in the prompt.
        cls: its class ("VAELoader").
        role: its role in latentbridge's node table ("vae_loader", "checkpoint_loader", …; "" when unknown).
        name: the file it loads, as the graph names it ("" when it loads none).
        folder: ComfyUI's model folder for that file ("vae", "checkpoints"; "" when unknown).
    """

    node: str
    cls: str
    role: str
    name: str
    folder: str

    @property
    def label(self) -> str:
        return f"{self.cls} #{self.node}"


def link(prompt: Any, node_id: Any, input_name: str) -> tuple[str, int] | None:
    """(source node id, output slot) of a linked input, or None."""
    if not isinstance(prompt, Mapping) or node_id is None:
        return None
    node = prompt.get(str(node_id))
    inputs = node.get("inputs") if isinstance(node, Mapping) else None
    value = inputs.get(input_name) if isinstance(inputs, Mapping) else None
    if isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[1], int):
        return str(value[0]), int(value[1])
    return None


def origin(prompt: Any, node_id: Any, input_name: str) -> Origin | None:
    """The node (and model file) feeding ``input_name`` of node ``node_id``, or None when not linked/known."""
    found = link(prompt, node_id, input_name)
    if found is None or not isinstance(prompt, Mapping):
        return None
    src = prompt.get(found[0])
    if not isinstance(src, Mapping) or not isinstance(src.get("class_type"), str):
        return None
    cls = src["class_type"]
    kind = KINDS.get(cls)
    name = ""
    raw = src.get("inputs")
    inputs: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    if kind is not None:
        for key in kind.file_inputs:
            value = inputs.get(key)
            if isinstance(value, str) and value.strip():
                name = value.strip()
                break
    role = kind.role if kind is not None else ""
    return Origin(found[0], cls, role, name, FOLDERS.get(role, ""))


def trace_here(prompt: Any, node_id: Any, input_name: str = "samples") -> ProvenanceReport:
    """The provenance of the latent arriving at ``input_name`` of node ``node_id``, traced through the prompt.

    A stand-in SaveLatent reading the same link is added to a copy of the prompt, and latentbridge's tracer reads
    the copy with that SaveLatent's file name, so the trace starts here whatever other save nodes the graph has.
    """
    found = link(prompt, node_id, input_name)
    if found is None or not isinstance(prompt, Mapping):
        why = "no prompt graph was given" if not isinstance(prompt, Mapping) else f"{input_name} is not linked"
        return ProvenanceReport(gaps=(Gap("ComfyUI prompt", f"cannot trace node {node_id}: {why}"),))
    graph = dict(prompt)
    graph[SINK_ID] = {
        "class_type": "SaveLatent",
        "inputs": {"samples": [found[0], found[1]], "filename_prefix": SINK_PREFIX},
    }
    return read_prompt(graph, kind="latent", file_name=f"{SINK_PREFIX}_00001_.latent")


def same_source(prompt: Any, node_id: Any, first: str, second: str) -> Origin | None:
    """The checkpoint loader feeding both inputs (the VAE and the MODEL of one checkpoint), or None."""
    a, b = origin(prompt, node_id, first), origin(prompt, node_id, second)
    if a is None or b is None or a.node != b.node or a.role != "checkpoint_loader":
        return None
    return a
