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



def _two_d(path) -> list[str]:
    from safetensors.torch import load_file

    return [k for k, v in load_file(str(path)).items() if v.dim() == 2]


def test_a_prompt_file_holds_exactly_one_matrix_and_its_init_beside_it(tmp_path):
    """`take the file's first tensor` can only get the trained prompt; the init is in a file of its own."""
    torch.manual_seed(0)
    trained, init = torch.randn(3, 8), torch.randn(3, 8)
    path = SoftPrompt(tensor=trained, init=init).save(tmp_path / "prompt.safetensors")
    assert _two_d(path) == ["prompt"]
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["prompt.safetensors"]  # globs find prompts only
    inits = sorted(tmp_path.glob("init/*.safetensors"))
    assert len(inits) == 1 and _two_d(inits[0]) == ["init"]
    back = SoftPrompt.load(path)
    assert torch.equal(back.tensor, trained) and torch.equal(back.init, init)
    # a second prompt with the same start (a later checkpoint) shares the one init file
    SoftPrompt(tensor=trained + 1, init=init).save(tmp_path / "step-2.safetensors")
    assert sorted(tmp_path.glob("init/*.safetensors")) == inits
    # the init file gone: the prompt still loads, without its start
    inits[0].unlink()
    assert SoftPrompt.load(path).init is None


def test_a_training_run_and_its_checkpoints_hold_one_matrix_each(tiny, tmp_path):
    from conftest import tiny_task
    from softscope.engine.config import TrainConfig
    from softscope.engine.training import list_checkpoints, train

    cfg = TrainConfig(tokens=2, steps=2, batch_size=2, eval_examples=4, checkpoint_every=1, final_eval="none",
                      device="cpu")
    train(cfg, tmp_path / "r", adapter=tiny, task=tiny_task(), progress=False)
    files = [tmp_path / "r" / "prompt.safetensors", *list_checkpoints(tmp_path / "r")]
    assert len(files) == 4
    for f in files:
        assert _two_d(f) == ["prompt"], f
        assert SoftPrompt.load(f).init is not None


def test_old_prompt_files_with_init_inside_still_load(tmp_path):
    """Files written before init files: both tensors in one file; the prompt and its init load as before."""
    import json

    from softscope.engine.runs import save_tensors

    torch.manual_seed(1)
    trained, init = torch.randn(2, 4), torch.randn(2, 4)
    path = save_tensors(tmp_path / "old.safetensors", {"init": init, "prompt": trained},
                        {"softscope": json.dumps({"model": "m", "task": "t", "step": 7})})
    p = SoftPrompt.load(path)
    assert torch.equal(p.tensor, trained) and torch.equal(p.init, init) and p.step == 7 and p.model == "m"


def test_init_file_names_are_never_followed_as_paths(tmp_path):
    import json

    from softscope.engine.runs import save_tensors

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    save_tensors(outside / "0123456789abcdef.safetensors", {"init": torch.ones(2, 4)})
    inner = tmp_path / "p"
    inner.mkdir()
    path = save_tensors(inner / "p.safetensors", {"prompt": torch.zeros(2, 4)},
                        {"softscope": json.dumps({"init_file": "../elsewhere/0123456789abcdef.safetensors"})})
    assert SoftPrompt.load(path).init is None
