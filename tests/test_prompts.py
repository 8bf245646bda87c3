"""SoftPrompt files and PEFT prompt-tuning adapters, round-tripped through peft itself."""

import pytest
import torch

from softscope.engine.errors import SoftscopeError
from softscope.engine.prompts import SoftPrompt, export_peft, import_peft


def test_save_load_keeps_tensor_and_metadata(tmp_path):
    p = SoftPrompt(torch.randn(7, 32), model="m", task="sst2", template="S : {text} L :", label_words=["a", "b"],
                   classes=["x", "y"], step=25, accuracy=0.5, extra={"seed": 3})
    path = p.save(tmp_path / "p.safetensors")
    q = SoftPrompt.load(path)
    assert torch.equal(p.tensor, q.tensor)
    assert (q.model, q.task, q.step, q.accuracy, q.extra["seed"]) == ("m", "sst2", 25, 0.5, 3)
    assert (tmp_path / "p.json").exists()


def test_peft_round_trip_through_peft(tmp_path):
    from peft import PeftModel

    from conftest import make_adapter

    tiny = make_adapter("llama")  # peft wraps the model: keep the shared fixture untouched
    p = SoftPrompt(torch.randn(5, tiny.width), model="tiny")
    out = export_peft(p, tmp_path / "adapter")
    peft_model = PeftModel.from_pretrained(tiny.model, out)
    loaded = peft_model.prompt_encoder["default"].embedding.weight.detach()
    assert torch.allclose(loaded, p.tensor)
    # and peft's own save reads back through softscope
    peft_model.save_pretrained(tmp_path / "again")
    q = SoftPrompt.load(tmp_path / "again")
    assert torch.allclose(q.tensor, p.tensor)


def test_width_mismatch_is_a_clear_error():
    p = SoftPrompt(torch.randn(3, 64), model="big-model")
    with pytest.raises(SoftscopeError, match="width 64.*width 32.*--model big-model"):
        p.check_width(32, "tiny")


def test_not_a_prompt_file(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"nonsense")
    with pytest.raises(SoftscopeError, match="not a safetensors prompt"):
        SoftPrompt.load(tmp_path / "x.safetensors")
    with pytest.raises(SoftscopeError, match="no prompt.safetensors"):
        SoftPrompt.load(tmp_path)
    with pytest.raises(SoftscopeError):
        import_peft(tmp_path)

