"""Run a real ComfyUI headless, inside ComfyUI's own virtual environment (scripts/comfy_env.sh).

:func:`start` imports ComfyUI from its source tree without writing into it — bytecode goes to a cache beside
the interpreter, and every folder ComfyUI writes or scans (models, custom_nodes, input, output, temp, user)
lives under a base directory of the caller's (``--base-directory``) — loads the built-in nodes the way
main.py does (``nodes.init_extra_nodes``), then any custom node packs given as paths through ComfyUI's own
``nodes.load_custom_node``. :meth:`Comfy.run` runs an API-format prompt graph through ComfyUI's own
``execution.validate_prompt`` and ``execution.PromptExecutor`` and returns what the graph produced: the UI
outputs of output nodes, every executed node's output values, the messages a browser would have received
(including ``execution_error`` with the message a node raised) and the progress-bar updates.

ComfyUI keeps its state in module globals (``nodes.NODE_CLASS_MAPPINGS``, ``folder_paths``, ``args``), so one
process holds one ComfyUI: :func:`start` returns the same :class:`Comfy` on later calls and refuses different
settings.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_COMFYUI = REPO.parent / "shared" / "comfyui"
COMFYUI_ENV = "LATENTBRIDGE_COMFYUI"  # another ComfyUI source tree
# The folders ComfyUI writes into or scans, all under the base directory.
MODEL_FOLDERS = ("vae", "checkpoints", "vae_approx", "diffusion_models", "loras")


class ComfyHarnessError(RuntimeError):
    """ComfyUI could not be started, a pack did not load, or a graph was refused; the message says which."""


def comfyui_root() -> Path:
    """The ComfyUI source tree: $LATENTBRIDGE_COMFYUI, else ../shared/comfyui beside the repository."""
    return Path(os.environ.get(COMFYUI_ENV) or DEFAULT_COMFYUI).resolve()


def missing_reason() -> str:
    """Why the ComfyUI tests cannot run here, or "" when they can."""
    root = comfyui_root()
    if not (root / "nodes.py").is_file() or not (root / "comfy" / "sd.py").is_file():
        return (
            f"no ComfyUI source tree at {root} (CI places ../shared/comfyui beside the repository; "
            f"or set {COMFYUI_ENV})"
        )
    try:
        import torchvision  # noqa: F401  (ComfyUI imports it while loading: a sign of ComfyUI's own environment)
    except ImportError:
        return (
            f"not running in ComfyUI's virtual environment ({sys.prefix} has no torchvision): run "
            "scripts/comfy_env.sh, then .venv-comfy/bin/python -m pytest tests/comfy"
        )
    return ""


@dataclass
class RunResult:
    """What one prompt graph produced.

    Attributes:
        prompt_id: the id the run was given.
        ok: validation passed and every node ran.
        validation: ComfyUI's validation error dict (``type``, ``message``, ``details``) or None.
        node_errors: per-node validation errors, as the server would return them.
        ui: ``{node_id: ui dict}`` of output nodes (SaveLatent's ``latents`` entries, SaveImage's ``images``).
        values: ``{node_id: tuple of output values}`` of every executed node (a LATENT dict, an IMAGE tensor…).
        messages: ``(event, data)`` pairs in order: execution_start, executing, executed, execution_error…
        progress: ``(node_id, value, total)`` for each ``comfy.utils.ProgressBar`` update.
    """

    prompt_id: str
    ok: bool
    validation: dict[str, Any] | None = None
    node_errors: dict[str, Any] = field(default_factory=dict)
    ui: dict[str, Any] = field(default_factory=dict)
    values: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    progress: list[tuple[str | None, int, int]] = field(default_factory=list)

    @property
    def error(self) -> dict[str, Any] | None:
        """The ``execution_error`` message (node_id, node_type, exception_type, exception_message…) or None."""
        return next((d for e, d in self.messages if e == "execution_error"), None)


@dataclass
class Comfy:
    """A started ComfyUI: its modules, its base directory and the packs it loaded."""

    root: Path
    base: Path
    nodes: Any
    execution: Any
    folder_paths: Any
    server: Any
    packs: dict[str, Path]
    builtin_failed: tuple[str, ...]
    started_at: float = 0.0  # time.time() when ComfyUI was imported
    _progress: list[tuple[str | None, int, int]] = field(default_factory=list)
    _loop: Any = None
    _builtin: frozenset[str] = frozenset()

    def load_pack(self, pack: Path) -> list[str]:
        """Load a custom node pack (a folder with ``__init__.py`` or one ``.py`` file) through ComfyUI's own
        ``nodes.load_custom_node``, as ComfyUI loads each entry of ``custom_nodes/``; returns the node ids it added.

        Raises ComfyHarnessError with ComfyUI's log lines when the import fails or the pack adds no node
        (ComfyUI itself only logs both and starts without the pack).
        """
        pack = Path(pack).absolute()  # not resolved: a linked custom_nodes/<name> keeps its name, as in ComfyUI
        records = _Records()
        logging.getLogger().addHandler(records)
        try:
            before = set(self.nodes.NODE_CLASS_MAPPINGS)
            ok = self._loop.run_until_complete(
                self.nodes.load_custom_node(str(pack), set(self._builtin), module_parent="custom_nodes")
            )
            added = sorted(set(self.nodes.NODE_CLASS_MAPPINGS) - before)
        finally:
            logging.getLogger().removeHandler(records)
        if not ok or not added:
            log = "\n".join(records.lines[-20:]) or "(nothing logged)"
            what = "it registered no nodes" if ok else "import failed"
            raise ComfyHarnessError(f"ComfyUI did not load the node pack {pack}: {what}; ComfyUI logged:\n{log}")
        self.packs[pack.name] = pack
        return added

    def node(self, class_type: str) -> Any:
        """The node class registered as ``class_type`` (KeyError naming the known packs' nodes when absent)."""
        try:
            return self.nodes.NODE_CLASS_MAPPINGS[class_type]
        except KeyError:
            raise KeyError(f"ComfyUI has no node {class_type!r}") from None

    def models_dir(self, folder: str) -> Path:
        """The (temporary) ComfyUI model folder ``folder`` ("vae", "checkpoints"…), created."""
        path = Path(self.folder_paths.get_folder_paths(folder)[0])
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def output_dir(self) -> Path:
        return Path(self.folder_paths.get_output_directory())

    @property
    def input_dir(self) -> Path:
        return Path(self.folder_paths.get_input_directory())

    def run(self, prompt: dict[str, Any], *, extra_data: dict[str, Any] | None = None) -> RunResult:
        """Validate and execute an API-format prompt (``{node_id: {"class_type", "inputs"}}``) as the server does.

        A fresh ``PromptExecutor`` runs each prompt (no outputs cached from an earlier run).
        """
        prompt_id = uuid.uuid4().hex
        valid, err, outputs, node_errors = asyncio.run(self.execution.validate_prompt(prompt_id, prompt, None))
        if not valid:
            return RunResult(prompt_id, False, validation=err, node_errors=node_errors)
        executor = self.execution.PromptExecutor(
            self.server, cache_type=self.execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0}
        )
        self._progress.clear()
        executor.execute(prompt, prompt_id, extra_data or {}, outputs)
        values = {}
        for node_id in prompt:
            entry = executor.caches.outputs.get(node_id)
            if entry is not None:
                values[node_id] = tuple(v[0] if isinstance(v, list) and len(v) == 1 else v for v in entry.outputs)
        return RunResult(
            prompt_id,
            executor.success,
            node_errors=node_errors,
            ui=dict(executor.history_result.get("outputs", {})),
            values=values,
            messages=list(executor.status_messages),
            progress=list(self._progress),
        )


_STARTED: Comfy | None = None


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def start(base: Path, packs: list[Path] | tuple[Path, ...] = (), root: Path | None = None) -> Comfy:
    """Import ComfyUI from ``root`` (default :func:`comfyui_root`) with every writable folder under ``base``.

    Args:
        base: ComfyUI's ``--base-directory``: models/, custom_nodes/, input/, output/, temp/, user/ go there.
        packs: custom node packs to load (a folder with ``__init__.py`` or a single ``.py`` file), each
            through ``nodes.load_custom_node`` as ComfyUI loads what it finds in ``custom_nodes/``.
        root: the ComfyUI source tree.

    Raises:
        ComfyHarnessError: ComfyUI is missing or already started with other settings, or a pack failed to
            import or registered no nodes (the message holds ComfyUI's own log lines about it).
    """
    global _STARTED
    t0 = time.time()
    root = (root or comfyui_root()).resolve()
    base = Path(base).resolve()
    packs = tuple(Path(p).absolute() for p in packs)
    if _STARTED is not None:
        if (_STARTED.root, _STARTED.base) != (root, base) or not set(packs) <= set(_STARTED.packs.values()):
            raise ComfyHarnessError(
                f"ComfyUI is already started in this process from {_STARTED.root} with base {_STARTED.base} and "
                f"packs {sorted(map(str, _STARTED.packs.values()))}; one process holds one ComfyUI"
            )
        return _STARTED
    reason = missing_reason()
    if reason:
        raise ComfyHarnessError(reason)
    for sub in ("custom_nodes", "input", "output", "temp", "user", *(f"models/{m}" for m in MODEL_FOLDERS)):
        (base / sub).mkdir(parents=True, exist_ok=True)
    # Bytecode of ComfyUI's modules goes beside the interpreter, never into the (read-only in CI) source tree.
    sys.pycache_prefix = str(Path(sys.prefix) / "comfyui-pycache")
    sys.path.insert(0, str(root))

    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = True  # read by comfy.model_management at import
    args.base_directory = str(base)  # read by folder_paths at import
    args.disable_api_nodes = True
    import folder_paths

    if Path(folder_paths.base_path) != base:
        raise ComfyHarnessError(
            f"folder_paths was imported before the harness set the base directory (it points at "
            f"{folder_paths.base_path}); start ComfyUI through harness.start only"
        )
    # ComfyUI's utils/ package first, as main.py does: nodes.py puts comfy/ first on sys.path, where comfy/utils.py
    # would hide utils/ from server.py
    importlib.import_module("utils.install_util")
    import comfy.model_management
    import comfy.utils
    import execution
    import hook_breaker_ac10a0
    import nodes
    import server
    from comfy_execution.progress import get_progress_state
    from comfy_execution.utils import get_executing_context

    loop = asyncio.new_event_loop()
    prompt_server = server.PromptServer(loop)
    hook_breaker_ac10a0.save_functions()
    builtin_failed = loop.run_until_complete(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    hook_breaker_ac10a0.restore_functions()
    comfy_started = Comfy(
        root,
        base,
        nodes,
        execution,
        folder_paths,
        prompt_server,
        {},
        tuple(builtin_failed or ()),
        started_at=t0,
        _loop=loop,
        _builtin=frozenset(nodes.NODE_CLASS_MAPPINGS),
    )
    for pack in packs:
        comfy_started.load_pack(pack)

    def hook(value: int, total: int, preview: Any, prompt_id: str | None = None, node_id: str | None = None) -> None:
        # main.py's hijack_progress, minus the websocket: record the update and keep ComfyUI's progress state
        ctx = get_executing_context()
        if node_id is None and ctx is not None:
            node_id = ctx.node_id
        comfy.model_management.throw_exception_if_processing_interrupted()
        comfy_started._progress.append((node_id, int(value), int(total)))
        if node_id is not None:
            get_progress_state().update_progress(node_id, value, total, preview)

    comfy.utils.set_progress_bar_global_hook(hook)
    _STARTED = comfy_started
    return comfy_started
