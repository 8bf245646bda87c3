"""torch.compile (CPU inductor) of the model under softscope's training step: compile time, then paired step times
against eager on the same batch, and the loss/gradient difference (compiled kernels reorder float sums).

    OMP_NUM_THREADS=2 python benchmarks/compile_step.py --rounds 5 --json benchmarks/results/compile_step.json

A measurement of the one roofline candidate not taken (benchmarks/roofline.py): the step on one fixed bucketed batch
of 8 (the shapes of a real run vary by batch, so a real run would recompile per shape or need dynamic shapes; the
compile time is reported separately).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import finish_record, start_record  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rec = start_record("benchmarks/compile_step.py", list(argv if argv is not None else sys.argv[1:]))

    from softscope.engine.models import load_model
    from softscope.engine.scoring import Scorer
    from softscope.engine.tasks import load_task
    from softscope.engine.training import BatchStream, init_prompt

    adapter = load_model("smollm2-135m", device="cpu", dtype="float32")
    task = load_task("sst2")
    scorer = Scorer(adapter, task, max_length=10_000, share_prefix=False)  # one forward per step: one graph
    examples = task.subset("train", 48, seed=0)
    batch = [examples[i] for i in BatchStream(scorer, examples, 8, seed=1, bucket=True)(0)]
    rows = scorer.rows(batch)
    P0 = init_prompt(adapter, 7, "vocab", torch.Generator().manual_seed(0))

    def step():
        P = torch.nn.Parameter(P0.clone())
        loss = scorer.label_loss(P, rows)
        loss.backward()
        return float(loss), P.grad.clone()

    eager_loss, eager_grad = step()
    base = adapter.model.base_model
    eager_forward = base.forward
    t0 = time.perf_counter()
    compiled = torch.compile(base.forward, dynamic=False)
    base.forward = compiled
    comp_loss, comp_grad = step()  # the first call compiles forward and backward
    compile_s = time.perf_counter() - t0

    def timed(compiled_on: bool) -> float:
        base.forward = compiled if compiled_on else eager_forward
        t = time.perf_counter()
        step()
        return time.perf_counter() - t

    secs = {"eager": [], "compiled": []}
    for r in range(args.rounds):
        for k in (("eager", "compiled") if r % 2 == 0 else ("compiled", "eager")):
            secs[k].append(timed(k == "compiled"))
        print(f"round {r + 1}: eager {secs['eager'][-1]:.3f}s  compiled {secs['compiled'][-1]:.3f}s", flush=True)
    ratios = [a / b for a, b in zip(secs["eager"], secs["compiled"])]
    out = {"compile_s": compile_s, "seconds": secs,
           "ratio_eager_over_compiled": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
                                         "rounds": ratios},
           "loss_eager": eager_loss, "loss_compiled": comp_loss, "loss_abs_diff": abs(eager_loss - comp_loss),
           "grad_max_abs_diff": float((eager_grad - comp_grad).abs().max()),
           "grad_max_abs": float(eager_grad.abs().max()), "batch_positions": sum(len(r.ids) for r in rows) + 8 * 7}
    print(json.dumps({k: v for k, v in out.items() if k != "seconds"}, indent=1))
    if args.json:
        rec.update(out)
        Path(args.json).write_text(json.dumps(finish_record(rec), indent=1) + "\n")


if __name__ == "__main__":
    main()
