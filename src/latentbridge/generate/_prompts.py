"""Prompt -> CLIP text embeddings, with AUTOMATIC1111's emphasis syntax and long-prompt chunking.

The rules follow A1111's documented prompt behaviour (stable-diffusion-webui, "Attention/emphasis" and "BREAK" in its
features wiki), written anew here:

* ``(text)`` multiplies the weight of ``text`` by 1.1, ``[text]`` divides it by 1.1, ``(text:1.5)`` multiplies it by
  1.5; brackets nest and multiply; ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are literal; a bracket left open is
  closed at the end of the prompt; a closing bracket with no opening one is literal text.
* ``BREAK`` (upper case, a whole word) ends the current chunk: the rest starts a new one.
* The prompt is tokenised without special tokens and cut into chunks of 75 tokens, each sent to CLIP as
  ``[BOS] + 75 tokens + [EOS]``, padded to 77 with the tokenizer's pad token (EOS for SD's CLIP-L). When a chunk
  fills up and a comma is among its last 20 tokens, the tokens after that comma move to the next chunk ("comma
  backtracking").
* Each chunk is encoded separately and the chunks are concatenated along the token axis ([1, 77 * k, D]); the
  weights then multiply the hidden states token by token, and each chunk is rescaled so its mean over tokens and
  features equals the unweighted mean (A1111's "Original" emphasis).
* A prompt and its negative keep their own chunk counts; with classifier-free guidance they then go through the
  model in separate passes, as A1111 does by default ("pad prompt/negative prompt to be same length" off).
  :meth:`PromptEmbedding.padded` pads the shorter with the empty prompt's chunk (that option on) for pipelines that
  need equal lengths.

Where this differs from ComfyUI's CLIPTextEncode (comfy/sd1_clip.py):

* ComfyUI keeps whole words together instead of backtracking to a comma (a word of 8 or more tokens may split),
  and knows no ``BREAK`` (it is tokenised as the word "break").
* ComfyUI has no ``[text]`` de-emphasis: square brackets are ordinary characters.
* ComfyUI weights as ``z_empty + weight * (z - z_empty)`` per token, with ``z_empty`` the encoding of the empty
  prompt, and does not rescale the mean: pass ``emphasis="comfyui"`` for that weighting (the chunking stays A1111's).
* A1111 rescales the mean over a whole batch of prompts; here each prompt is rescaled alone (a batch of one is the
  same).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from latentbridge.errors import LatentBridgeError

CHUNK_TOKENS = 75  # tokens per chunk between BOS and EOS
COMMA_BACKTRACK = 20  # A1111's default "comma_padding_backtrack"
ROUND = 1.1
SQUARE = 1 / 1.1
Emphasis = Literal["a1111", "comfyui", "none"]

_TOKEN = re.compile(
    r"""\\[()\[\]\\]          # an escaped bracket or backslash
      | \\                    # a lone backslash
      | \( | \[               # openers
      | :\s*([+-]?[.\d]+)\s*\)  # ":1.2)" closes a round bracket with a weight
      | \) | \]               # closers
      | [^\\()\[\]:]+         # text
      | :                     # a colon that is not a weight
    """,
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


@dataclass(frozen=True, slots=True)
class Fragment:
    """A piece of a parsed prompt: ``text`` with one ``weight``, or a BREAK marker (``is_break``)."""

    text: str
    weight: float = 1.0
    is_break: bool = False


def parse_emphasis(prompt: str) -> tuple[Fragment, ...]:
    """Split a prompt into weighted fragments and BREAK markers (A1111's emphasis syntax, see the module docstring).

    Adjacent fragments with equal weights are merged; an empty prompt gives ``(Fragment("", 1.0),)``.

    Examples:
        ``"a (cat:1.5) [dog]"`` -> ``a `` 1.0, ``cat`` 1.5, `` `` 1.0, ``dog`` 0.909...
    """
    pieces: list[Fragment] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for i in range(start, len(pieces)):
            if not pieces[i].is_break:
                pieces[i] = Fragment(pieces[i].text, pieces[i].weight * factor)

    for match in _TOKEN.finditer(prompt):
        text, weight = match.group(0), match.group(1)
        if text.startswith("\\") and len(text) == 2:
            pieces.append(Fragment(text[1]))
        elif text == "(":
            round_open.append(len(pieces))
        elif text == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open:
            multiply(round_open.pop(), float(weight))
        elif text == ")" and round_open:
            multiply(round_open.pop(), ROUND)
        elif text == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
        else:
            for i, part in enumerate(_BREAK.split(text)):
                if i:
                    pieces.append(Fragment("", 1.0, is_break=True))
                pieces.append(Fragment(part))
    for start in round_open:
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)
    merged: list[Fragment] = []
    for piece in pieces:
        if not piece.is_break and not piece.text:
            continue
        last = merged[-1] if merged else None
        if last is not None and not last.is_break and not piece.is_break and last.weight == piece.weight:
            merged[-1] = Fragment(last.text + piece.text, last.weight)
        else:
            merged.append(piece)
    return tuple(merged) or (Fragment(""),)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One CLIP input: 77 token ids and a weight per token (1.0 for BOS, EOS and padding)."""

    ids: tuple[int, ...]
    weights: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class SpecialTokens:
    """The ids chunking needs: begin, end, padding, and the comma (None when the vocabulary has none)."""

    bos: int
    eos: int
    pad: int
    comma: int | None

    @staticmethod
    def of(tokenizer: Any) -> SpecialTokens:
        """Read them from a transformers CLIPTokenizer (the comma is the token ",</w>")."""
        comma = tokenizer.get_vocab().get(",</w>")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return SpecialTokens(tokenizer.bos_token_id, tokenizer.eos_token_id, pad, comma)


def chunk_tokens(
    fragments: Sequence[Fragment],
    tokenize: Callable[[str], Sequence[int]],
    special: SpecialTokens,
    *,
    chunk_tokens: int = CHUNK_TOKENS,
    backtrack: int = COMMA_BACKTRACK,
) -> tuple[Chunk, ...]:
    """Cut weighted fragments into CLIP chunks the way A1111 does (see the module docstring).

    Args:
        fragments: from :func:`parse_emphasis`.
        tokenize: text -> token ids without BOS/EOS.
        special: BOS, EOS, padding and comma ids.
        chunk_tokens: prompt tokens per chunk (75: 77 minus BOS and EOS).
        backtrack: how far back (in tokens) a comma may be to move the chunk's tail after it to the next chunk;
            0 turns backtracking off.

    Returns:
        At least one chunk, each ``chunk_tokens + 2`` ids long: BOS, the prompt tokens, EOS, padding.
    """
    chunks: list[Chunk] = []
    ids: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close() -> None:
        nonlocal ids, weights, last_comma
        pad = chunk_tokens - len(ids)
        chunks.append(
            Chunk(
                ids=(special.bos, *ids, special.eos, *[special.pad] * pad),
                weights=(1.0, *weights, 1.0, *[1.0] * pad),
            )
        )
        ids, weights, last_comma = [], [], -1

    for fragment in fragments:
        if fragment.is_break:
            close()
            continue
        for token in tokenize(fragment.text):
            if token == special.comma:
                last_comma = len(ids)
            elif backtrack and len(ids) == chunk_tokens and last_comma != -1 and len(ids) - last_comma <= backtrack:
                cut = last_comma + 1
                moved_ids, moved_weights = ids[cut:], weights[cut:]
                ids, weights = ids[:cut], weights[:cut]
                close()
                ids, weights = moved_ids, moved_weights
            if len(ids) == chunk_tokens:
                close()
            ids.append(token)
            weights.append(fragment.weight)
    if ids or not chunks:
        close()
    return tuple(chunks)


@dataclass(frozen=True, slots=True)
class TextEncoder:
    """A CLIP text encoder and its tokenizer, loaded from local files.

    Attributes:
        name: what it was loaded from (a folder, a zoo name).
        tokenizer: a transformers ``CLIPTokenizer``.
        model: a transformers ``CLIPTextModel`` (eval mode).
    """

    name: str
    tokenizer: Any
    model: Any

    @property
    def width(self) -> int:
        """Hidden size D of the embeddings."""
        return int(self.model.config.hidden_size)

    def token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without BOS/EOS and without truncation."""
        return list(self.tokenizer(text, add_special_tokens=False, truncation=False).input_ids)


def load_text_encoder(
    spec: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> TextEncoder:
    """Load CLIP from local files: a pipeline folder (``text_encoder/`` + ``tokenizer/``), or a zoo t2i name.

    Raises:
        LatentBridgeError: the folder lacks ``text_encoder/`` or ``tokenizer/``.
    """
    from transformers import CLIPTextModel, CLIPTokenizer

    from latentbridge.zoo.t2i import is_t2i_name, t2i_path

    name = str(spec)
    folder = t2i_path(name) if is_t2i_name(name) else Path(spec).expanduser()
    text_dir, tok_dir = folder / "text_encoder", folder / "tokenizer"
    if not (text_dir / "config.json").is_file() or not tok_dir.is_dir():
        raise LatentBridgeError(
            f"{folder} is not a pipeline folder with a CLIP text encoder: expected text_encoder/config.json and "
            "tokenizer/ inside it (the diffusers layout); pass the pipeline's folder"
        )
    model: Any = CLIPTextModel.from_pretrained(text_dir, dtype=dtype)
    model = model.to(device).eval()
    return TextEncoder(name=name, tokenizer=CLIPTokenizer.from_pretrained(tok_dir), model=model)


@dataclass(frozen=True, slots=True, eq=False)
class PromptEmbedding:
    """What :func:`encode_prompt` returns: the embeddings a UNet's cross-attention reads, and how they were made.

    Attributes:
        hidden: [1, 77 * k, D] float32 CLIP hidden states of the prompt (k chunks).
        negative: [1, 77 * j, D] for the negative prompt (its own chunk count j), or None when not encoded.
        pooled: [1, D] pooled output (EOS token, final layer norm) of the prompt's first chunk.
        negative_pooled: the same for the negative prompt, or None.
        prompt, negative_prompt: the texts.
        chunks: the prompt's chunks (ids and weights).
        encoder: the text encoder's name.
        emphasis: how weights were applied ("a1111", "comfyui", "none").
    """

    hidden: torch.Tensor
    negative: torch.Tensor | None
    pooled: torch.Tensor
    negative_pooled: torch.Tensor | None
    prompt: str
    negative_prompt: str
    chunks: tuple[Chunk, ...]
    encoder: str
    emphasis: str
    empty: torch.Tensor | None = None  # [1, 77, D] the empty prompt's chunk, for padded()

    def padded(self) -> PromptEmbedding:
        """Prompt and negative padded to the same chunk count with the empty prompt's chunk (A1111's "pad prompt /
        negative prompt to be same length"), for pipelines that batch them together."""
        if self.negative is None or self.negative.shape[1] == self.hidden.shape[1]:
            return self
        if self.empty is None:
            raise LatentBridgeError("this embedding has no empty-prompt chunk to pad with: encode it again")
        empty = self.empty
        k = max(self.hidden.shape[1], self.negative.shape[1]) // empty.shape[1]

        def pad(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, *[empty] * (k - x.shape[1] // empty.shape[1])], dim=1)

        return dataclasses.replace(self, hidden=pad(self.hidden), negative=pad(self.negative))


def _encode_chunks(
    encoder: TextEncoder, chunks: Sequence[Chunk], clip_skip: int, emphasis: Emphasis, empty: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    model = encoder.model
    device = next(model.parameters()).device
    outs, pooled = [], None
    for chunk in chunks:
        ids = torch.tensor([chunk.ids], device=device)
        out = model(ids, output_hidden_states=clip_skip > 1)
        z = out.last_hidden_state
        if clip_skip > 1:  # A1111: hidden states of an earlier layer, through the final layer norm
            final_norm = getattr(model, "text_model", model).final_layer_norm  # transformers 4 nests it in text_model
            z = final_norm(out.hidden_states[-clip_skip])
        z = z.float()
        w = torch.tensor(chunk.weights, device=device, dtype=torch.float32)[None, :, None]
        if emphasis == "a1111":
            mean = z.mean()
            z = z * w
            weighted = z.mean()
            if not bool(torch.isfinite(mean / weighted)) or float(weighted.abs()) < 1e-6 * float(z.abs().mean()):
                raise LatentBridgeError(
                    f"A1111 emphasis rescales each chunk by its mean, but this encoder's weighted mean is "
                    f"{float(weighted):.3g} (about 0: a final layer norm without bias?), so the weights cannot be "
                    "applied that way; use emphasis='comfyui' or emphasis='none', or drop the weights"
                )
            z = z * (mean / weighted)
        elif emphasis == "comfyui" and empty is not None:
            z = empty + (z - empty) * w
        outs.append(z)
        if pooled is None:
            pooled = out.pooler_output.float()
    assert pooled is not None  # chunk_tokens returns at least one chunk
    return torch.cat(outs, dim=1), pooled


def encode_prompt(
    prompt: str,
    encoder: TextEncoder | str | Path,
    *,
    negative: str | None = "",
    clip_skip: int = 1,
    emphasis: Emphasis = "a1111",
    backtrack: int = COMMA_BACKTRACK,
) -> PromptEmbedding:
    """Encode a prompt (and its negative) with CLIP, A1111-style (see the module docstring).

    Args:
        prompt: the text, with ``(word:1.2)``, ``(word)``, ``[word]`` and ``BREAK``.
        encoder: a :class:`TextEncoder`, or what :func:`load_text_encoder` takes (a pipeline folder, a zoo name).
        negative: the negative prompt ("" = the empty prompt, as classifier-free guidance uses); None skips it.
        clip_skip: 1 = the last layer (diffusers' ``prompt_embeds``); 2 = the penultimate layer through the final
            layer norm (A1111's "Clip skip 2").
        emphasis: "a1111" (weights, then each chunk's mean restored), "comfyui" (``z_empty + w * (z - z_empty)``,
            no rescale) or "none" (weights ignored).
        backtrack: comma backtracking distance in tokens (A1111's default 20; 0 = off).

    Returns:
        A :class:`PromptEmbedding`: ``hidden`` [1, 77 * k, D] and ``negative`` [1, 77 * j, D] float32 (k and j
        chunks), ``pooled`` [1, D].

    Raises:
        LatentBridgeError: a bad clip_skip or emphasis, or an encoder folder that cannot be loaded.
    """
    if emphasis not in ("a1111", "comfyui", "none"):
        raise LatentBridgeError(f"emphasis must be 'a1111', 'comfyui' or 'none', got {emphasis!r}")
    enc = encoder if isinstance(encoder, TextEncoder) else load_text_encoder(encoder)
    layers = int(enc.model.config.num_hidden_layers)
    if not 1 <= clip_skip <= layers:
        raise LatentBridgeError(f"clip_skip must be between 1 and the encoder's {layers} layers, got {clip_skip}")
    special = SpecialTokens.of(enc.tokenizer)

    def chunks_of(text: str) -> tuple[Chunk, ...]:
        return chunk_tokens(parse_emphasis(text), enc.token_ids, special, backtrack=backtrack)

    with torch.no_grad():
        empty_chunk = chunks_of("")[0]
        empty, _ = _encode_chunks(enc, [empty_chunk], clip_skip, "none", None)
        prompt_chunks = chunks_of(prompt)
        hidden, pooled = _encode_chunks(enc, prompt_chunks, clip_skip, emphasis, empty)
        neg_hidden = neg_pooled = None
        if negative is not None:
            neg_hidden, neg_pooled = _encode_chunks(enc, chunks_of(negative), clip_skip, emphasis, empty)
    return PromptEmbedding(
        hidden=hidden,
        negative=neg_hidden,
        pooled=pooled,
        negative_pooled=neg_pooled,
        prompt=prompt,
        negative_prompt=negative or "",
        chunks=prompt_chunks,
        encoder=enc.name,
        emphasis=emphasis,
        empty=empty,
    )
