"""generate._prompts: A1111 emphasis parsing, 75-token chunking against hand-computed ids, and CLIP encoding."""

from __future__ import annotations

import pytest
import torch

from latentbridge.errors import LatentBridgeError
from latentbridge.generate import (
    Fragment,
    SpecialTokens,
    chunk_tokens,
    encode_prompt,
    load_text_encoder,
    parse_emphasis,
)
from latentbridge.zoo.t2i import t2i_path

# Hand-computed ids of the zoo tokenizer (CLIP's BPE reduced to the captions' merges, scripts/train_t2i.py): byte
# tokens keep CLIP's ids, byte b's end-of-word token is 256 + its index in CLIP's byte table ('!' = 0), so
# "a</w>" = 256 + (97 - 33) = 320 and ",</w>" = 256 + (44 - 33) = 267, as in CLIP itself; the vocabulary is 512 byte
# tokens + 264 kept merges + BOS + EOS, so BOS = 776 and EOS (also the padding) = 777.
A, COMMA, BOS, EOS = 320, 267, 776, 777
R = 1.1


@pytest.fixture(scope="module")
def encoder():
    if not (t2i_path("t2i-a") / "tokenizer").is_dir():
        pytest.fail("the zoo model t2i-a is missing: run scripts/train_t2i.py")
    return load_text_encoder("t2i-a")


def weights(prompt: str) -> list[tuple[str, float]]:
    return [("BREAK" if f.is_break else f.text, round(f.weight, 6)) for f in parse_emphasis(prompt)]


def test_emphasis_brackets_and_weights():
    assert weights("a (cat:1.5) [dog]") == [("a ", 1.0), ("cat", 1.5), (" ", 1.0), ("dog", round(1 / R, 6))]
    assert weights("((cat))") == [("cat", round(R * R, 6))]
    assert weights("(red (cat:2))") == [("red ", R), ("cat", round(2 * R, 6))]  # weights multiply when nested
    assert weights("[[cat]]") == [("cat", round(1 / R / R, 6))]


def test_emphasis_escapes_unbalanced_and_literals():
    assert weights(r"\(cat\) 1:2") == [("(cat) 1:2", 1.0)]
    assert weights("(cat") == [("cat", R)]  # an open bracket is closed at the end
    assert weights("cat)") == [("cat)", 1.0)]  # a closer without opener is text
    assert weights("cat:1.2)") == [("cat:1.2)", 1.0)]
    assert weights("") == [("", 1.0)]


def test_break_is_a_marker_of_its_own():
    assert weights("a cat BREAK a dog") == [("a cat", 1.0), ("BREAK", 1.0), ("a dog", 1.0)]
    assert weights("(a BREAK b:1.5)") == [("a", 1.5), ("BREAK", 1.0), ("b", 1.5)]  # inside brackets it still breaks
    assert weights("BREAKFAST") == [("BREAKFAST", 1.0)]  # a whole word only
    assert weights("break") == [("break", 1.0)]  # upper case only


def test_chunks_of_a_long_prompt_against_hand_computed_ids(encoder):
    special = SpecialTokens.of(encoder.tokenizer)
    assert (special.bos, special.eos, special.pad, special.comma) == (BOS, EOS, EOS, COMMA)
    chunks = chunk_tokens(parse_emphasis("a " * 80), encoder.token_ids, special)
    assert [c.ids for c in chunks] == [
        (BOS, *[A] * 75, EOS),
        (BOS, *[A] * 5, EOS, *[EOS] * 70),
    ]


def test_comma_backtracking_moves_the_tail_after_the_last_comma(encoder):
    special = SpecialTokens.of(encoder.tokenizer)
    # 70 "a", a comma (token 71), then 10 "a": the chunk fills at 75 tokens with the comma 5 tokens back (<= 20), so
    # the 4 tokens after the comma move to the second chunk, which then holds all 10.
    prompt = "a " * 70 + ", " + "a " * 10
    chunks = chunk_tokens(parse_emphasis(prompt), encoder.token_ids, special)
    assert [c.ids for c in chunks] == [
        (BOS, *[A] * 70, COMMA, EOS, *[EOS] * 4),
        (BOS, *[A] * 10, EOS, *[EOS] * 65),
    ]
    off = chunk_tokens(parse_emphasis(prompt), encoder.token_ids, special, backtrack=0)
    assert [c.ids for c in off] == [(BOS, *[A] * 70, COMMA, *[A] * 4, EOS), (BOS, *[A] * 6, EOS, *[EOS] * 69)]
    # A comma further back than 20 tokens does not move anything.
    far = chunk_tokens(parse_emphasis("a " * 50 + ", " + "a " * 30), encoder.token_ids, special)
    assert far[0].ids == (BOS, *[A] * 50, COMMA, *[A] * 24, EOS)


def test_break_and_weights_in_chunks(encoder):
    special = SpecialTokens.of(encoder.tokenizer)
    chunks = chunk_tokens(parse_emphasis("(a:1.5) [a] BREAK a"), encoder.token_ids, special)
    assert [c.ids[:4] for c in chunks] == [(BOS, A, A, EOS), (BOS, A, EOS, EOS)]
    assert chunks[0].weights[:4] == (1.0, 1.5, pytest.approx(1 / R), 1.0)
    assert chunk_tokens((Fragment("", is_break=True),), encoder.token_ids, special)[0].ids[:3] == (BOS, EOS, EOS)


def test_unweighted_prompt_is_the_plain_clip_encoding(encoder):
    prompt = "a tabby cat"
    emb = encode_prompt(prompt, encoder, negative=None)
    ids = encoder.tokenizer(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        plain = encoder.model(ids).last_hidden_state
    # The A1111 rescale multiplies by mean / mean of the same tensor: equal up to float32 rounding of that ratio.
    torch.testing.assert_close(emb.hidden, plain, rtol=1e-6, atol=1e-6)
    assert emb.negative is None and emb.pooled.shape == (1, encoder.width)


def test_emphasis_keeps_each_chunk_mean_and_changes_the_weighted_token(encoder):
    plain = encode_prompt("a tabby cat", encoder).hidden
    strong = encode_prompt("a (tabby:1.8) cat", encoder).hidden
    # Same tokens either way (brackets are syntax, not text); rescaling restores the mean exactly up to rounding.
    torch.testing.assert_close(strong.mean(), plain.mean(), rtol=1e-5, atol=1e-6)
    changed = (strong - plain).abs().amax(-1)[0]
    assert changed[2] > 10 * changed[5:].max()  # token 2 ("tabby") moves most; the rest only by the rescale
    comfy = encode_prompt("a (tabby:1.8) cat", encoder, emphasis="comfyui").hidden
    none = encode_prompt("a (tabby:1.8) cat", encoder, emphasis="none").hidden
    torch.testing.assert_close(none, plain)
    assert not torch.allclose(comfy, strong)


def test_long_prompt_and_negative_keep_their_chunk_counts_until_padded(encoder):
    emb = encode_prompt("a tabby cat, " * 30, encoder, negative="blurry")
    assert len(emb.chunks) == 2
    assert emb.hidden.shape == (1, 154, encoder.width) and emb.negative.shape == (1, 77, encoder.width)
    padded = emb.padded()  # A1111's "pad prompt/negative prompt to be same length": the empty prompt's chunk
    assert padded.negative.shape == (1, 154, encoder.width)
    empty = encode_prompt("", encoder, negative=None).hidden
    torch.testing.assert_close(padded.negative[:, 77:], empty)
    torch.testing.assert_close(padded.negative[:, :77], emb.negative)


def test_encode_prompt_refusals(encoder, tmp_path):
    with pytest.raises(LatentBridgeError, match="clip_skip must be between 1 and the encoder's 2 layers, got 3"):
        encode_prompt("a cat", encoder, clip_skip=3)
    with pytest.raises(LatentBridgeError, match="emphasis must be 'a1111', 'comfyui' or 'none'"):
        encode_prompt("a cat", encoder, emphasis="webui")  # type: ignore[arg-type]
    with pytest.raises(LatentBridgeError, match=r"expected text_encoder/config\.json and tokenizer/"):
        load_text_encoder(tmp_path)
    assert encode_prompt("a cat", encoder, clip_skip=2).hidden.shape == (1, 77, encoder.width)
