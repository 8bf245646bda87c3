"""The prompt-tuning loop every method reuses: batches → scoring → loss (+ plug-in terms) → AdamW.

`optimize` is that loop, for one prompt [n, d] or K prompts [K, n, d] on the same batches. `train` runs it for one
prompt inside a run folder (checkpoints, resume, final eval); `train_many` runs it for K prompts in memory
(waywardness trains every γ of a target at once). PEZ plugs in a `prompt_transform`, waywardness a `LossTerm`.

`train` writes a run folder (a `runs.Run` of kind train): config.json, metrics.jsonl, checkpoints/step-XXXX.safetensors
(+ .json with the checkpoint's eval accuracy), state.safetensors (prompt, optimizer, step and metrics in one atomic
file, for --resume) and prompt.safetensors. Data order is a pure function of (seed, epoch), so a resumed run
replays exactly what the killed one would have. A non-finite loss or prompt stops the run (SoftscopeError naming
the step) before anything non-finite is saved; the last checkpoint stays resumable.
"""
# size: the one training loop (single prompt and K prompts at once), its checkpoints, resume state and evaluation: they share private state, and splitting them would put one mechanism in two files.

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..records import CheckpointRow, TrainSummary, Truncated
from .config import TrainConfig
from .carry import record
from .errors import SoftscopeError
from .models import ModelAdapter, choose_autocast, load_model_for, special_ids, token_embeddings
from .prompts import SoftPrompt
from .runs import STATE, Run, fingerprint, register_kind
from .scoring import Scorer
from .stats import interval_of
from .tasks import load_task_for

KIND = register_kind("train", legacy_files=("state.json", STATE))  # the training engine's own run kind


@dataclass
class LossTerm:
    """An extra loss term added to the task loss: fn(prompt [n, d] or [K, n, d]) → scalar. Logged by name."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]


@dataclass
class TrainResult:
    run_dir: Path
    prompt: SoftPrompt
    checkpoints: list[dict] = field(default_factory=list)  # {step, accuracy, path}
    final_accuracy: float | None = None
    seconds: float = 0.0
    final_examples: int = 0  # test examples the final accuracy was measured on (its Wilson interval's n) ...
    test_total: int = 0  # ... out of this many
    truncated: dict = field(default_factory=dict)  # rows whose text was cut to fit max_length


def init_prompt(adapter: ModelAdapter, n: int, how: str, gen: torch.Generator, text: str = "") -> torch.Tensor:
    """Initial prompt [n, d] at the scale of real token embeddings."""
    E = token_embeddings(adapter).detach().float().cpu()
    if how == "vocab":
        special = set(special_ids(adapter))
        ids = []
        while len(ids) < n:
            i = int(torch.randint(0, E.shape[0], (1,), generator=gen))
            if i not in special:
                ids.append(i)
        return E[ids].clone()
    if how == "random":
        return torch.randn(n, E.shape[1], generator=gen) * E.std(0) + E.mean(0)
    ids = adapter.encode(text)
    if not ids:
        raise SoftscopeError("--init text needs a non-empty --init-text")
    ids = (ids * math.ceil(n / len(ids)))[:n]
    return E[ids].clone()


def epoch_batches(scorer: Scorer, examples, batch_size: int, seed: int, epoch: int, bucket: bool) -> list[list[int]]:
    """The batches of one epoch, deterministic in (seed, epoch); bucketing sorts 16-batch windows by length."""
    g = torch.Generator().manual_seed((seed * 100003 + epoch) % 2**64)  # any seed < 2**63 stays in torch's range
    perm = torch.randperm(len(examples), generator=g).tolist()
    if not bucket:
        return [perm[i:i + batch_size] for i in range(0, len(perm) - batch_size + 1, batch_size)]
    window = batch_size * 16
    batches = []
    for w in range(0, len(perm), window):
        chunk = sorted(perm[w:w + window], key=lambda i: (len(scorer.row(examples[i]).ids), i))
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
    order = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in order]


class BatchStream:
    """Step k → batch k, across epochs, recomputable from scratch (this is what makes resume exact)."""

    def __init__(self, scorer, examples, batch_size, seed, bucket):
        if len(examples) < batch_size:
            raise SoftscopeError(f"only {len(examples)} training examples for batch size {batch_size}: lower --batch-size")
        self.args = (scorer, examples, batch_size, seed)
        self.bucket = bucket
        self._epoch, self._batches = -1, []
        self.per_epoch = len(epoch_batches(scorer, examples, batch_size, seed, 0, bucket))

    def __call__(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, epoch_batches(*self.args, epoch, self.bucket)
        return self._batches[k]


def _schedule(cfg: TrainConfig):
    if cfg.schedule == "constant" or cfg.steps == 0:
        return lambda s: 1.0
    return lambda s: max(0.0, 1.0 - s / cfg.steps)


def _save_state(run: Run, P: torch.Tensor, opt: torch.optim.Optimizer, step: int, extra: dict) -> None:
    """Prompt, AdamW moments, step and the metrics so far, committed as one file."""
    st = opt.state[opt.param_groups[0]["params"][0]]
    tensors = {"prompt": P.detach().cpu().contiguous()}
    if st:
        tensors["exp_avg"] = st["exp_avg"].detach().cpu().contiguous()
        tensors["exp_avg_sq"] = st["exp_avg_sq"].detach().cpu().contiguous()
        tensors["adam_step"] = torch.as_tensor(st["step"]).detach().cpu().reshape(1).float()
    run.commit_state(tensors, {"step": step, **extra})


def _load_state(run: Run, P: torch.nn.Parameter, opt: torch.optim.Optimizer) -> tuple[int, list[dict]] | None:
    """(step, metrics) of the committed state, restored into P and opt; None if the run never committed one."""
    loaded = run.load_state()
    if loaded is None:
        return None
    t, meta = loaded
    if t["prompt"].shape != P.shape:
        raise SoftscopeError(f"{run.path / 'state.safetensors'} holds a prompt of shape {list(t['prompt'].shape)}, "
                             f"this run trains {list(P.shape)}: choose another --out")
    with torch.no_grad():
        P.copy_(t["prompt"].to(P.device))
    if "exp_avg" in t:
        opt.state[P] = {"step": t["adam_step"].reshape(()).clone(), "exp_avg": t["exp_avg"].to(P.device),
                        "exp_avg_sq": t["exp_avg_sq"].to(P.device)}
    step = int(meta["step"])
    metrics = meta.get("metrics")
    if metrics is None:  # an older softscope kept the metrics only in metrics.jsonl
        metrics = [m for m in run.read_jsonl("metrics.jsonl") if m["step"] <= step]
    return step, metrics


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's float32 bytes: how a fingerprint records an initial prompt given as a tensor."""
    return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def _check_finite(what: str, value: torch.Tensor, step: int, last: int | None) -> None:
    """Stop training at the first NaN/inf loss or prompt (SoftscopeError naming the step)."""
    if not bool(torch.isfinite(value).all()):
        kept = f"the checkpoint of step {last} stays resumable" if last is not None else "nothing was saved"
        raise SoftscopeError(f"training stopped at step {step}: the {what} is not finite (NaN or inf); lower --lr or "
                             f"set --grad-clip; {kept}")


def train(cfg: TrainConfig, out: str | Path | Run, *, resume: bool | None = False,
          adapter: ModelAdapter | None = None, task=None, loss_terms: list[LossTerm] = (),
          prompt_transform: Callable | None = None, init: torch.Tensor | None = None, progress: bool = True,
          command: str = "train") -> TrainResult:
    """Train one soft prompt; see the module docstring for what lands in `out`.

    `out` is a folder (opened as a train Run, fingerprinted by cfg and `init`) or a Run the caller opened with a
    fuller fingerprint (sweeps: the loss terms' settings) and closes itself. `resume`: True continues a run,
    False refuses an existing one, None continues one if there. `prompt_transform` maps the trained parameters to
    what the model sees (PEZ: nearest-token projection with a straight-through gradient); `loss_terms` add e.g.
    the waywardness distance. `init` overrides cfg.init.
    """
    if isinstance(out, Run):
        return _train(cfg, out, adapter, task, loss_terms, prompt_transform, init, progress)
    inputs = {"init_prompt": tensor_digest(init)} if init is not None else {}
    with Run.open(out, KIND, fingerprint(cfg, **inputs), resume=resume, command=command) as run:
        return _train(cfg, run, adapter, task, loss_terms, prompt_transform, init, progress)


def _train(cfg: TrainConfig, run: Run, adapter, task, loss_terms, prompt_transform, init, progress) -> TrainResult:
    t0 = time.time()
    adapter = adapter or load_model_for(cfg)
    task = task or load_task_for(cfg)  # bad input fails here, before anything is written
    scorer = Scorer(adapter, task, max_length=cfg.max_length, verbalizer=cfg.verbalizer,  # bad lengths fail here
                    placement=getattr(cfg, "placement", "after_bos"))
    scorer.check_fits(cfg.tokens if init is None else init.shape[-2], task.train + task.test)
    use_bf16, compute = choose_autocast(cfg.bf16_autocast, adapter.device, announce=progress)  # prints: after checks
    scorer.autocast_bf16 = use_bf16
    random.seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    P0 = init if init is not None else init_prompt(adapter, cfg.tokens, cfg.init, gen, cfg.init_text)
    if P0.shape[-1] != adapter.width:
        raise SoftscopeError(f"initial prompt width {P0.shape[-1]} != model width {adapter.width}")
    P = torch.nn.Parameter(P0.detach().clone().float().to(adapter.device))
    opt = torch.optim.AdamW([P], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))
    eval_set = task.subset("test", cfg.eval_examples or None, cfg.seed)
    final_set = task.test if cfg.final_eval == "full" else eval_set
    settings = record(task, adapter, scorer, task_spec=task.origin, data_dir=cfg.data_dir,
                      seed=cfg.seed, max_train=cfg.max_train, max_test=cfg.max_test,
                      test_examples=None if final_set is task.test or len(final_set) == len(task.test)
                      else len(final_set))
    P_init = P0.detach().float().cpu().clone()
    stream = BatchStream(scorer, task.train, cfg.batch_size, cfg.seed, cfg.bucket)

    def make_prompt(step: int, acc: float | None, t: torch.Tensor | None = None) -> SoftPrompt:
        return SoftPrompt(tensor=(P if t is None else t).detach().float().cpu().clone(), model=adapter.name,
                          task=task.name, template=task.template, label_words=list(task.label_words),
                          classes=list(task.classes), step=step, accuracy=acc,
                          extra={"seed": cfg.seed, "init": cfg.init, "run": str(run.path),
                                 "eval_examples": len(eval_set) if acc is not None else None},
                          settings=settings, init=P_init)

    def seen() -> torch.Tensor:
        return prompt_transform(P) if prompt_transform else P

    metrics: list[dict] = []
    start = 0
    loaded = _load_state(run, P, opt) if run.existing else None
    if loaded is not None:
        start, metrics = loaded
        run.write_jsonl("metrics.jsonl", metrics)  # what the state committed (rows after it, or a torn line, go)
        sched.last_epoch = start  # continue the schedule where the killed run was
        for g_ in opt.param_groups:
            g_["lr"] = g_["initial_lr"] * _schedule(cfg)(start)
    else:
        run.write_config(cfg, task=task.to_dict(), compute=compute, eval_subset_size=len(eval_set),
                         settings=settings,
                         model_info={"name": adapter.name, "source": adapter.source, "layers": adapter.n_layers,
                                     "width": adapter.width, "tied_embeddings": adapter.tied_embeddings})
    last = [start]  # the step of the last committed (finite) checkpoint

    def checkpoint(step: int) -> None:
        with torch.no_grad():
            acc = scorer.accuracy(seen(), eval_set, cfg.eval_batch_size, progress=f"eval step {step}" if progress else False)
        make_prompt(step, acc, seen()).save(run.file(f"checkpoints/step-{step:05d}.safetensors"))
        metrics.append({"step": step, "event": "eval", "eval_accuracy": acc, "eval_examples": len(eval_set)})
        run.write_jsonl("metrics.jsonl", metrics)
        _save_state(run, P, opt, step, {"seconds": time.time() - t0, "metrics": metrics})
        last[0] = step

    if loaded is None:  # a resumed run already holds its step-0 checkpoint (and its metrics row)
        checkpoint(0)

    def on_step(done: int, _P: torch.Tensor) -> bool:
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            checkpoint(done)
        return False

    optimize(cfg, scorer, task.train, P, opt, sched, stream, start=start, metrics=metrics, loss_terms=loss_terms,
             prompt_transform=prompt_transform, on_step=on_step, last=last, progress=progress,
             desc=f"train {task.name}")

    final_acc = None
    if cfg.final_eval != "none":
        with torch.no_grad():
            final_acc = scorer.accuracy(seen(), final_set, cfg.eval_batch_size,
                                        progress="final eval" if progress else False)
    prompt = make_prompt(cfg.steps, final_acc, seen())
    prompt.extra["final_eval"] = cfg.final_eval
    prompt.save(run.file("prompt.safetensors"))
    if prompt_transform is not None:  # keep the continuous parameters too (PEZ)
        make_prompt(cfg.steps, None).save(run.file("prompt_continuous.safetensors"))
    final_n = len(final_set)
    cks = [{"step": m["step"], "accuracy": m["eval_accuracy"], "examples": m["eval_examples"],
            "ci95": interval_of(m["eval_accuracy"], m["eval_examples"]),
            "path": f"checkpoints/step-{m['step']:05d}.safetensors"} for m in metrics if m["event"] == "eval"]
    result = TrainResult(run_dir=run.path, prompt=prompt, checkpoints=cks, final_accuracy=final_acc,
                         seconds=time.time() - t0, final_examples=final_n, test_total=len(task.test),
                         truncated={"train": scorer.truncated(task.train), "test": scorer.truncated(final_set),
                                    "max_length": cfg.max_length})
    run.write_json("train_summary.json", TrainSummary(
        task=task.name, model=adapter.name, tokens=cfg.tokens, steps=cfg.steps, final_accuracy=final_acc,
        final_eval=cfg.final_eval, final_eval_examples=final_n, test_examples_total=len(task.test),
        final_ci95=interval_of(final_acc, final_n) if final_acc is not None else None,
        truncated=Truncated(**result.truncated), checkpoints=[CheckpointRow(**c) for c in cks],
        seconds=result.seconds))
    return result


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint prompt files of a run, in step order."""
    return sorted(Path(run_dir, "checkpoints").glob("step-*.safetensors"))


def evaluate(prompt: SoftPrompt, cfg=None, adapter: ModelAdapter | None = None, task=None, progress: bool = True,
             allow_other_task: bool = False, scorer: Scorer | None = None) -> dict:
    """Accuracy of a saved prompt on a task's test set, scored with `scorer` (e.g. `carry.Reading.scorer`, whose
    task `carry.resolve` already checked), else with cfg's max length (default: the prompt's own), the prompt's
    verbalizer and placement. A task with other classes or label words than the prompt's is refused unless
    `allow_other_task`.
    """
    adapter = adapter or load_model_for(cfg)
    prompt.check_width(adapter.width, adapter.name)
    task = task or (scorer.task if scorer is not None else load_task_for(cfg))
    if scorer is None:
        prompt.check_task(task, allow_other_task)
        own = prompt.settings
        scorer = Scorer(adapter, task, max_length=getattr(cfg, "max_length", None) or own.get("max_length") or 80,
                        verbalizer=getattr(cfg, "verbalizer", None) or own.get("verbalizer") or "auto",
                        placement=prompt.placement)
    scorer.check_fits(prompt.n_tokens, task.test, option=None)
    lp = scorer.predict(prompt.tensor, task.test, getattr(cfg, "eval_batch_size", 32), progress="eval" if progress else False)
    gold = torch.tensor([scorer.row(e).label for e in task.test])
    pred = lp.argmax(-1)
    per_class = {c: float((pred[gold == i] == i).float().mean()) if (gold == i).any() else None
                 for i, c in enumerate(task.classes)}
    acc = float((pred == gold).float().mean())
    return {"accuracy": acc, "examples": len(task.test), "ci95": interval_of(acc, len(task.test)),
            "per_class_recall": per_class,
            "truncated": scorer.truncated(task.test), "max_length": scorer.max_length,
            "predictions": pred.tolist(), "gold": gold.tolist(), "logprobs": lp.tolist()}


def train_many(cfg: TrainConfig, inits: torch.Tensor, *, adapter: ModelAdapter | None = None, task=None,
               loss_terms: list[LossTerm] = (), progress: bool = True,
               on_step: Callable[[int, torch.Tensor], bool] | None = None) -> tuple[torch.Tensor, list[dict]]:
    """Train K equal-length prompts [K, n, d] in one batched pass per step; no checkpoints or run dir.

    Every prompt sees the same batch stream, schedule and AdamW settings as `train`, with the gradient clipped
    per prompt, so prompt k ends where a separate `train(cfg, init=inits[k])` would (up to float rounding).
    Loss terms map [K, n, d] to [K] (one value per prompt) or to a scalar. `on_step(step, prompts)` is called
    before the first step (step 0) and after every step; returning True ends training there (early stopping).
    Returns (prompts, per-step metrics).
    """
    adapter = adapter or load_model_for(cfg)
    task = task or load_task_for(cfg)
    use_bf16, _ = choose_autocast(cfg.bf16_autocast, adapter.device)
    scorer = Scorer(adapter, task, max_length=cfg.max_length, verbalizer=cfg.verbalizer, autocast_bf16=use_bf16)
    if inits.dim() != 3 or inits.shape[-1] != adapter.width:
        raise SoftscopeError(f"train_many needs initial prompts [K, n, {adapter.width}], got {list(inits.shape)}")
    scorer.check_fits(inits.shape[1], task.train + task.test)
    K = inits.shape[0]
    P = torch.nn.Parameter(inits.detach().clone().float().to(adapter.device))
    opt = torch.optim.AdamW([P], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))
    stream = BatchStream(scorer, task.train, cfg.batch_size, cfg.seed, cfg.bucket)
    if on_step is not None and on_step(0, P.detach()):
        return P.detach().float().cpu(), []
    metrics = optimize(cfg, scorer, task.train, P, opt, sched, stream, loss_terms=loss_terms, on_step=on_step,
                       progress=progress, desc=f"train {K} prompts")
    return P.detach().float().cpu(), metrics


def optimize(cfg: TrainConfig, scorer: Scorer, examples, P: torch.nn.Parameter, opt: torch.optim.Optimizer,
             sched, stream: BatchStream, *, start: int = 0, metrics: list[dict] | None = None,
             loss_terms: list[LossTerm] = (), prompt_transform: Callable | None = None,
             on_step: Callable[[int, torch.Tensor], bool] | None = None, last: list[int] | None = None,
             progress: bool = True, desc: str = "train") -> list[dict]:
    """The one prompt-tuning loop: steps start..cfg.steps of label loss (+ loss terms) → AdamW, on P [n, d] (one
    prompt, as `train` holds it) or P [K, n, d] (K prompts on the same batches, as `train_many` holds them).

    Per step: the batch `stream(step)`, the label loss of what the model sees (`prompt_transform(P)`, e.g. PEZ's
    straight-through projection, else P), the loss terms on P, backward, the gradient clipped per prompt, AdamW and
    the schedule. A non-finite loss or prompt stops it (naming `last[0]`, the last committed checkpoint).
    `on_step(step, P)` runs after every step; True ends the loop. Returns `metrics` with one row per step appended.
    """
    batched = P.dim() == 3
    K = P.shape[0] if batched else 1
    metrics = [] if metrics is None else metrics
    bar = tqdm(range(start, cfg.steps), desc=desc, disable=not progress, initial=start, total=cfg.steps)
    for step in bar:
        rows = scorer.rows([examples[i] for i in stream(step)])
        seen = prompt_transform(P) if prompt_transform else P
        if batched:  # every prompt on the same B rows, in one pass of K·B rows
            B = len(rows)
            task_loss = scorer.label_loss_per_row(seen.repeat_interleave(B, 0), rows * K).view(K, B).mean(-1)
            loss = task_loss.sum()
        else:
            loss = task_loss = scorer.label_loss(seen, rows)
        logged = {"step": step + 1, "event": "train", "loss": task_loss.tolist() if batched else task_loss.item(),
                  "lr": opt.param_groups[0]["lr"]}
        for term in loss_terms:  # a term maps P to a scalar or (batched) to one value per prompt
            v = term.fn(P)
            loss = loss + (v.sum() if batched else v)
            logged[term.name] = v.tolist() if v.dim() else v.item()
        committed = last[0] if last is not None else None
        _check_finite("loss", loss.detach(), step + 1, committed)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip and batched:  # each prompt's gradient clipped on its own, as K separate runs would
            with torch.no_grad():
                norm = P.grad.flatten(1).norm(dim=1)
                P.grad.mul_((cfg.grad_clip / (norm + 1e-6)).clamp(max=1.0)[:, None, None])
        elif cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_([P], cfg.grad_clip)
        opt.step()
        sched.step()
        _check_finite("prompt", P.detach(), step + 1, committed)
        metrics.append(logged)
        if not batched:
            bar.set_postfix(loss=f"{logged['loss']:.3f}")
        if on_step is not None and on_step(step + 1, P.detach()):
            break
    bar.close()
    return metrics
