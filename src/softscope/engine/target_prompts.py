"""Target prompts for InSPEcT-style descriptions: demonstration pools (data) and the seeded prompt builder.

A target prompt is k demonstrations sampled from a pool with a seed, joined with " | ", then " | " and n
placeholder tokens (" x" × n) whose hidden states the Patchscopes engine overwrites with the soft prompt's
(docs/methods.md §4). Every demonstration describes a task *unlike* the built-in ones (no sentiment, emotion, topic,
news, question-type or subjectivity demos), so the description cannot be copied from the target prompt.

Pools are plain data: `plain` (description, then classes), `classes-first`, and the cue-naming pools of the bias
probe, `elaborated` (description, classes and the cue words a classifier would rely on) and `elaborated-cues-first`.
Add a pool by adding an entry to POOLS; nothing else changes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import SoftscopeError

PLACEHOLDER = " x"
JOINER = " | "
MARKER = "{prompt}"  # where a user's own target text takes the n placeholders

# ---- cue-naming pools (bias probe; InSPEcT's elaborated variant, docs/methods.md §4, bias probe) -------------------
# InSPEcT's plain demonstrations name a task and its classes; these also name the *cues* a classifier relies on
# (words, names, stock phrases, punctuation), so a patched description can say which surface feature a soft
# prompt encodes ("... - cue words: Dr., !!, click here"). Like every pool: no task from the built-in tasks'
# domains, or the model copies the demo instead of reading the prompt; and none of the features the bias
# benchmark plants (they would leak into every description). Cues of every kind a planted bias can take.
ELABORATED: tuple[str, ...] = (
    "Decide whether the email is unwanted advertising: spam, not spam"
    " - cue words: free, winner, click here, $$$",
    "Classify how formal the message is: formal, informal - cue words: Dear Sir, regards, hey, lol, :)",
    "Detect whether the chat message was written by a bot: bot, human - cue words: Hello user, As an assistant, ...",
    "Identify the author of the poem: Dickinson, Whitman - cue words: dashes, Emily, grass, O Captain",
    "Decide whether the code snippet is Python or Java: Python, Java - cue words: def, self, public, semicolons ;",
    "Judge whether the forum post is urgent: urgent, routine - cue words: ASAP, ALL CAPS, immediately, deadline",
    "Detect a machine-translated sentence: human, machine - cue words: odd word order, repeated words, Mr. Smith",
    "Classify the legal clause: obligation, permission - cue words: shall, must, may, hereby",
)

# the same demonstrations with the cue words first, then the task and classes
CUES_FIRST: tuple[str, ...] = (
    "Cue words: free, winner, click here, $$$ - decide whether the email is unwanted advertising: spam, not spam",
    "Cue words: Dear Sir, regards, hey, lol, :) - classify how formal the message is: formal, informal",
    "Cue words: Hello user, As an assistant, ... - detect whether the chat message was written by a bot: bot, human",
    "Cue words: dashes, Emily, grass, O Captain - identify the author of the poem: Dickinson, Whitman",
    "Cue words: def, self, public, semicolons ; - decide whether the code snippet is Python or Java: Python, Java",
    "Cue words: ASAP, ALL CAPS, immediately, deadline - judge whether the forum post is urgent: urgent, routine",
    "Cue words: odd word order, repeated words, Mr. Smith - detect a machine-translated sentence: human, machine",
    "Cue words: shall, must, may, hereby - classify the legal clause: obligation, permission",
)

# words of the demonstrations themselves: a description that repeats them echoes the target prompt, so the
# "unexpected words" list leaves them out
DEMO_TEXT = " ".join(ELABORATED + CUES_FIRST)

POOLS: dict[str, tuple[str, ...]] = {
    # description, then classes (the InSPEcT format)
    "plain": (
        "Identify the language this text is written in: English, French, German, Spanish",
        "Decide whether the email is unwanted advertising: spam, not spam",
        "Judge whether the sentence is grammatically correct: acceptable, unacceptable",
        "Determine whether the second sentence follows from the first: entailment, neutral, contradiction",
        "Name the part of speech of the underlined word: noun, verb, adjective, adverb",
        "Identify the programming language of the code snippet: Python, Java, C, JavaScript",
        "Classify how formal the message is: formal, informal",
        "Decide whether the two sentences mean the same thing: paraphrase, not paraphrase",
    ),
    # classes first, then the description
    "classes-first": (
        "English, French, German, Spanish: identify the language this text is written in",
        "spam, not spam: decide whether the email is unwanted advertising",
        "acceptable, unacceptable: judge whether the sentence is grammatically correct",
        "entailment, neutral, contradiction: determine whether the second sentence follows from the first",
        "noun, verb, adjective, adverb: name the part of speech of the underlined word",
        "Python, Java, C, JavaScript: identify the programming language of the code snippet",
        "formal, informal: classify how formal the message is",
        "paraphrase, not paraphrase: decide whether the two sentences mean the same thing",
    ),
    # description, classes and the cue words a classifier relies on (names, phrases, punctuation)
    "elaborated": ELABORATED,
    "elaborated-cues-first": CUES_FIRST,
}


@dataclass
class TargetPrompt:
    """Token ids of a target prompt and the positions of its n placeholders."""

    text: str  # the text before the placeholders (after them, for a user text with a marker)
    ids: list[int]
    placeholder_positions: list[int]
    pool: str
    seed: int | None
    demos: list[str]

    def to_dict(self) -> dict:
        return {"text": self.text, "pool": self.pool, "seed": self.seed, "n_ids": len(self.ids),
                "placeholder_positions": self.placeholder_positions, "demos": self.demos}


def placeholder_id(adapter) -> int:
    """The token the placeholders use: the last token of " x" (one token in every tokenizer we know)."""
    ids = adapter.encode(PLACEHOLDER)
    if not ids:
        raise SoftscopeError("the tokenizer encodes ' x' to nothing: cannot place placeholders")
    return ids[-1]


def sample_demos(pool: str, seed: int, k: int = 3) -> list[str]:
    """k demonstrations of a pool, sampled without replacement with their own seeded generator."""
    if pool not in POOLS:
        raise SoftscopeError(f"unknown target-prompt pool {pool!r}: use {', '.join(POOLS)} or a text with {MARKER}")
    demos = POOLS[pool]
    if k > len(demos):
        raise SoftscopeError(f"pool {pool!r} has {len(demos)} demonstrations, fewer than the {k} asked for")
    return random.Random(seed).sample(list(demos), k)


def build(adapter, spec: str, n_tokens: int, seed: int = 0, k: int = 3) -> TargetPrompt:
    """The target prompt for `spec`: a pool name (k seeded demos) or a user text containing {prompt}.

    Layout: [BOS] + demo_1 | demo_2 | demo_3 | x x ... x  (n placeholders, nothing after them).
    """
    x = placeholder_id(adapter)
    bos = list(adapter.bos_ids)
    if spec in POOLS:
        demos = sample_demos(spec, seed, k)
        head = JOINER.join(demos) + JOINER.rstrip()
        ids = bos + adapter.encode(head)
        pos = list(range(len(ids), len(ids) + n_tokens))
        return TargetPrompt(head, ids + [x] * n_tokens, pos, spec, seed, demos)
    if MARKER not in spec:
        raise SoftscopeError(f"--target-prompt {spec!r}: use a pool ({', '.join(POOLS)}) or your own text with "
                             f"{MARKER} where the soft prompt goes, e.g. 'The task is: {MARKER}'")
    head, tail = spec.split(MARKER, 1)
    ids = bos + (adapter.encode(head.rstrip()) if head.strip() else [])
    pos = list(range(len(ids), len(ids) + n_tokens))
    ids = ids + [x] * n_tokens + (adapter.encode(tail) if tail else [])
    return TargetPrompt(spec, ids, pos, "custom", None, [])
