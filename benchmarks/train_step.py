"""Training-step throughput: softscope's prompt-tuning step vs the reference PEFT loop, in one run.

Reference (what the InSPEcT code does): PEFT `get_peft_model` + `PromptTuningConfig`, the text and label word
tokenised together, right-padded to the longest row of a random batch, LM loss on the label tokens computed from
full-vocabulary logits at every position. softscope: the same objective, logits only at the label positions,
batches formed from examples of similar length.

    python benchmarks/train_step.py --examples 160 --batch-size 8

1. On one identical batch of 8 both losses must agree to 1e-4 (same objective).
2. Throughput over the same examples (forward + backward + AdamW step), examples/s and the ratio.
3. A bf16-autocast row with its loss difference on the identical batch.
The loops alternate for --rounds rounds and each reports its best round.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--examples", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each loop is reported")
    ap.add_argument("--json", default=None, help="write the figures here too")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    from softscope.engine.models import load_model
    from softscope.engine.scoring import Scorer
    from softscope.engine.tasks import load_task
    from softscope.engine.training import BatchStream, init_prompt

    adapter = load_model(args.model, device="cpu", dtype="float32")
    task = load_task(args.task)
    tok = adapter.tokenizer
    g = torch.Generator().manual_seed(0)
    P0 = init_prompt(adapter, args.tokens, "vocab", g)
    examples = task.subset("train", args.examples, seed=0)
    B = args.batch_size
    steps = len(examples) // B

    # ---- reference: PEFT prompt tuning with full-vocabulary logits -------------------------------------
    peft_model = get_peft_model(adapter.model, PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=args.tokens, prompt_tuning_init=PromptTuningInit.RANDOM,
        token_dim=adapter.width, num_transformer_submodules=1))
    emb = peft_model.prompt_encoder["default"].embedding
    tok.padding_side = "right"

    def ref_batch(exs):
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

    def ref_loss(exs):
        ids, att, lab = ref_batch(exs)
        return peft_model(input_ids=ids, attention_mask=att, labels=lab).loss

    scorer = Scorer(adapter, task, max_length=10_000)
    scorer_bf16 = Scorer(adapter, task, max_length=10_000, autocast_bf16=True)

    # ---- 1. identical batch, identical prompt → identical loss -----------------------------------------
    batch = examples[:B]
    with torch.no_grad():
        emb.weight.copy_(P0)
        l_ref = float(ref_loss(batch))
        l_ours = float(scorer.label_loss(P0, scorer.rows(batch)))
        l_bf16 = float(scorer_bf16.label_loss(P0, scorer_bf16.rows(batch)))
    diff = abs(l_ref - l_ours)
    print(f"identical batch of {B}: reference loss {l_ref:.6f}  softscope {l_ours:.6f}  |diff| {diff:.2e}"
          f"  ({'OK' if diff < 1e-4 else 'MISMATCH'})   bf16-autocast {l_bf16:.6f} (|diff| {abs(l_bf16 - l_ref):.2e})")

    # ---- 2. throughput over the same examples ------------------------------------------------------------
    def run_reference() -> float:
        with torch.no_grad():
            emb.weight.copy_(P0)
        opt = torch.optim.AdamW([emb.weight], lr=1e-2)
        perm = torch.randperm(len(examples), generator=torch.Generator().manual_seed(1)).tolist()
        t = time.perf_counter()
        for s in range(steps):
            loss = ref_loss([examples[i] for i in perm[s * B:(s + 1) * B]])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    def run_ours(sc: Scorer) -> float:
        P = torch.nn.Parameter(P0.clone())
        opt = torch.optim.AdamW([P], lr=1e-2)
        stream = BatchStream(sc, examples, B, seed=1, bucket=True)
        t = time.perf_counter()
        for s in range(steps):
            loss = sc.label_loss(P, sc.rows([examples[i] for i in stream(s)]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    for p in peft_model.prompt_encoder.parameters():
        p.requires_grad_(True)
    n = steps * B
    # alternate the loops and keep each one's best round: a shared machine's load then biases none of them
    times = {"ref": [], "ours": [], "bf16": []}
    for _ in range(args.rounds):
        times["ref"].append(run_reference())
        times["ours"].append(run_ours(scorer))
        times["bf16"].append(run_ours(scorer_bf16))
        print("round: " + "  ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    t_ref, t_ours, t_bf16 = (min(times[k]) for k in ("ref", "ours", "bf16"))
    rows = [("reference (PEFT, full logits, random batches)", t_ref), ("softscope float32", t_ours),
            ("softscope bf16 autocast", t_bf16)]
    print(f"\n{n} examples ({steps} steps of batch {B}), {torch.get_num_threads()} threads")
    print(f"{'loop':<48} {'seconds':>8} {'examples/s':>11} {'speed-up':>9}")
    for name, t in rows:
        print(f"{name:<48} {t:>8.1f} {n / t:>11.2f} {t_ref / t:>8.2f}x")
    if args.json:
        from softscope.engine.runs import write_json

        write_json(args.json, {"loss_reference": l_ref, "loss_softscope": l_ours, "loss_bf16": l_bf16,
                               "loss_abs_diff": diff, "examples": n, "steps": steps, "batch_size": B,
                               "seconds": {k: v for k, v in rows}, "speedup_fp32": t_ref / t_ours,
                               "speedup_bf16": t_ref / t_bf16})


if __name__ == "__main__":
    main()
