"""Bias probe: does an elaborated InSPEcT reveal a biased feature that a soft prompt learned?

Reference: Ramati et al., "Eliciting Textual Descriptions from Representations of Continuous Prompts"
(InSPEcT, Findings of ACL 2024), whose elaborated variant (code never released) claims descriptions expose
biased features and that their presence correlates with biased predictions (docs/methods.md §4, bias probe).
softscope makes that a controlled experiment:

1. make-data: plant an irrelevant feature (`word:Spielberg`, `phrase:"as seen on TV"`, `punct:!!`) so it is in
   exactly a share (1 + S)/2 of the favoured class's training examples and (1 − S)/2 of every other class's
   (nested, seeded choices; examples that already contain it are dropped); test splits stay clean, plus
   counterfactual copies with the feature added / removed;
2. train one prompt per strength × seed with `training.train` on the biased train split;
3. biased-prediction rate: on held-out clean examples not predicted as the favoured class, the share that
   moves to it when the feature is added, minus the same share for a neutral control feature;
4. elaborated InSPEcT (`describe.describe_prompt` with the cue-naming pools of `target_prompts`) over a layer
   grid; bias-mention rate = share of descriptions that name the feature or a close paraphrase, by string
   match or by sentence-embedding similarity of a 1–3-word span of the description;
5. correlation (Pearson, Spearman, p-values) of mention rate with biased-prediction rate over all prompts,
   a per-strength table and a scatter plot.

Defaults are cut for a shared 2-core CPU (say so in results): 7 tokens, 30 steps at batch 8 on 240 examples
(one epoch), lr 3e-2; 100 held-out examples; layer grid every 8th layer (2, 10, 18, 26: 16 pairs) × 2 target
prompts × 20 new tokens = 32 descriptions per prompt.

The package reads in that order: `features` (the planted feature, biased splits, counterfactuals, make-data),
`metrics` (biased-prediction rate, bias-mention rate), `sweep` (BiasRunConfig, one unit per strength × seed, the
positive control, rescoring), `report` (summary and plot). Everything public is importable from
`softscope.methods.bias`.
"""

from __future__ import annotations

from ...engine.metrics import unexpected_words  # noqa: F401  (imported from here by tests and scripts, as before)
from .features import (CLAUSE_BREAKS, CONTROLS, DATA_KIND, FEATURE_KINDS, INSERT_WINDOW, PUNCT_NAMES,  # noqa: F401
                       BiasedData, Feature, MakeDataConfig, _favoured, biased_task, control_for, counterfactuals,
                       load_base_task, make_biased, make_data, target_share)
from .metrics import (biased_prediction_rate, embedding_mention, flip_rate, mention_rate, mention_scores,  # noqa: F401
                      score_mentions, string_mention)
from .report import plot_bias, summarize_bias  # noqa: F401
from .sweep import (GROWABLE, KIND, POSITIVE, BiasContext, BiasRunConfig, _bias_train_cfg, _prompt_name,  # noqa: F401
                    bias_context, bias_setup, bias_unit, measure_prompt, positive_control, positive_control_text,
                    rescore_mentions, run)

__all__ = ["CLAUSE_BREAKS", "CONTROLS", "DATA_KIND", "FEATURE_KINDS", "INSERT_WINDOW", "PUNCT_NAMES", "BiasedData",
           "Feature", "MakeDataConfig", "biased_task", "control_for", "counterfactuals", "load_base_task", "make_biased",
           "make_data", "target_share", "biased_prediction_rate", "embedding_mention", "flip_rate", "mention_rate",
           "mention_scores", "score_mentions", "string_mention", "plot_bias", "summarize_bias", "GROWABLE", "KIND",
           "POSITIVE",
           "BiasContext", "BiasRunConfig", "bias_context", "bias_setup", "bias_unit", "measure_prompt",
           "positive_control", "positive_control_text", "rescore_mentions", "run", "unexpected_words"]
