"""Prompt waywardness: soft prompts that solve a task while their projection reads as any text you choose.

Khashabi et al. 2022, "Prompt Waywardness: The Curious Case of Discretized Interpretation of Continuous
Prompts" (NAACL). For a target text t of n tokens, train an n-token prompt P on

    L = CE_task(P) + γ · Σ_i ‖p_i − e(t_i)‖² / n        (e = the frozen input embeddings, with any embed scale)

then project P by Euclidean nearest neighbour and score the decoded projection against t with SQuAD word F1
(prompt-F1). The claim: for most targets some γ gives F1 ≥ 0.9 within ~2% of the γ = 0 accuracy, and larger
models are more wayward. The authors' public scripts compute the γ term but never hand γ to training (every γ
ran as 0); here the term is a `training.LossTerm` that really enters the loss, and tests check that it does.

Settings (paper): γ ∈ {0, 1e-4, 5e-4, 1e-3, 3e-3, 5e-3, 1e-2, 3e-2}, AdamW lr 0.01, linear decay, grad clip 1.0,
templates "It was %s ." (SST-2/5), "Subject: %s." (AG News), "Q: %s :" (TREC), "It's all %s ." (SUBJ).
Protocols (see PROTOCOLS): `paper` is the authors' driver as released (every γ from e(t), 2000 steps, train seeds
1/10/100 averaged, F1 > 0.98, their selection rule); `cpu` is a CPU-sized test of the claim (γ = 0 and γ > 0 from
the same start, each early-stopped on dev accuracy, the drop with a paired bootstrap interval); `quick` is the
older 16-step subset and `full` the paper's targets and γ grid with softscope's own training (not the paper's).

Outputs (run dir): config.json, wayward.jsonl (one row per target × γ, appended as each finishes, so a killed
sweep resumes where it stopped), prompts/*.safetensors, wayward_summary.json, f1_vs_accuracy.png,
drop_vs_length.png. `compare` tabulates several sweeps (e.g. two models) side by side.

The package reads in the paper's order: `config` (the settings and protocols), `targets` (the target texts),
`objective` (the loss term and the readings), `sweep` (training every target × γ, resumable), `report` (selection,
statistics, tables, plots). Everything public is importable from `softscope.methods.wayward`.
"""

from __future__ import annotations

from .config import KIND, PAPER_GAMMAS, N_BOOT, PAPER_LONG_TASKS, PAPER_LABEL_WORDS, PROTOCOLS, WaywardConfig  # noqa: F401
from .targets import _targets_dir, read_targets, protocol_targets, load_targets  # noqa: F401
from .objective import target_embeddings, distance, embedding_mean_sq_norm, distance_term, reading, safe_name  # noqa: F401
from .sweep import _task_for, _wayward_train_cfg, _start, dev_split, EarlyStop, WaywardContext, SWEEP_ONLY, context_config, wayward_setup, wayward_unit, run_wayward, GROWABLE  # noqa: F401
from .report import seed_means, select, per_target, summarize_wayward, plot_wayward, compare, compare_table, target_table, compare_plot  # noqa: F401


__all__ = ['KIND', 'PAPER_GAMMAS', 'N_BOOT', 'PAPER_LONG_TASKS', 'PAPER_LABEL_WORDS', 'PROTOCOLS', 'WaywardConfig', 'read_targets', 'protocol_targets', 'load_targets', 'target_embeddings', 'distance', 'embedding_mean_sq_norm', 'distance_term', 'reading', 'safe_name', 'dev_split', 'EarlyStop', 'WaywardContext', 'SWEEP_ONLY', 'context_config', 'wayward_setup', 'wayward_unit', 'run_wayward', 'GROWABLE', 'seed_means', 'select', 'per_target', 'summarize_wayward', 'plot_wayward', 'compare', 'compare_table', 'target_table', 'compare_plot']
