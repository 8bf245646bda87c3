"""Elaborated, cue-naming target-prompt pools for the bias probe (docs/methods.md §4, bias probe).

InSPEcT's plain demonstrations name a task and its classes; these also name the *cues* a classifier relies
on — words, names, stock phrases and punctuation patterns — so a patched description can say which surface
feature a soft prompt encodes ("... - cue words: Dr., !!, click here"). Rules for the demonstrations:
- no task from the built-in tasks' domains (no sentiment or emotion, topic or news, question type,
  subjectivity), or the model copies the demo instead of reading the prompt;
- cues of every kind a planted bias can take (a name, a phrase, a punctuation mark), so the format invites
  naming one; none of the features the benchmark plants (they would leak into every description).

Pools are plain data (8 parallel entries, like the plain pools); `softscope.target_prompts` lists them under
these names, so `describe --target-prompt elaborated` (or `--elaborated`) and `bias run` sample them like any pool.
"""

from __future__ import annotations

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

POOLS: dict[str, tuple[str, ...]] = {"elaborated": ELABORATED, "elaborated-cues-first": CUES_FIRST}

# words of the demonstrations themselves: a description that repeats them echoes the target prompt, so the
# "unexpected words" list leaves them out
DEMO_TEXT = " ".join(ELABORATED + CUES_FIRST)

