"""RLPrompt: discrete prompts from a policy trained with soft Q-learning, with an optional fluency reward.

Deng et al. 2022, "RLPrompt: Optimizing Discrete Text Prompts with Reinforcement Learning"; the
interpretability reward and the "fluent" sampling mode follow Patel et al. 2025, "Towards Interpretable Soft
Prompts" (docs/methods.md §6).

- Policy: the frozen LM plus a trainable MLP (d → 2048 → d, ReLU, tiny init) between its last hidden state and
  its head. Its logits are the Q-values. It samples L-token prompts from the document start (top-k 256), or, in
  fluent mode, only among the frozen LM's own top-k next tokens.
- Reward on the task LM (the same frozen model, the prompt's token embeddings before the text, scored by the
  shared Scorer): per input, gap = p(correct label) − max p(other label) over the label words; ×200 when
  correct, ×180 when not; averaged over the step's inputs. Interpretability: − λ · NLL_LM(prompt) (mean token
  NLL after the document start). Per step the rewards of the K prompts are z-scored, then mapped linearly from
  [0, 1] to [0, 5] (RLPrompt's classification shaping).
- Soft Q-learning, on-policy, sparse terminal reward: the mean of the single-step (v2) and multi-step (v3)
  path-consistency losses of the RLPrompt code, with a target network updated by Polyak averaging (0.001).
- Selection: every eval_every steps the greedy prompt is scored on held-out examples; the best one is tested.

Paper settings: 16 prompts × 16 inputs per step, lr 5e-5, shaping to [0, 5], 12,000 steps (hours on a GPU).
Defaults here: 8 prompts × 8 inputs, lr 5e-5, 100 steps, shaping to [0, 50], and the uniform value offset
(uniform_value_offset): without it the value targets push every sampled token up whatever its reward and the
policy drifts to the same sub-word with or without a reward (measured; docs/discrete.md). Every setting of
RLPrompt's code is an option (--value-offset none, --shaping-new 0,5, --mlp-init xavier).
"""
# size: RLPrompt is one algorithm (policy, soft Q-learning loss, value offset, rewards, the sweep): its parts only make sense together, read top to bottom.

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..engine.carry import record
from ..engine.config import LR, SEED, ModelOptions, TaskOptions, option, validate
from ..engine.errors import SoftscopeError
from ..engine.executor import PLACEMENT_FIELDS, ExecutorOptions, Unit, sub_run
from ..engine.metrics import perplexity
from ..engine.models import ModelAdapter, cache_kwarg, last_hidden, lm_logits, load_model, load_model_for, returned_cache
from ..engine.prompts import SoftPrompt
from ..engine.runs import Run, fingerprint, read_json, register_kind, save_figure
from ..engine.scoring import Scorer, token_nll
from ..engine.sweeps import SweepContext, WeightSweep, plan_weights, plot_curves, sweep_settings, sweep_setup
from ..engine.tasks import holdout_task, load_task_for

KIND = register_kind("rlprompt")


@dataclass
class RLPromptConfig(ModelOptions, TaskOptions, ExecutorOptions):
    """RLPrompt: soft Q-learning of a prompt policy, one run per fluency weight (one executor unit each)."""

    policy: str = option("", "policy LM (default: the task model; a different model must share its tokenizer)")
    tokens: int = option(5, "prompt length L (tokens)", ge=1)
    steps: int = option(100, "training steps (paper: 12000)", ge=0)
    prompts_per_step: int = option(8, "prompts K sampled per step (paper: 16)", ge=2,
                              why="the rewards of a step are z-scored")
    batch_size: int = option(8, "task inputs each prompt is scored on per step (paper: 16)", ge=1)
    lr: float = option(5e-5, "Adam learning rate of the MLP (paper: 5e-5; 1e-3 collapses the policy in ~4 steps)", **LR)
    hidden: int = option(2048, "MLP hidden width", ge=1)
    top_k: int = option(256, "sample among the policy's top-k tokens", ge=1)
    fluent: bool = option(False, "fluent mode: sample only among the frozen LM's own top-k next tokens")
    fluent_top_k: int = option(20, "k of the fluent mode", ge=1)
    fluency_weight: list[float] = option([0.0], "lambda of the reward term -lambda*NLL_LM(prompt), one run each", ge=0)
    correct_coeff: float = option(200.0, "gap reward factor when the prediction is right", ge=0)
    incorrect_coeff: float = option(180.0, "gap reward factor when it is wrong", ge=0)
    zscore: bool = option(True, "z-score the rewards of the prompts of a step")
    shaping_old: list[float] = option([0.0, 1.0], "reward shaping: linear map from [old_min, old_max] ...")
    shaping_new: list[float] = option([0.0, 50.0], "... to [new_min, new_max] (paper: 0,5; see docs/discrete.md for why 50)")
    target_polyak: float = option(1e-3, "target network update: theta' <- (1-tau) theta' + tau theta", gt=0, le=1)
    mlp_init: str = option("normal", "MLP weight init: normal (std 1e-4) or xavier (RLPrompt's code: Xavier-uniform, "
                                     "gain 1e-4); biases -1e-4 in both",
                           choices=("normal", "xavier"))
    value_offset: str = option("uniform", "uniform (add the uniform policy's soft value-to-go to the target values, "
                                   "so an untrained policy moves only where rewards push it) or none (RLPrompt's "
                                   "code; see docs/discrete.md)",
                               choices=("none", "uniform"))
    grad_clip: float = option(5.0, "clip the MLP gradient to this global norm (RLPrompt's trainer: 5; 0 = off)", ge=0)
    eval_every: int = option(20, "score the greedy prompt on the held-out set every this many steps", ge=1)
    eval_examples: int = option(100, "held-out examples for selection", ge=0)
    holdout: int = option(300, "held-out examples cut from train when the task has no dev split", ge=1)
    test_examples: int = option(0, "test examples for the selected prompt (0 = the whole test set, -1 = skip)", ge=-1)
    max_length: int = option(80, "truncate formatted inputs to this many tokens", ge=1)
    eval_batch_size: int = option(32, "batch size for evaluation", ge=1)
    seed: int = option(0, "seed for the policy init, sampling and data order", **SEED)

    def __post_init__(self) -> None:
        self.fluency_weight = [float(w) for w in (self.fluency_weight or [0.0])]
        self.shaping_old = [float(x) for x in self.shaping_old]
        self.shaping_new = [float(x) for x in self.shaping_new]
        validate(self)
        ExecutorOptions.__post_init__(self)
        if len(self.shaping_old) != 2 or len(self.shaping_new) != 2 or self.shaping_old[0] == self.shaping_old[1]:
            raise SoftscopeError("--shaping-old and --shaping-new take two numbers: min,max (old min != old max)")


# ---- reward ---------------------------------------------------------------------------------------------
def gap_reward(class_logprobs: torch.Tensor, labels: torch.Tensor, correct_coeff: float = 200.0,
               incorrect_coeff: float = 180.0) -> torch.Tensor:
    """Per-input RLPrompt reward [B]: (p_label − max p_other) × 200 if right, × 180 if wrong (p over label words)."""
    p = class_logprobs.float().softmax(-1)
    p_label = p.gather(1, labels[:, None])[:, 0]
    p_other = p.scatter(1, labels[:, None], -1.0).max(-1).values
    gap = p_label - p_other
    return gap * torch.where(gap > 0, correct_coeff, incorrect_coeff)


def shape_rewards(r: torch.Tensor, zscore: bool = True, old=(0.0, 1.0), new=(0.0, 5.0)) -> torch.Tensor:
    """z-score across the step's prompts (population std + 1e-4, as RLPrompt), then map [old] linearly to [new]."""
    if zscore:
        r = (r - r.mean()) / (r.std(unbiased=False) + 1e-4)
    return (r - old[0]) * (new[1] - new[0]) / (old[1] - old[0]) + new[0]


def mean_token_nll(adapter: ModelAdapter, ids: torch.Tensor) -> torch.Tensor:
    """Mean token NLL [K] of each prompt row of ids [K, L] after the document start (scoring.token_nll), without
    a gradient: the reward's fluency term (scoring.prompt_nll is one prompt's, with a gradient into its embeddings)."""
    return token_nll(adapter, ids).mean(-1).cpu()


# ---- policy ---------------------------------------------------------------------------------------------
class PromptPolicy(torch.nn.Module):
    """Frozen LM + trainable MLP before its head: Q(s, ·) = head(MLP(h_s)), h_s the LM's last hidden state."""

    def __init__(self, adapter: ModelAdapter, hidden: int = 2048, init: str = "normal"):
        super().__init__()
        self.adapter = adapter
        d = adapter.width
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, d))
        for m in self.mlp:
            if isinstance(m, torch.nn.Linear):  # tiny init: the policy starts near uniform
                if init == "xavier":  # RLPrompt's code: Xavier-uniform with gain 1e-4
                    torch.nn.init.xavier_uniform_(m.weight, gain=1e-4)
                else:
                    torch.nn.init.normal_(m.weight, std=1e-4)
                torch.nn.init.constant_(m.bias, -1e-4)
        self.mlp.to(adapter.device)

    def q_values(self, states: torch.Tensor, fluent_top_k: int | None = None) -> torch.Tensor:
        """Q(s, ·) [..., V]; in fluent mode −inf outside the frozen LM's top-k next tokens (RLPrompt masks the
        logits themselves, so V = logsumexp runs over the allowed tokens in training as in sampling)."""
        q = lm_logits(self.adapter, self.mlp(states)).float()
        if fluent_top_k:
            allowed = lm_logits(self.adapter, states).float().topk(fluent_top_k, -1).indices
            q = torch.full_like(q, float("-inf")).scatter(-1, allowed, q.gather(-1, allowed))
        return q

    @torch.no_grad()
    def rollout(self, K: int, L: int, gen: torch.Generator | None, top_k: int = 256, fluent_top_k: int | None = None,
                greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample K prompts of L tokens from the document start. Returns (ids [K, L], LM states [K, L, d]).

        The LM is frozen, so its states depend on the sampled tokens only: training recomputes Q from them."""
        a = self.adapter
        base = a.model.base_model
        kw = cache_kwarg(base)
        seq = torch.full((K, 1), a.doc_start_id, device=a.device)
        out = base(input_ids=seq, use_cache=True)
        states, ids = [], []
        for t in range(L):
            s = last_hidden(out)[:, -1]
            q = self.q_values(s, fluent_top_k)
            if greedy:
                nxt = q.argmax(-1)
            else:
                kth = q.topk(min(top_k, q.shape[-1]), -1).values[:, -1:]
                q = q.masked_fill(q < kth, float("-inf"))
                nxt = torch.multinomial(q.softmax(-1).cpu(), 1, generator=gen)[:, 0].to(a.device)
            states.append(s)
            ids.append(nxt)
            seq = torch.cat([seq, nxt[:, None]], 1)
            if t + 1 < L:  # feed the new token through the cached prefix (no cache: the whole prefix again)
                cache = returned_cache(out, kw)
                out = (base(input_ids=nxt[:, None], use_cache=True, **{kw: cache}) if cache is not None
                       else base(input_ids=seq, use_cache=True))
        return torch.stack(ids, 1), torch.stack(states, 1)


def sql_loss(q: torch.Tensor, q_target: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
             value_offset: torch.Tensor | None = None) -> torch.Tensor:
    """Soft Q-learning with a terminal reward: mean of the single-step (v2) and multi-step (v3) losses.

    q, q_target [K, L, V] (policy and target network), actions [K, L], rewards [K]. Summed over steps,
    averaged over prompts, like RLPrompt's "v2_v2r_v3_v3r" loss without the reversed terms. value_offset [K, L]
    (optional) is added to the target values V'_t: a Q-function of the form head(MLP(h)) + c_t (c_t constant),
    which leaves the policy unchanged (see uniform_value_offset).
    """
    Q = q.gather(2, actions[..., None])[..., 0]
    V = q.logsumexp(-1)
    A = Q - V
    V_ = q_target.logsumexp(-1).detach()
    if value_offset is not None:
        V_ = V_ + value_offset
    # v2: A_t ≈ V'_{t+1} − V'_t, and at the last step r − V'_T
    A_tgt = torch.cat([V_[:, 1:] - V_[:, :-1], (rewards - V_[:, -1])[:, None]], 1)
    v2 = F.mse_loss(A, A_tgt, reduction="none")
    # v3: Σ_{s ≥ t} A_s ≈ r − V'_t
    A_sum = A.flip(1).cumsum(1).flip(1)
    v3 = F.mse_loss(A_sum, rewards[:, None] - V_, reduction="none")
    return ((v2 + v3) / 2).sum(1).mean()


def uniform_value_offset(q: torch.Tensor) -> torch.Tensor:
    """c_t = Σ_{s>t} ln n_s [K, L] (n_s: tokens the policy may choose at step s, i.e. finite Q-values): the soft
    value-to-go of the uniform policy with no reward.

    With zero reward the soft-optimal values fall by ln n per remaining step, V_t = Σ_{s≥t} ln n_s. An untrained
    MLP gives nearly the same V' ≈ ln n at every position, so the targets ask A = log π ≈ 0 of every sampled token
    and push whatever was sampled up by ~ln n nats, reward or not (the drift measured in docs/discrete.md). Adding
    c_t to V' (a constant per position: the policy is unchanged) makes the untrained policy the zero-reward fixed
    point, so only the rewards move it."""
    logn = torch.isfinite(q).sum(-1).clamp(min=1).float().log().detach()
    return logn.flip(-1).cumsum(-1).flip(-1) - logn


# ---- one training step ----------------------------------------------------------------------------------
def prompt_rewards(cfg: RLPromptConfig, weight: float, adapter: ModelAdapter, scorer: Scorer, ids: torch.Tensor,
                   rows: list) -> dict:
    """Rewards of K prompts ids [K, L], each scored on the same task rows: task gap reward, NLL, raw and shaped.

    raw = task − λ · NLL_LM(prompt); shaped = z-score over the K prompts, then the linear map (RLPrompt)."""
    K, B = ids.shape[0], len(rows)
    labels = torch.tensor([r.label for r in rows])
    with torch.no_grad():  # every prompt on the same B inputs, in one batch of K·B rows
        P = adapter.embed(ids.to(adapter.device))  # [K, L, d]
        lp = scorer.class_logprobs(P.repeat_interleave(B, 0), rows * K).cpu().view(K, B, -1)
        task_r = torch.stack([gap_reward(lp[k], labels, cfg.correct_coeff, cfg.incorrect_coeff).mean()
                              for k in range(K)])
        acc = (lp.argmax(-1) == labels[None]).float().mean(1)
        nll = mean_token_nll(adapter, ids) if weight > 0 else None
        raw = task_r - weight * nll if nll is not None else task_r
        shaped = shape_rewards(raw, cfg.zscore, cfg.shaping_old, cfg.shaping_new)
    return {"task": task_r, "accuracy": acc, "nll": nll, "raw": raw, "shaped": shaped}


def policy_update(policy: PromptPolicy, target: torch.nn.Module, opt: torch.optim.Optimizer, cfg: RLPromptConfig,
                  ids: torch.Tensor, states: torch.Tensor, shaped: torch.Tensor) -> dict:
    """One soft Q-learning step on sampled prompts and their shaped rewards, gradient clipping, Polyak target update.

    Returns the loss and what says whether the policy is collapsing: its mean entropy over the visited states
    (nats; uniform = ln V), how many of the K prompts differ, the share of the commonest token, and
    reward_grad_ratio = |g(r) − g(0)| / |g(0)|: how much of the gradient the rewards decide (the loss is
    quadratic in its targets, so g(r) − g(0) is the part that depends on r; the rest comes from the values alone)."""
    dev = policy.adapter.device
    fk = cfg.fluent_top_k if cfg.fluent else None
    params = list(policy.mlp.parameters())
    q = policy.q_values(states, fk)
    with torch.no_grad():
        qt = lm_logits(policy.adapter, target(states)).float()
        if fk:
            qt = qt.masked_fill(torch.isinf(q), float("-inf"))
    ids = ids.to(dev)
    off = uniform_value_offset(q) if cfg.value_offset == "uniform" else None
    g0 = torch.autograd.grad(sql_loss(q, qt, ids, torch.zeros_like(shaped).to(dev), off), params, retain_graph=True)
    loss = sql_loss(q, qt, ids, shaped.to(dev), off)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        n0 = torch.sqrt(sum((g ** 2).sum() for g in g0))
        nr = torch.sqrt(sum(((p.grad - g) ** 2).sum() for p, g in zip(params, g0)))
    gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
    opt.step()
    with torch.no_grad():  # Polyak target update
        for pt, p in zip(target.parameters(), params):
            pt.mul_(1 - cfg.target_polyak).add_(p, alpha=cfg.target_polyak)
        logp = q.detach().log_softmax(-1)
        entropy = torch.special.entr(logp.exp()).sum(-1).mean().item()
    flat = ids.flatten()
    return {"loss": loss.item(), "grad_norm": float(gnorm), "reward_grad_ratio": float(nr / n0) if n0 > 0 else None,
            "entropy": entropy, "distinct_prompts": len({tuple(r) for r in ids.tolist()}),
            "top_token_share": int(flat.bincount().max()) / flat.numel()}


# ---- training -------------------------------------------------------------------------------------------
def rl_settings(cfg: RLPromptConfig, weight: float, policy: ModelAdapter) -> dict:
    """One weight's sub-run settings (the fingerprint its folder records): the sweep's settings, weight and policy."""
    settings = fingerprint(cfg, rlprompt=sweep_settings(cfg), fluency_weight=weight, policy=policy.name)
    settings.pop("config")  # the sweep's settings (rlprompt) say it all
    return settings


def run_rlprompt(cfg: RLPromptConfig, weight: float, out: str | Path, adapter: ModelAdapter, task,
                 policy_adapter: ModelAdapter | None = None, progress: bool = True, label: str | None = None) -> dict:
    """Train one policy at fluency weight λ = `weight`; select the greedy prompt by held-out accuracy; test it.

    The sub-run folder `out` is reused when it holds a finished run with the same settings (and refused when its
    settings differ); an unfinished one (RLPrompt keeps no resume state) is trained again from the start. `label`
    is the folder the hard prompt records as its run (default `out`; a Ray worker writes a scratch copy of it)."""
    pa = policy_adapter or adapter
    with Run.open(out, KIND, rl_settings(cfg, weight, pa)) as run:
        if run.existing and (run.path / "rlprompt_summary.json").exists():  # finished with these settings: reuse it
            return read_json(run.path / "rlprompt_summary.json")
        return _train_rlprompt(cfg, weight, run, adapter, task, pa, progress, label or str(run.path))


def _train_rlprompt(cfg: RLPromptConfig, weight: float, run: Run, adapter: ModelAdapter, task, pa: ModelAdapter,
                    progress: bool, label: str) -> dict:
    t0 = time.time()
    if pa.vocab_size != adapter.vocab_size or pa.encode("a test") != adapter.encode("a test"):
        raise SoftscopeError(f"policy {pa.name} and task model {adapter.name} do not share a tokenizer: "
                             "pick a policy of the same family")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    policy = PromptPolicy(pa, cfg.hidden, cfg.mlp_init)
    target = copy.deepcopy(policy.mlp).requires_grad_(False)
    opt = torch.optim.Adam(policy.mlp.parameters(), lr=cfg.lr)
    held, held_name = holdout_task(task, cfg.holdout, cfg.seed)
    evalset = held.subset("test", cfg.eval_examples or None, cfg.seed)
    scorer = Scorer(adapter, task, max_length=cfg.max_length)
    scorer.check_fits(cfg.tokens, task.train + task.test)
    train_rows = scorer.rows(held.train)
    fluent_k = cfg.fluent_top_k if cfg.fluent else None
    K, B = cfg.prompts_per_step, cfg.batch_size

    def heldout(ids: list[int]) -> float:
        return scorer.accuracy(adapter.embed(torch.tensor(ids)), evalset, cfg.eval_batch_size)

    metrics, evals, best = [], [], None

    def evaluate(step: int) -> None:
        nonlocal best
        ids = policy.rollout(1, cfg.tokens, None, fluent_top_k=fluent_k, greedy=True)[0][0].tolist()
        row = {"step": step, "event": "eval", "ids": ids, "text": adapter.decode(ids), "heldout_accuracy": heldout(ids)}
        metrics.append(row)
        evals.append(row)
        if best is None or row["heldout_accuracy"] > best["heldout_accuracy"]:
            best = row

    evaluate(0)
    bar = tqdm(range(cfg.steps), desc=f"rlprompt {task.name} λ={weight:g}", disable=not progress)
    for step in bar:
        ids, states = policy.rollout(K, cfg.tokens, gen, cfg.top_k, fluent_k)
        idx = torch.randint(0, len(train_rows), (B,), generator=gen).tolist()
        rw = prompt_rewards(cfg, weight, adapter, scorer, ids, [train_rows[i] for i in idx])
        upd = policy_update(policy, target, opt, cfg, ids, states, rw["shaped"])
        task_r, acc = rw["task"], rw["accuracy"]
        nll = rw["nll"] if rw["nll"] is not None else (mean_token_nll(adapter, ids) if step % 10 == 0 else None)
        k_best = int(task_r.argmax())
        metrics.append({"step": step + 1, "event": "train", **upd, "reward_task": task_r.mean().item(),
                        "reward_raw": rw["raw"].mean().item(), "reward_task_std": task_r.std(unbiased=False).item(),
                        "train_accuracy": acc.mean().item(), "prompt_nll": None if nll is None else nll.mean().item(),
                        "best_sample": adapter.decode(ids[k_best].tolist()), "best_sample_reward": task_r[k_best].item()})
        bar.set_postfix(reward=f"{task_r.mean().item():.1f}", acc=f"{acc.mean().item():.2f}")
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            evaluate(step + 1)
        run.write_jsonl("metrics.jsonl", metrics)  # every step: a long run can be watched while it trains
    bar.close()
    run.write_jsonl("metrics.jsonl", metrics)
    run.save_tensors("policy.safetensors", {**{f"mlp.{k}": v for k, v in policy.mlp.state_dict().items()},
                                              **{f"target.{k}": v for k, v in target.state_dict().items()}})

    test = task.subset("test", cfg.test_examples or None, cfg.seed) if cfg.test_examples >= 0 else []
    ids = best["ids"]
    acc = scorer.accuracy(adapter.embed(torch.tensor(ids)), test, cfg.eval_batch_size,
                          progress="test" if progress else False) if test else None
    text = adapter.decode(ids)
    SoftPrompt(tensor=adapter.embed(torch.tensor(ids)).detach().float().cpu(), model=adapter.name, task=task.name,
               template=task.template, label_words=list(task.label_words), classes=list(task.classes),
               step=best["step"], accuracy=acc,
               extra={"method": "rlprompt", "ids": ids, "text": text, "fluency_weight": weight, "run": label},
               settings=record(task, adapter, scorer, task_spec=task.origin, data_dir=cfg.data_dir, seed=cfg.seed,
                               max_train=cfg.max_train, max_test=cfg.max_test,
                               test_examples=len(test) if test and len(test) < len(task.test) else None)
               ).save(run.file("hard_prompt.safetensors"))
    summary = {"method": "rlprompt", "task": task.name, "model": adapter.name, "policy": pa.name,
               "fluency_weight": weight, "fluent": cfg.fluent, "tokens": cfg.tokens, "steps": cfg.steps, "ids": ids,
               "text": text, "selected_step": best["step"], "heldout": held_name,
               "heldout_accuracy": best["heldout_accuracy"], "test_accuracy": acc, "test_examples": len(test),
               "perplexity": perplexity(adapter, ids), "seconds": time.time() - t0,
               "curve": [{"step": e["step"], "heldout_accuracy": e["heldout_accuracy"], "text": e["text"]} for e in evals],
               "reward_curve": [{"step": m["step"], "reward_task": m["reward_task"], "reward_raw": m["reward_raw"]}
                                for m in metrics if m["event"] == "train"]}
    run.write_json("rlprompt_summary.json", summary)
    return summary


GROWABLE = ("fluency_weight", *PLACEMENT_FIELDS)  # a resumed sweep may add weights or run elsewhere


def rlprompt_unit(ctx: SweepContext, unit: Unit) -> tuple[dict, dict | None]:
    """One weight of an RLPrompt sweep, here or on a Ray worker: its summary, and from a worker its sub-run's files.

    Depends only on the config and the weight (the policy init, sampling and data order are seeded by the config)."""
    a = unit.args
    return sub_run(a["dir"], ctx.in_place, lambda d: run_rlprompt(a["cfg"], a["weight"], d, ctx.adapter, ctx.task,
                                                                  ctx.policy, ctx.progress, label=a["dir"]))


def rlprompt_plan(cfg: RLPromptConfig, run: Run, policy: ModelAdapter, prefix: str = "") -> WeightSweep:
    """The sweep's units (keys `<prefix>w-<weight>`): every weight without a finished sub-run in <run>/w-<weight>/."""
    return plan_weights(run, "rlprompt", cfg.fluency_weight,
                        lambda w: ("rlprompt", rl_settings(cfg, w, policy), "rlprompt"), "rlprompt_summary.json",
                        {"cfg": cfg, "tuner": "rlprompt"}, prefix)


def rlprompt_finish(sweep: WeightSweep, task, adapter: ModelAdapter) -> dict:
    """rlprompt.jsonl, rlprompt_summary.json and the two plots once every weight is done; returns the summary."""
    rows, summary = sweep.finish(task.name, adapter.name, drop=("reward_curve",))
    plot_curves(rows, sweep.run.file("rlprompt_curves.png"), "heldout_accuracy",
                f"RLPrompt on {task.name} (greedy prompt)")
    plot_rewards(rows, sweep.run.file("rlprompt_rewards.png"), task.name)
    return summary


def rlprompt(cfg: RLPromptConfig, out: str | Path, adapter: ModelAdapter | None = None, task=None,
             progress: bool = True) -> dict:
    """RLPrompt sweep over cfg.fluency_weight: one sub-run per weight (w-<weight>/), a table, curve plots."""
    with Run.open(out, KIND, fingerprint(cfg), growable=GROWABLE) as run:
        adapter = adapter or load_model_for(cfg)
        task = task or load_task_for(cfg)
        pa = (load_model(cfg.policy, device=cfg.device, dtype=cfg.dtype) if cfg.policy and cfg.policy != adapter.name
              else adapter)
        run.write_config(cfg, task=task.to_dict())
        sweep = rlprompt_plan(cfg, run, pa)
        sweep.execute(rlprompt_unit, SweepContext(adapter, task, pa, progress=progress), setup=sweep_setup,
                      setup_args=(cfg,), options=cfg, progress=progress)
        return rlprompt_finish(sweep, task, adapter)


def plot_rewards(rows: list[dict], path: Path, task_name: str) -> None:
    """Mean task reward of the sampled prompts per step (smoothed over 10 steps), one line per weight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for r in rows:
        c = r["reward_curve"]
        y = torch.tensor([p["reward_task"] for p in c])
        if len(y) >= 10:
            y = torch.nn.functional.avg_pool1d(y[None, None], 10, 1)[0, 0]
        ax.plot(range(len(c) - len(y) + 1, len(c) + 1), y.tolist(), label=f"λ={r['fluency_weight']:g}")
    ax.set_xlabel("step")
    ax.set_ylabel("task reward (gap × 200/180)")
    ax.set_title(f"RLPrompt rewards on {task_name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
