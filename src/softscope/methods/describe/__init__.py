"""InSPEcT: the model writes what its soft prompt means, at every checkpoint of a training run.

Reference: Ramati et al., "Eliciting Textual Descriptions from Representations of Continuous Prompts"
(InSPEcT, Findings of ACL 2024), built on Patchscopes (Ghandeharioun et al., ICML 2024).
Procedure (docs/methods.md §4):

1. source pass: run the model on the soft prompt alone (after BOS if any); keep block ℓ's output at the n
   virtual-token positions, for every source layer ℓ of the grid;
2. target prompt: three demonstrations sampled with a seed from a pool (`target_prompts`), " | "-joined, then
   " | " and n placeholders " x"; several seeds give several target prompts;
3. for every (ℓ, ℓ*) pair, write the n source states over the n placeholders at block ℓ* and decode greedily
   (up to 60 new tokens) — all pairs of a target prompt in one batched, KV-cached generate (`patching`);
4. cut the text at the first "\\n", "$", "." or "|" past 20% of its length; score it: class rate, ROUGE-1/2/L
   (max over reference descriptions), semantic similarity to the references (`metrics`);
5. per checkpoint: the best score over the grid (the paper's max) and robust aggregates over all pairs and
   target prompts (mean class rate, share of pairs naming every class, mean of the top-k similarities); per run:
   Spearman ρ between checkpoint accuracy and each score.

Defaults differ from the paper where a 135M model on a CPU needs it: an every-3rd-layer grid (`--layers all` is
the paper's 2..L-2 square) and 3 target prompts per checkpoint, because at this size a single max is noise.
`--protocol paper` switches to the authors' released procedure (source pass after block 0, their stop token and
cut rule, the full grid, one target prompt); docs/describe.md lists every difference. `--control` adds a positive
control: the same grid on the embeddings of a true task description, which should name the classes.

The package reads in the paper's order: `config` (settings, protocols), `procedure` (patch, generate, cut, score),
`scores` (per-checkpoint scores, the primary score, correlations), `report` (plots), `sweep` (the run over
checkpoints as executor units, the positive control, resume). Everything public is importable from here.
"""

from __future__ import annotations

from .config import KIND, DESCRIPTION_METRICS, CUT_CHARS, CUTS, PROTOCOLS, PAPER, COPY_N, COPY_THRESHOLD, DescribeConfig, DescribeResult  # noqa: F401
from .procedure import _checkpoints, _scoring_target, cut, cut_paper, CUTTERS, score_rows, describe_prompt  # noqa: F401
from .scores import _copy_words, demo_overlap, mark_copies, _best, summarize_checkpoint, PRIMARY_SCORE, SCORES, score_of, correlations  # noqa: F401
from .report import _plots  # noqa: F401
from .sweep import CONTROL, DescribeGrid, DescribeJob, _control_text, _control_unit, _control_summary, describe_setup, describe_unit, default_describe_out, describe, _describe  # noqa: F401

__all__ = ['KIND', 'DESCRIPTION_METRICS', 'CUT_CHARS', 'CUTS', 'PROTOCOLS', 'PAPER', 'COPY_N', 'COPY_THRESHOLD', 'DescribeConfig', 'DescribeResult', 'cut', 'cut_paper', 'CUTTERS', 'score_rows', 'describe_prompt', 'demo_overlap', 'mark_copies', 'summarize_checkpoint', 'PRIMARY_SCORE', 'SCORES', 'score_of', 'correlations', 'CONTROL', 'DescribeGrid', 'DescribeJob', 'describe_setup', 'describe_unit', 'default_describe_out', 'describe']
