"""Trace a ComfyUI graph from the saved latent (or image) back to the files that made it.

Two graph forms, both as ComfyUI writes them (``SaveLatent`` puts them in the ``.latent`` file's safetensors
metadata as JSON strings, ``SaveImage`` in PNG text chunks, nodes.py):

* ``prompt`` — the API format, the graph that ran: ``{"<id>": {"class_type": …, "inputs": {name: value or
  ["<id>", slot]}, "_meta": {"title": …}}}``. The frontend has already resolved reroutes, primitive nodes,
  bypassed and muted nodes and subgraphs into it, so it is traced first.
* ``workflow`` — the frontend's UI format (schema 0.4: ``links`` as ``[id, origin, origin_slot, target,
  target_slot, type]``; schema 1: link objects), with positions, groups, reroutes, primitive nodes, node modes
  (2 = muted, 4 = bypassed) and subgraphs. Groups only frame nodes on the canvas and are ignored.

From each sink (``SaveLatent``'s ``samples``, ``SaveImage``'s ``images``) the tracer walks upstream through
samplers, latent and image operations, reroutes and bypassed nodes to ``VAEEncode`` / ``VAEDecode`` and on to
the loaders, and names the VAE file, the checkpoint whose baked-in VAE was used, and the model that sampled.
A ``VAEDecode`` reading the same latent chain as a ``SaveLatent`` names the VAE the workflow decoded it with.
Loaders the trace did not reach are reported as "listed". Anything it cannot follow becomes a :class:`Gap`
with the reason; malformed JSON, wrong types, huge or cyclic graphs never raise.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from latentbridge.provenance._comfy_nodes import (
    FRONTEND_PRIMITIVE,
    FRONTEND_REROUTE,
    IMAGE_INPUT_NAMES,
    KINDS_BY_CLASS,
    LATENT_INPUT_NAMES,
    MODE_BYPASS,
    MODE_NEVER,
    TAESD_NAMES,
    NodeKind,
)
from latentbridge.provenance._model import Evidence, Gap, ProvenanceReport, clip_via

SOURCE_PROMPT = "ComfyUI prompt"
SOURCE_WORKFLOW = "ComfyUI workflow"
MAX_JSON_CHARS = 64 * 2**20  # a ComfyUI workflow of thousands of nodes is a few MB; larger text is refused
MAX_NODES = 50_000
MAX_STEPS = 200_000  # trace steps over one graph (each node is visited at most once per type and relation)
_LOADER_ROLES = {"vae_loader": "vae", "checkpoint_loader": "checkpoint", "model_loader": "model"}
_LOADER_ROLES["text_encoder_loader"] = "text_encoder"
_MODEL_DIRS = {
    "vae": "vae",
    "checkpoints": "checkpoint",
    "diffusion_models": "model",
    "unet": "model",
    "text_encoders": "text_encoder",
    "clip": "text_encoder",
}
_HEX = re.compile(r"(0x)?([0-9a-fA-F]{8,64})")


@dataclass(frozen=True, slots=True)
class _Link:
    node: str
    slot: int


@dataclass(slots=True)
class _Node:
    """One node of either graph form, normalised (mutable scratch, never leaves this module)."""

    id: str
    cls: str
    title: str = ""
    mode: int = 0
    inputs: dict[str, Any] = field(default_factory=dict)  # name -> _Link or a literal value
    input_types: dict[str, str] = field(default_factory=dict)  # UI only: declared input types
    output_types: tuple[str, ...] = ()  # UI only

    @property
    def label(self) -> str:
        title = f" {self.title!r}" if self.title and self.title != self.cls else ""
        return f"{self.cls} #{self.id}{title}"

    @property
    def kind(self) -> NodeKind | None:
        return KINDS_BY_CLASS.get(self.cls)

    def out_type(self, slot: int) -> str:
        if 0 <= slot < len(self.output_types):
            return self.output_types[slot]
        return self.kind.slot_type(slot) if self.kind is not None else ""


def load_json(value: Any, what: str) -> tuple[Any, str]:
    """(parsed value, "") or (None, why it cannot be read) for a JSON text (str/bytes) or an already parsed value.

    Text that decodes to a string holding JSON again (double-encoded by some tools) is decoded once more.
    """
    for _ in range(2):
        if isinstance(value, bytes | bytearray):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                return None, f"{what} is not UTF-8 text"
        if not isinstance(value, str):
            return value, ""
        if len(value) > MAX_JSON_CHARS:
            return None, f"{what} is {len(value):,} characters, above the {MAX_JSON_CHARS:,} latentbridge reads"
        if not value.strip():
            return None, f"{what} is empty"
        try:
            value = json.loads(value)
        except RecursionError:
            return None, f"{what} is nested too deeply to be a ComfyUI graph"
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return None, f"{what} is not valid JSON ({exc})"
    return value, ""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _as_slot(v: Any) -> int | None:
    """A slot index: an int, or a numeric string (the UI schema accepts both)."""
    if _is_int(v):
        return int(v)
    if isinstance(v, str) and v.strip().isdigit():
        return int(v)
    return None


# --- API format -----------------------------------------------------------------------------------------------


def _api_nodes(prompt: Any) -> tuple[dict[str, _Node], list[Gap]]:
    if not isinstance(prompt, dict):
        return {}, [Gap(SOURCE_PROMPT, f"the prompt is a JSON {type(prompt).__name__}, expected an object of nodes")]
    if len(prompt) > MAX_NODES:
        return {}, [Gap(SOURCE_PROMPT, f"the prompt holds {len(prompt):,} nodes, above the {MAX_NODES:,} traced")]
    ids = {str(k) for k in prompt}
    nodes: dict[str, _Node] = {}
    bad = 0
    for key, raw in prompt.items():
        if not isinstance(raw, dict) or not isinstance(raw.get("class_type"), str):
            bad += 1
            continue
        meta = raw.get("_meta")
        title = meta["title"] if isinstance(meta, dict) and isinstance(meta.get("title"), str) else ""
        node = _Node(str(key), raw["class_type"], title)
        inputs = raw.get("inputs")
        for name, value in inputs.items() if isinstance(inputs, dict) else ():
            is_link = (
                isinstance(value, list | tuple)
                and len(value) == 2
                and (isinstance(value[0], str) or _is_int(value[0]))
                and str(value[0]) in ids
                and _is_int(value[1])
                and value[1] >= 0
            )
            node.inputs[str(name)] = _Link(str(value[0]), int(value[1])) if is_link else value
        nodes[node.id] = node
    gaps = [Gap(SOURCE_PROMPT, f"{bad} entries of the prompt are not nodes (no class_type): ignored")] if bad else []
    return nodes, gaps


# --- UI format ------------------------------------------------------------------------------------------------


def _ui_links(raw: Any) -> dict[int, _Link]:
    links: dict[int, _Link] = {}
    for item in raw if isinstance(raw, list) else ():
        if isinstance(item, list | tuple) and len(item) >= 5:
            lid, origin, slot = item[0], item[1], _as_slot(item[2])
        elif isinstance(item, dict):
            lid, origin, slot = item.get("id"), item.get("origin_id"), _as_slot(item.get("origin_slot"))
        else:
            continue
        if _is_int(lid) and (isinstance(origin, str) or _is_int(origin)) and slot is not None:
            links[int(lid)] = _Link(str(origin), slot)
    return links


def _subgraph_ids(workflow: dict[str, Any]) -> dict[str, str]:
    defs = workflow.get("definitions")
    subs = defs.get("subgraphs") if isinstance(defs, dict) else None
    out: dict[str, str] = {}
    for sub in subs if isinstance(subs, list) else ():
        if isinstance(sub, dict) and isinstance(sub.get("id"), str):
            out[sub["id"]] = str(sub.get("name") or sub["id"])
    return out


def _ui_nodes(workflow: Any) -> tuple[dict[str, _Node], list[Gap], list[dict[str, Any]]]:
    """Normalised nodes, gaps, and the ``models`` entries (workflow-level and per node)."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        what = type(workflow).__name__ if not isinstance(workflow, dict) else "an object without a nodes list"
        return {}, [Gap(SOURCE_WORKFLOW, f"the workflow is {what}, expected the frontend's graph with nodes")], []
    raw_nodes = workflow["nodes"]
    if len(raw_nodes) > MAX_NODES:
        return {}, [Gap(SOURCE_WORKFLOW, f"the workflow holds {len(raw_nodes):,} nodes, above {MAX_NODES:,}")], []
    links = _ui_links(workflow.get("links"))
    subgraphs = _subgraph_ids(workflow)
    models = (
        [m for m in workflow.get("models") or () if isinstance(m, dict)]
        if isinstance(workflow.get("models"), list)
        else []
    )
    nodes: dict[str, _Node] = {}
    bad = 0
    for raw in raw_nodes:
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str) or raw.get("id") is None:
            bad += 1
            continue
        cls = raw["type"]
        if cls in subgraphs:
            cls = f"subgraph {subgraphs[cls]!r}"
        mode = raw.get("mode", 0)
        title = raw["title"] if isinstance(raw.get("title"), str) else ""
        node = _Node(str(raw["id"]), cls, title, int(mode) if _is_int(mode) else 0)
        widgets = raw.get("widgets_values")
        kind = KINDS_BY_CLASS.get(cls)
        if isinstance(widgets, list):
            names = kind.widgets if kind is not None else ("value",) if cls == FRONTEND_PRIMITIVE else ()
            node.inputs.update(zip(names, widgets, strict=False))
        elif isinstance(widgets, dict):
            node.inputs.update({str(k): v for k, v in widgets.items()})
        outputs = raw.get("outputs")
        node.output_types = tuple(
            str(o.get("type", "")) if isinstance(o, dict) else ""
            for o in (outputs if isinstance(outputs, list) else ())
        )
        raw_inputs = raw.get("inputs")
        for inp in raw_inputs if isinstance(raw_inputs, list) else ():
            if not isinstance(inp, dict) or not isinstance(inp.get("name"), str):
                continue
            widget = inp.get("widget")
            name = widget["name"] if isinstance(widget, dict) and isinstance(widget.get("name"), str) else inp["name"]
            node.input_types[name] = str(inp.get("type", ""))
            link = inp.get("link")
            if isinstance(link, int) and not isinstance(link, bool) and link in links:
                node.inputs[name] = links[link]
        props = raw.get("properties")
        if isinstance(props, dict) and isinstance(props.get("models"), list):
            models += [m for m in props["models"] if isinstance(m, dict)]
        nodes[node.id] = node
    gaps = [Gap(SOURCE_WORKFLOW, f"{bad} entries of the workflow's nodes are not nodes: ignored")] if bad else []
    return nodes, gaps, models


# --- tracing --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Task:
    link: _Link
    want: str  # "LATENT", "IMAGE", "VAE", "MODEL", "GUIDER"
    relation: str  # what a VAE / model found at the end means
    via: tuple[str, ...]


class _Tracer:
    """Walks one normalised graph upstream; collects evidence, gaps and facts (mutable, private)."""

    def __init__(self, nodes: dict[str, _Node], source: str) -> None:
        self.nodes, self.source = nodes, source
        self.evidence: list[Evidence] = []
        self.gaps: list[Gap] = []
        self.facts: dict[str, str] = {}
        self.seen: set[tuple[str, int, str, str]] = set()
        self.steps = 0
        self.latent_outputs: set[tuple[str, int]] = set()  # LATENT outputs on the traced chains
        self.reached: set[str] = set()  # loader nodes the trace reached

    # results
    def gap(self, reason: str, via: tuple[str, ...] = ()) -> None:
        self.gaps.append(Gap(self.source, reason, clip_via(via)))

    def found(self, node: _Node, role: str, relation: str, name: str, via: tuple[str, ...], note: str = "") -> None:
        self.reached.add(node.id)
        self.evidence.append(Evidence(role, relation, self.source, name, via=clip_via((*via, node.label)), note=note))

    # values of widgets, literal or linked to a primitive
    def value(self, node: _Node, name: str) -> tuple[Any, str]:
        v = node.inputs.get(name)
        for _ in range(16):  # reroutes in front of a primitive
            if not isinstance(v, _Link):
                break
            src = self.nodes.get(v.node)
            if src is None:
                return None, f"is linked to node #{v.node}, which the graph does not hold"
            if src.cls == FRONTEND_REROUTE:
                v = next((x for x in src.inputs.values() if isinstance(x, _Link)), None)
                continue
            if src.cls == FRONTEND_PRIMITIVE or (src.kind is not None and src.kind.role == "primitive"):
                v = src.inputs.get("value")
                continue
            return None, f"comes from {src.label}, whose output latentbridge cannot evaluate"
        if v is None or isinstance(v, _Link):
            return None, "is not set in the graph"
        return v, ""

    def file_name(self, node: _Node, name: str, via: tuple[str, ...]) -> str | None:
        v, why = self.value(node, name)
        if isinstance(v, str) and v.strip():
            return v.strip()
        self.gap(f"{node.label} input {name!r} {why or f'is a {type(v).__name__}, not a file name'}", via)
        return None

    def follow(self, node: _Node, name: str, want: str, relation: str, via: tuple[str, ...]) -> list[_Task]:
        link = node.inputs.get(name)
        return [_Task(link, want, relation, (*via, f"{node.label}.{name}"))] if isinstance(link, _Link) else []

    def typed_inputs(self, node: _Node, want: str, names: frozenset[str] | tuple[str, ...]) -> list[str]:
        """Linked inputs that carry ``want``: by declared type (UI) or, without types (API), by ComfyUI's names."""
        linked = [k for k, v in node.inputs.items() if isinstance(v, _Link)]
        if node.input_types:
            return [k for k in linked if node.input_types.get(k) == want]
        return [k for k in linked if k in names]

    def run(self, tasks: list[_Task]) -> None:
        stack = list(reversed(tasks))
        while stack:
            task = stack.pop()
            key = (task.link.node, task.link.slot, task.want, task.relation)
            if key in self.seen:
                continue  # a cycle, or a node two chains share
            self.seen.add(key)
            self.steps += 1
            if self.steps > MAX_STEPS:
                self.gap(f"the graph needs more than {MAX_STEPS:,} trace steps; stopped")
                return
            stack.extend(reversed(self.step(task)))

    def step(self, task: _Task) -> list[_Task]:
        node = self.nodes.get(task.link.node)
        if node is None:
            self.gap(f"an input links to node #{task.link.node}, which the graph does not hold", task.via)
            return []
        via, want, rel = task.via, task.want, task.relation
        if node.mode == MODE_NEVER:
            self.gap(f"{node.label} is muted (mode never): it did not run", via)
            return []
        if node.mode == MODE_BYPASS or node.cls == FRONTEND_REROUTE:
            kept = [k for k, v in node.inputs.items() if isinstance(v, _Link)]
            if node.mode == MODE_BYPASS:  # a bypassed node passes its first input of the wanted type through
                kept = [k for k in kept if node.input_types.get(k) in (want, "*")][:1]
            if not kept:
                self.gap(f"{node.label} is bypassed and has no linked {want} input to pass through", via)
            return [t for k in kept[:1] for t in self.follow(node, k, want, rel, via)]
        if node.cls.startswith("subgraph ") or node.cls.startswith(("workflow>", "workflow/")):
            self.gap(
                f"{node.label} is a {'subgraph' if node.cls.startswith('subgraph') else 'group node'}: latentbridge "
                "does not trace inside it (the API-format prompt saved beside the workflow is flattened and traced)",
                via,
            )
            return []
        return getattr(self, f"_{want.lower()}")(node, task)

    # one handler per wanted type -----------------------------------------------------------------------------
    def _vae(self, node: _Node, task: _Task) -> list[_Task]:
        kind, via, rel = node.kind, task.via, task.relation
        if kind is not None and kind.role == "vae_loader":
            name = self.file_name(node, "vae_name", via)
            if name is not None:
                note = ""
                if name in TAESD_NAMES:
                    note = f"ComfyUI's built-in {name} (TAESD encoder/decoder pair from models/vae_approx)"
                elif name == "pixel_space":
                    note = "ComfyUI's pixel_space pseudo-VAE: no latent space"
                self.found(node, "vae", rel, name, via, note)
            return []
        if kind is not None and kind.role == "checkpoint_loader":
            if node.out_type(task.link.slot) != "VAE":
                self.gap(f"{node.label} output {task.link.slot} is not its VAE", via)
                return []
            name = self.file_name(node, kind.file_inputs[0], via)
            if name is not None:
                self.found(node, "checkpoint", rel, name, via, "the VAE baked into this checkpoint")
            return []
        tasks = self.follow(node, "vae", "VAE", rel, via)
        if tasks:
            return tasks
        named = [(k, v) for k, v in node.inputs.items() if "vae" in k.lower() and isinstance(v, str) and v.strip()]
        if named:
            key, value = named[0]
            self.found(
                node,
                "vae",
                rel,
                value.strip(),
                via,
                f"input {key!r} of node class {node.cls!r}, unknown to latentbridge",
            )
            return []
        self.gap(f"{node.label} provides the VAE, and latentbridge does not know node class {node.cls!r}", via)
        return []

    def _model(self, node: _Node, task: _Task) -> list[_Task]:
        kind, via, rel = node.kind, task.via, task.relation
        if kind is not None and kind.role in ("checkpoint_loader", "model_loader"):
            if node.out_type(task.link.slot) != "MODEL":
                self.gap(f"{node.label} output {task.link.slot} is not its MODEL", via)
                return []
            name = self.file_name(node, kind.file_inputs[0], via)
            if name is not None:
                self.found(node, "checkpoint" if kind.role == "checkpoint_loader" else "model", rel, name, via)
            return []
        names = self.typed_inputs(node, "MODEL", ("model",))
        if not names:
            self.gap(f"{node.label} provides the model, and latentbridge cannot follow node class {node.cls!r}", via)
        return [t for k in names for t in self.follow(node, k, "MODEL", rel, via)]

    def _guider(self, node: _Node, task: _Task) -> list[_Task]:
        tasks = self.follow(node, "model", "MODEL", task.relation, task.via)
        if not tasks:
            self.gap(f"{node.label} provides the guider and has no linked model input", task.via)
        return tasks

    def _latent(self, node: _Node, task: _Task) -> list[_Task]:
        kind, via = node.kind, task.via
        self.latent_outputs.add((node.id, task.link.slot))
        if kind is None:
            names = self.typed_inputs(node, "LATENT", LATENT_INPUT_NAMES)
            tasks = [t for k in names for t in self.follow(node, k, "LATENT", "encoded", via)]
            tasks += self.follow(node, "vae", "VAE", "encoded", via)
            tasks += self.follow(node, "model", "MODEL", "sampled", via)
            if not tasks:
                self.gap(f"{node.label} makes the latent, and latentbridge does not know node class {node.cls!r}", via)
            return tasks
        if kind.role == "sampler":
            self._sampler_facts(node)
            tasks = self.follow(node, kind.model_input, "MODEL", "sampled", via) if kind.model_input else []
            if kind.guider_input:
                tasks += self.follow(node, kind.guider_input, "GUIDER", "sampled", via)
            return tasks + [t for k in kind.latent_inputs for t in self.follow(node, k, "LATENT", "encoded", via)]
        if kind.role == "encoder":
            if node.out_type(task.link.slot) != "LATENT":
                self.gap(f"{node.label} output {task.link.slot} is not its latent", via)
                return []
            return self.follow(node, kind.vae_input, "VAE", "encoded", via)
        if kind.role == "latent_origin":
            if node.cls == "LoadLatent":
                name, _ = self.value(node, "latent")
                self.gap(f"the latent was loaded from file {name!r} by {node.label}: inspect that file", via)
            else:
                self.facts.setdefault("latent origin", self._origin(node))
            return []
        if kind.role == "latent_op":
            return [t for k in kind.latent_inputs for t in self.follow(node, k, "LATENT", "encoded", via)]
        self.gap(f"{node.label} does not output a latent", via)
        return []

    def _image(self, node: _Node, task: _Task) -> list[_Task]:
        kind, via = node.kind, task.via
        if kind is None:
            names = self.typed_inputs(node, "IMAGE", IMAGE_INPUT_NAMES)
            if not names:
                self.gap(f"{node.label} makes the image, and latentbridge does not know node class {node.cls!r}", via)
            return [t for k in names for t in self.follow(node, k, "IMAGE", task.relation, via)]
        if kind.role == "decoder":
            tasks = self.follow(node, kind.vae_input, "VAE", "decoded", via)
            return tasks + [t for k in kind.latent_inputs for t in self.follow(node, k, "LATENT", "encoded", via)]
        if kind.role == "image_origin":
            name, _ = self.value(node, "image")
            self.gap(f"the image was loaded from file {name!r} by {node.label}, not decoded in this graph", via)
            return []
        if kind.role == "image_op":
            return [t for k in kind.image_inputs for t in self.follow(node, k, "IMAGE", task.relation, via)]
        self.gap(f"{node.label} does not output an image", via)
        return []

    def _sampler_facts(self, node: _Node) -> None:
        for name in ("seed", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"):
            v = node.inputs.get(name)
            if isinstance(v, str | int | float) and not isinstance(v, bool) and name not in self.facts:
                self.facts["seed" if name == "noise_seed" else name] = str(v)

    def _origin(self, node: _Node) -> str:
        sizes = [node.inputs.get(k) for k in ("width", "height", "batch_size")]
        if all(_is_int(s) for s in sizes):
            return f"{node.cls} {sizes[0]}×{sizes[1]}, batch {sizes[2]}"
        return node.cls


def _prefix_pattern(prefix: str) -> re.Pattern[str]:
    """The file names ComfyUI gives a save node's output: ``<basename of prefix>_<5-digit counter>_.<ext>``
    (folder_paths.get_save_image_path); ``%…%`` placeholders (dates, node values, %batch_num%) match anything."""
    base = re.split(r"[\\/]", prefix.strip())[-1]
    parts = re.split(r"%[^%]*%", base)
    return re.compile(".*".join(re.escape(p) for p in parts) + r"_\d{5,}_\.\w+", re.IGNORECASE)


def _sinks(tracer: _Tracer, role: str, file_name: str) -> list[_Node]:
    sinks = [
        n
        for n in tracer.nodes.values()
        if n.kind is not None and n.kind.role == role and n.mode not in (MODE_NEVER, MODE_BYPASS)
    ]
    if not file_name or len(sinks) < 2:
        return sinks
    named = []
    for n in sinks:
        prefix, _ = tracer.value(n, "filename_prefix")
        if isinstance(prefix, str) and _prefix_pattern(prefix).fullmatch(file_name):
            named.append(n)
    return named or sinks


def trace_graph(nodes: dict[str, _Node], source: str, *, kind: str, file_name: str = "") -> _Tracer:
    """Trace every sink of ``kind`` ("latent": SaveLatent; "image": SaveImage/PreviewImage/animated)."""
    tracer = _Tracer(nodes, source)
    role = "latent_sink" if kind == "latent" else "image_sink"
    sinks = _sinks(tracer, role, file_name)
    if not sinks:
        what = "SaveLatent" if kind == "latent" else "SaveImage or PreviewImage"
        tracer.gap(f"the graph has no {what} node that ran, so nothing ties its loaders to this file")
    want = "LATENT" if kind == "latent" else "IMAGE"
    tasks = []
    for sink in sinks:
        sink_kind = sink.kind
        if sink_kind is None:  # pragma: no cover - _sinks keeps known classes only
            continue
        names = sink_kind.latent_inputs if kind == "latent" else sink_kind.image_inputs
        followed = [
            t for k in names for t in tracer.follow(sink, k, want, "encoded" if kind == "latent" else "decoded", ())
        ]
        if not followed:
            tracer.gap(f"{sink.label} has no linked {want.lower()} input")
        tasks += followed
    if len(sinks) > 1:
        tracer.facts["save nodes"] = (
            f"{len(sinks)} ({', '.join(s.label for s in sinks)}): the file may come from any of them"
        )
    tracer.run(tasks)
    if kind == "latent":  # the VAE the workflow decoded the same latent chain with
        decoders: list[tuple[_Node, NodeKind]] = []
        for n in nodes.values():
            dk = n.kind
            if dk is None or dk.role != "decoder" or n.mode in (MODE_NEVER, MODE_BYPASS):
                continue
            reads = [n.inputs.get(k) for k in dk.latent_inputs]
            if any(isinstance(v, _Link) and (v.node, v.slot) in tracer.latent_outputs for v in reads):
                decoders.append((n, dk))
        tracer.run([t for d, dk in decoders for t in tracer.follow(d, dk.vae_input, "VAE", "decoded", ())])
    _list_unreached(tracer)
    return tracer


def _list_unreached(tracer: _Tracer) -> None:
    """Loaders the trace did not reach: named in the file, not tied to this latent."""
    for node in tracer.nodes.values():
        kind = node.kind
        if kind is None or kind.role not in _LOADER_ROLES or node.id in tracer.reached or node.mode == MODE_NEVER:
            continue
        for name in kind.file_inputs:
            v, _ = tracer.value(node, name)
            if isinstance(v, str) and v.strip():
                tracer.evidence.append(
                    Evidence(_LOADER_ROLES[kind.role], "listed", tracer.source, v.strip(), via=(node.label,))
                )


def _model_entries(models: list[dict[str, Any]], source: str) -> list[Evidence]:
    """The frontend's ``models`` lists (name, url, hash, hash_type, directory): files the workflow expects."""
    out = []
    for m in models:
        name, folder = m.get("name"), m.get("directory")
        role = _MODEL_DIRS.get(folder.strip().lower()) if isinstance(folder, str) else None
        if not isinstance(name, str) or not name.strip() or role is None:
            continue
        raw_hash = m["hash"] if isinstance(m.get("hash"), str) else ""
        hash_type = m["hash_type"] if isinstance(m.get("hash_type"), str) else ""
        match = _HEX.fullmatch(raw_hash.strip()) if raw_hash and hash_type.lower() == "sha256" else None
        out.append(
            Evidence(
                role,
                "listed",
                source,
                name.strip(),
                match.group(2).lower() if match else "",
                "sha256" if match else "",
                note=f"the workflow's models list (directory {folder!r})",
            )
        )
    return out


def _report(tracer: _Tracer, extra_gaps: list[Gap], extra: list[Evidence]) -> ProvenanceReport:
    return ProvenanceReport(
        tuple(tracer.evidence + extra), tuple(extra_gaps + tracer.gaps), (tracer.source,), tuple(tracer.facts.items())
    ).merge()


def read_prompt(prompt: Any, *, kind: str = "latent", file_name: str = "") -> ProvenanceReport:
    """Evidence from a ComfyUI API-format ``prompt`` (a dict, or its JSON text as ComfyUI stores it).

    Args:
        prompt: the graph, parsed or as JSON text/bytes.
        kind: what the file holds: "latent" (trace SaveLatent) or "image" (trace SaveImage/PreviewImage).
        file_name: the file's name, to pick the save node whose ``filename_prefix`` wrote it when there are several.

    Returns:
        A report; problems with the graph are gaps in it, never exceptions.
    """
    graph, why = load_json(prompt, "the prompt")
    if why:
        return ProvenanceReport(gaps=(Gap(SOURCE_PROMPT, why),), sources=(SOURCE_PROMPT,))
    nodes, gaps = _api_nodes(graph)
    return _report(trace_graph(nodes, SOURCE_PROMPT, kind=kind, file_name=file_name), gaps, [])


def read_workflow(workflow: Any, *, kind: str = "latent", file_name: str = "") -> ProvenanceReport:
    """Evidence from a ComfyUI UI-format ``workflow`` (schema 0.4 or 1), parsed or as JSON text; see
    :func:`read_prompt`. Reroutes, primitive nodes, bypassed (mode 4) and muted (mode 2) nodes are handled;
    groups are ignored; subgraphs and legacy group nodes are gaps."""
    graph, why = load_json(workflow, "the workflow")
    if why:
        return ProvenanceReport(gaps=(Gap(SOURCE_WORKFLOW, why),), sources=(SOURCE_WORKFLOW,))
    nodes, gaps, models = _ui_nodes(graph)
    tracer = trace_graph(nodes, SOURCE_WORKFLOW, kind=kind, file_name=file_name)
    return _report(tracer, gaps, _model_entries(models, SOURCE_WORKFLOW))
