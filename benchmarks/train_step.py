"""Training-step throughput: softscope's prompt-tuning step vs PEFT prompt tuning, paired by round.

    python benchmarks/train_step.py --examples 16 --rounds 5 --threads 2 --json benchmarks/results/train_step.json

Baseline (what the InSPEcT code does): PEFT `get_peft_model` + `PromptTuningConfig`, text and label word
tokenised together, right-padded to the longest row of the batch, the LM loss on the label tokens from
full-vocabulary logits at every position. softscope: the same objective, logits only at the label positions, the
positions every row shares computed once. Every loop trains the same initial prompt on the same batches.

Loops (forward + backward + AdamW, each over the same `steps` batches):
  peft/random, softscope/random   random batches (what PEFT users get): softscope's step alone
  peft/bucket, softscope/bucket   length-bucketed batches (softscope's default): bucketing's share for both
  peft/bf16,   softscope/bf16     bucketed batches, both under bf16 autocast
One round runs every loop once, in an order that rotates each round; a ratio is computed inside a round (load
drifts between rounds on a shared machine) and the report gives the median and the min–max of the per-round
ratios. The torch profiler then splits two bucketed steps of each into forward (head, attention, MLP), backward
and optimizer; padding and the shared prefix are counted on the batches themselves.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

LOOPS = ["peft/random", "softscope/random", "peft/bucket", "softscope/bucket", "peft/bf16", "softscope/bf16"]
# (numerator, denominator, what the ratio says): numerator seconds / denominator seconds = speed-up
RATIOS = [
    ("peft/random", "softscope/random", "softscope step vs PEFT, same random batches (float32)"),
    ("peft/bucket", "softscope/bucket", "softscope step vs PEFT, same bucketed batches (float32)"),
    ("peft/random", "peft/bucket", "what bucketing adds to PEFT (float32)"),
    ("softscope/random", "softscope/bucket", "what bucketing adds to softscope (float32)"),
    ("peft/random", "softscope/bucket", "softscope default vs PEFT as usually run (float32)"),
    ("peft/bf16", "softscope/bf16", "softscope vs PEFT, both bf16 autocast, bucketed"),
    ("peft/bucket", "peft/bf16", "what bf16 autocast adds to PEFT"),
    ("softscope/bucket", "softscope/bf16", "what bf16 autocast adds to softscope"),
]


def summarize(values: list[float]) -> dict:
    """Median and min–max of paired per-round values."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": values}


def make_peft(adapter, task, tokens: int):
    """The baseline: PEFT prompt tuning on the model, as the InSPEcT code trains it → (peft model, prompt embedding,
    loss(examples, bf16) from full-vocabulary logits on right-padded rows with the label tokens appended)."""
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    tok = adapter.tokenizer
    peft_model = get_peft_model(adapter.model, PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=tokens, prompt_tuning_init=PromptTuningInit.RANDOM,
        token_dim=adapter.width, num_transformer_submodules=1))
    emb = peft_model.prompt_encoder["default"].embedding
    for p in peft_model.prompt_encoder.parameters():
        p.requires_grad_(True)
    tok.padding_side = "right"

    def peft_batch(exs):
        texts, labels = [], []
        for ex in exs:
            prefix = tok(task.format(ex), add_special_tokens=True).input_ids
            lab = tok(" " + task.label_words[task.label_index(ex.label)], add_special_tokens=False).input_ids
            texts.append(prefix + lab)
            labels.append([-100] * len(prefix) + lab)
        T = max(map(len, texts))
        ids = torch.full((len(texts), T), tok.pad_token_id)
        att = torch.zeros((len(texts), T), dtype=torch.long)
        lab = torch.full((len(texts), T), -100)
        for i, (t, l) in enumerate(zip(texts, labels)):
            ids[i, :len(t)] = torch.tensor(t)
            att[i, :len(t)] = 1
            lab[i, :len(l)] = torch.tensor(l)
        return ids, att, lab

    def peft_loss(exs, bf16=False):
        ids, att, lab = peft_batch(exs)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            return peft_model(input_ids=ids, attention_mask=att, labels=lab).loss.float()

    return peft_model, emb, peft_loss


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--examples", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2, help="torch threads, pinned for every loop")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-profile", action="store_true", help="skip the torch-profiler breakdown")
    ap.add_argument("--json", default=None, help="write the figures here too")
    args = ap.parse_args(argv)
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parent))
    from provenance import finish_record, start_record

    prov = start_record("benchmarks/train_step.py", list(argv if argv is not None else _sys.argv[1:]))
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    from softscope.engine.models import choose_autocast, load_model
    from softscope.engine.scoring import Scorer
    from softscope.engine.tasks import load_task
    from softscope.engine.training import BatchStream, init_prompt

    auto_bf16, machine = choose_autocast("auto", torch.device("cpu"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16 {'yes' if machine['cpu_bf16'] else 'no'} "
          f"(softscope's auto compute dtype here: {machine['compute_dtype']})", flush=True)
    # bf16 loops only where the CPU computes bf16 natively: emulated, one round would take hours (recorded, not run)
    loops = LOOPS if machine["cpu_bf16"] else [k for k in LOOPS if "bf16" not in k]
    skipped = {} if machine["cpu_bf16"] else {k: f"no native bf16 on this CPU ({machine['cpu_capability']}): "
                                                 "torch would emulate it" for k in LOOPS if "bf16" in k}
    for k, why in skipped.items():
        print(f"skipping {k}: {why}", flush=True)
    adapter = load_model(args.model, device="cpu", dtype="float32")
    task = load_task(args.task)
    P0 = init_prompt(adapter, args.tokens, "vocab", torch.Generator().manual_seed(0))
    examples = task.subset("train", args.examples, seed=0)
    B = args.batch_size
    scorer = Scorer(adapter, task, max_length=10_000)
    scorer_bf16 = Scorer(adapter, task, max_length=10_000, autocast_bf16=True)
    steps = len(examples) // B
    batches = {kind: [BatchStream(scorer, examples, B, seed=1, bucket=kind == "bucket")(s) for s in range(steps)]
               for kind in ("random", "bucket")}

    peft_model, emb, peft_loss = make_peft(adapter, task, args.tokens)

    # ---- the same objective on one identical batch ------------------------------------------------------
    batch = examples[:B]
    with torch.no_grad():
        emb.weight.copy_(P0)
        losses = {"peft": float(peft_loss(batch)), "softscope": float(scorer.label_loss(P0, scorer.rows(batch)))}
        if not skipped:
            losses.update(peft_bf16=float(peft_loss(batch, True)),
                          softscope_bf16=float(scorer_bf16.label_loss(P0, scorer_bf16.rows(batch))))
    diff = abs(losses["peft"] - losses["softscope"])
    print(f"identical batch of {B}: PEFT loss {losses['peft']:.6f}  softscope {losses['softscope']:.6f}  "
          f"|diff| {diff:.2e} ({'OK' if diff < 1e-4 else 'MISMATCH'})", flush=True)

    # ---- padding and shared prefix, counted on the batches the loops use ---------------------------------
    real = sum(len(scorer.row(e).ids) + args.tokens for e in examples[:steps * B])
    layout = {}
    for kind, bs in batches.items():
        padded = sum(len(b) * max(len(scorer.row(examples[i]).ids) for i in b) for b in bs) + steps * B * args.tokens
        shared = [scorer.shared_positions(P0, scorer.rows([examples[i] for i in b])) for b in bs]
        layout[kind] = {"positions": padded, "real_positions": real, "padding_share": 1 - real / padded,
                        "shared_prefix_mean": sum(shared) / len(shared)}
        print(f"{kind} batches: {padded / (steps * B):.1f} positions per row ({100 * (1 - real / padded):.0f}% "
              f"padding); softscope computes {layout[kind]['shared_prefix_mean']:.1f} shared positions once per "
              f"batch", flush=True)

    # ---- timed loops ------------------------------------------------------------------------------------------
    from torch.profiler import record_function  # named ranges: free when no profiler is running

    def step(loss_fn, opt):
        with record_function("forward + loss"):
            loss = loss_fn()
        opt.zero_grad()
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            opt.step()

    def run(loop: str, n_steps: int | None = None) -> float:
        who, kind = loop.split("/")
        bf16 = kind == "bf16"
        bs = batches["random" if kind == "random" else "bucket"][: n_steps or steps]
        if who == "peft":
            with torch.no_grad():
                emb.weight.copy_(P0)
            opt = torch.optim.AdamW([emb.weight], lr=1e-2)
            one = lambda b: step(lambda: peft_loss([examples[i] for i in b], bf16), opt)  # noqa: E731
        else:
            P = torch.nn.Parameter(P0.clone())
            opt = torch.optim.AdamW([P], lr=1e-2)
            sc = scorer_bf16 if bf16 else scorer
            one = lambda b: step(lambda: sc.label_loss(P, sc.rows([examples[i] for i in b])), opt)  # noqa: E731
        t = time.perf_counter()
        for b in bs:
            one(b)
        return time.perf_counter() - t

    run("peft/random", 1)  # warm-up: first-call allocations and lazy init, not timed
    run("softscope/random", 1)
    times: dict[str, list[float]] = {k: [] for k in loops}
    for r in range(args.rounds):
        order = loops[r % len(loops):] + loops[: r % len(loops)]
        for loop in order:
            times[loop].append(run(loop))
        print(f"round {r + 1}: " + "  ".join(f"{k} {times[k][-1]:.1f}s" for k in loops), flush=True)

    n = steps * B
    print(f"\n{n} examples ({steps} steps of batch {B}), {args.rounds} rounds, {torch.get_num_threads()} threads")
    print(f"{'loop':<18} {'median s':>9} {'min–max s':>14} {'examples/s':>11}")
    for k in loops:
        s = summarize(times[k])
        print(f"{k:<18} {s['median']:>9.2f} {s['min']:>6.2f}–{s['max']:<7.2f} {n / s['median']:>11.2f}")
    print(f"\n{'paired speed-up (ratio within each round)':<58} {'median':>7} {'min–max':>13}")
    ratios = {}
    for a, b, what in RATIOS:
        if a not in times or b not in times:
            continue
        s = summarize([x / y for x, y in zip(times[a], times[b])])
        ratios[f"{a} / {b}"] = {"what": what, **s}
        print(f"{what:<58} {s['median']:>6.2f}x {s['min']:>5.2f}–{s['max']:.2f}x")

    # ---- where the time goes: torch profiler on one bucketed step of each -----------------------------------
    profile = {}
    if not args.no_profile:
        profile = {loop: where_time_goes(adapter, lambda loop=loop: run(loop, 2)) for loop in
                   ("peft/bucket", "softscope/bucket")}
        print("\nprofile of 2 bucketed float32 steps (self CPU ms; forward parts from module ranges):")
        keys = list(next(iter(profile.values())).keys())
        print(f"{'part':<22}" + "".join(f"{k:>18}" for k in profile))
        for part in keys:
            print(f"{part:<22}" + "".join(f"{profile[k][part]:>18.0f}" for k in profile))

    if args.json:
        from softscope.engine.runs import write_json

        write_json(args.json, {**finish_record(prov),
            "command": "python benchmarks/train_step.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
            "model": adapter.name, "task": task.name, "examples": n, "steps": steps, "batch_size": B,
            "tokens": args.tokens, "rounds": args.rounds, "threads": torch.get_num_threads(), "machine": machine,
            "losses": losses, "loss_abs_diff": diff, "layout": layout, "seconds": times,
            "ratios": ratios, "profile_ms": profile, "skipped": skipped})


def where_time_goes(adapter, fn) -> dict:
    """Run fn under the torch profiler with ranges on forward, backward and optimizer (set in the step) and on the
    head, attention and MLP modules' forwards; inclusive CPU milliseconds per range."""
    from torch.profiler import ProfilerActivity, profile, record_function

    model = adapter.model
    head = model.get_output_embeddings()
    parts = [("forward: LM head", [head])]
    attn = [m for n, m in model.named_modules() if n.endswith("self_attn")]
    mlp = [m for n, m in model.named_modules() if n.endswith(".mlp")]
    parts += [("forward: attention", attn), ("forward: MLP", mlp)]
    handles, open_ranges = [], {}
    for label, mods in parts:
        for m in mods:
            def pre(mod, a, label=label):
                r = record_function(label)
                r.__enter__()
                open_ranges[id(mod)] = r

            def post(mod, a, out):
                r = open_ranges.pop(id(mod), None)
                if r is not None:
                    r.__exit__(None, None, None)
            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            with record_function("whole"):
                fn()
    finally:
        for h in handles:
            h.remove()
    total = {e.key: e.cpu_time_total / 1000 for e in prof.key_averages()}
    keys = ["forward + loss"] + [label for label, _ in parts] + ["backward", "optimizer", "whole"]
    return {k: total.get(k, 0.0) for k in keys}


if __name__ == "__main__":
    main()
