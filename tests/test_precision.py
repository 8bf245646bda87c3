"""The compute-dtype chooser: bf16 autocast only where the device computes bf16 natively (issue #18)."""

import pytest
import torch

import softscope.engine.models as models
import softscope.engine.runs as runs
from softscope.engine.config import TrainConfig
from softscope.engine.runs import read_json
from softscope.engine.training import train
from softscope.methods.wayward import PROTOCOLS, WaywardConfig

from conftest import tiny_task

CPU = torch.device("cpu")


def _cpu(monkeypatch, capability: str, bf16: bool) -> None:
    fake = lambda: {"cpu_capability": capability, "cpu_bf16": bf16}  # noqa: E731
    monkeypatch.setattr(models, "cpu_features", fake)
    monkeypatch.setattr(runs, "cpu_features", fake)


def test_auto_is_float32_without_native_bf16(monkeypatch, capsys):
    _cpu(monkeypatch, "AVX2", False)
    use, record = models.choose_autocast("auto", CPU)
    assert use is False and record["compute_dtype"] == "float32" and record["cpu_capability"] == "AVX2"
    assert capsys.readouterr().err == ""  # auto never warns: it just picks float32


def test_auto_is_bf16_with_native_bf16(monkeypatch):
    _cpu(monkeypatch, "AVX512", True)
    use, record = models.choose_autocast("auto", CPU)
    assert use is True and record == {"device": "cpu", "bf16_autocast": "auto", "compute_dtype": "bfloat16",
                                      "cpu_capability": "AVX512", "cpu_bf16": True}


def test_explicit_on_without_bf16_warns_with_the_measured_cost(monkeypatch, capsys):
    _cpu(monkeypatch, "AVX2", False)
    use, _ = models.choose_autocast("on", CPU)
    err = capsys.readouterr().err.strip().splitlines()
    assert use is True and len(err) == 1 and err[0].startswith("warning: --bf16-autocast on: this cpu has no native bf16")
    assert "emulated in software, far slower than float32" in err[0]
    assert models.choose_autocast("off", CPU)[0] is False


def _cpu_view(monkeypatch, tmp_path, flags: str, level: str) -> None:
    """Fake the whole CPU view cpu_features reads: /proc/cpuinfo's flags AND torch's dispatch level."""
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    real = models.Path
    monkeypatch.setattr(models, "Path", lambda p: real(info) if p == "/proc/cpuinfo" else real(p))
    monkeypatch.setattr(models.torch.backends.cpu, "get_cpu_capability", lambda: level)


@pytest.mark.parametrize("flags, level, native", [
    ("fpu avx2 avx512f avx512_bf16", "AVX512", True),   # AVX-512 with native bf16
    ("fpu avx2 avx512f", "AVX512", False),              # AVX-512 without avx512_bf16
    ("fpu avx2 avx512f avx512_bf16", "AVX2", False),    # the flag, but torch dispatches AVX2 kernels
    ("fpu avx2 fma", "AVX2", False),                    # plain AVX2
    ("fpu avx2 amx_bf16 amx_tile", "AVX512", True),     # AMX counts as native bf16
])
def test_cpu_features_reads_flags_and_dispatch_level(monkeypatch, tmp_path, flags, level, native):
    _cpu_view(monkeypatch, tmp_path, flags, level)
    assert models.cpu_features() == {"cpu_capability": level, "cpu_bf16": native}


@pytest.mark.parametrize("view", ["AVX512", "AVX2"])
def test_chooser_follows_the_faked_machine(monkeypatch, tmp_path, view):
    """The chooser end to end on both views of the machine, whatever CPU runs the test."""
    _cpu_view(monkeypatch, tmp_path, "fpu avx2 avx512f avx512_bf16", view)
    use, record = models.choose_autocast("auto", CPU)
    assert use is (view == "AVX512") and record["cpu_capability"] == view
    assert models.bf16_native(CPU) is (view == "AVX512")


def test_bool_is_accepted_from_the_api():
    assert TrainConfig(bf16_autocast=True).bf16_autocast == "on"
    assert TrainConfig(bf16_autocast=False).bf16_autocast == "off"
    assert TrainConfig().bf16_autocast == "off"  # plain training: float32, the same numbers on every CPU


def test_quick_protocol_uses_the_chooser():
    assert PROTOCOLS["quick"]["bf16_autocast"] == "auto"
    assert WaywardConfig(protocol="quick").bf16_autocast == "auto"


@pytest.mark.parametrize("level, native, dtype", [("AVX2", False, "float32"), ("AVX512", True, "bfloat16")])
def test_config_json_records_capability_and_chosen_dtype(tiny, tmp_path, monkeypatch, level, native, dtype):
    _cpu(monkeypatch, level, native)
    cfg = TrainConfig(tokens=2, steps=1, batch_size=2, eval_examples=4, final_eval="none", bf16_autocast="auto",
                      device="cpu")
    train(cfg, tmp_path / "r", adapter=tiny, task=tiny_task(), progress=False)
    saved = read_json(tmp_path / "r" / "config.json")
    assert saved["compute"]["compute_dtype"] == dtype and saved["compute"]["cpu_capability"] == level
    assert saved["machine"] == {"cpu_capability": level, "cpu_bf16": native}


def test_bf16_weight_copies_give_exactly_plain_autocast(tiny_any):
    """The bf16 copies of frozen weights (the fast path) against autocast re-casting them at every call (the plain
    path): the same loss, the same prompt gradient and the same predictions, bit for bit, on every family."""
    from softscope.engine.scoring import Scorer

    task = tiny_task()
    torch.manual_seed(0)
    P = torch.randn(3, tiny_any.width) * 0.5
    rows_of = lambda sc: sc.rows(task.train[:6])  # noqa: E731
    out = {}
    for cached in (False, True):
        sc = Scorer(tiny_any, task, autocast_bf16=True)
        sc.cache_bf16_weights = cached
        p = P.clone().requires_grad_(True)
        loss = sc.label_loss(p, rows_of(sc))
        loss.backward()
        out[cached] = (loss.detach(), p.grad.clone(), sc.class_logprobs(P, rows_of(sc)) if hasattr(sc, "class_logprobs")
                       else None)
    assert torch.equal(out[True][0], out[False][0]) and torch.equal(out[True][1], out[False][1])
    if out[True][2] is not None:
        assert torch.equal(out[True][2], out[False][2])
    # the weights are float32 again outside the context, and the copies are reused, not rebuilt
    lin = next(m for m in tiny_any.model.modules() if type(m) is torch.nn.Linear)
    assert "forward" not in lin.__dict__ and lin.weight.dtype == torch.float32
    assert len(tiny_any._bf16_weights) > 0
