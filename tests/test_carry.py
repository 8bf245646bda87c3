"""A prompt carries its task (#17): reading commands score it with its own settings, overrides are printed and
recorded, meaning changes need --allow-other-task, truncation never drops the input, one verbalizer definition,
honest summaries, movement from the initialisation, demo copies in describe, PEFT placement and base model."""

import json
import re
from pathlib import Path

import pytest
import torch

from conftest import run_cli as run
from softscope.engine.prompts import SoftPrompt
from softscope.engine.tasks import Example, Task

WORDS_POS = ["the movie was great", "loved this film", "great fun plot", "it was really good"]
WORDS_NEG = ["the movie was awful", "hated this film", "boring awful plot", "it was really bad"]


def write_rows(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def review_folder(tmp_path_factory):
    """A user's single-text task with its own column names ("review", "category") and its own classes."""
    d = tmp_path_factory.mktemp("reviews")
    for split, n in (("train", 16), ("test", 10)):
        rows = []
        for i in range(n):
            rows.append({"review": WORDS_POS[i % 4], "category": "good"})
            rows.append({"review": WORDS_NEG[i % 4], "category": "bad"})
        write_rows(d / f"{split}.jsonl", rows)
    return d


@pytest.fixture(scope="module")
def pair_folder(tmp_path_factory):
    """A sentence-pair task (premise/hypothesis) whose second texts are long."""
    d = tmp_path_factory.mktemp("pairs")
    long_b = " ".join(["the plot of this film was not very fun"] * 4)  # 36 words
    for split, n in (("train", 8), ("test", 6)):
        rows = []
        for i in range(n):
            rows.append({"premise": WORDS_POS[i % 4], "hypothesis": long_b + " great", "label": "yes"})
            rows.append({"premise": WORDS_NEG[i % 4], "hypothesis": long_b + " awful", "label": "no"})
        write_rows(d / f"{split}.jsonl", rows)
    return d


def train(tmp_path, capsys, model_dir, task, *extra):
    out = tmp_path / "run"
    code, stdout, err = run(["train", "--task", str(task), "--tokens", "2", "--steps", "2", "--batch-size", "4",
                             "--checkpoint-every", "2", "--model", str(model_dir), "--device", "cpu",
                             "--out", str(out), *extra], capsys)
    assert code == 0, err
    return out, stdout


# ---- 1. what a prompt remembers ----------------------------------------------------------------------------
def test_prompt_and_run_record_settings(tiny_model_dir, review_folder, tmp_path, capsys):
    out, _ = train(tmp_path, capsys, tiny_model_dir, review_folder, "--max-length", "40", "--label-words",
                   "bad,good", "--template", "Review : {text} Label :")
    p = SoftPrompt.load(out / "prompt.safetensors")
    s = p.settings
    assert s["task"] == str(review_folder.resolve())
    assert (s["text_column"], s["label_column"], s["text_b_column"]) == ("review", "category", None)
    assert s["template"] == "Review : {text} Label :" and s["label_words"] == ["bad", "good"]
    assert s["classes"] == ["bad", "good"] and s["verbalizer"] == "first" and s["max_length"] == 40
    assert s["placement"] == "after_bos" and s["model"] == str(tiny_model_dir)
    assert s["model_path"] == str(Path(tiny_model_dir).resolve())
    assert json.loads((out / "config.json").read_text())["settings"] == s


def test_eval_defaults_to_the_prompts_own_task_and_reproduces_its_accuracy(tiny_model_dir, review_folder, tmp_path,
                                                                          capsys, monkeypatch):
    out, _ = train(tmp_path, capsys, tiny_model_dir, review_folder, "--label-words", "bad,good", "--max-length", "12",
                   "--eval-examples", "7", "--final-eval", "subset")
    recorded = SoftPrompt.load(out / "prompt.safetensors").accuracy
    monkeypatch.chdir(tmp_path)  # another folder: the recorded absolute task path still finds the data
    code, stdout, err = run(["eval", str(out), "--json"], capsys)
    assert code == 0, err
    s = json.loads(stdout)
    assert s["task"] == review_folder.name and s["accuracy"] == recorded
    assert (s["examples"], s["test_total"]) == (7, 20) and s["overrides"] == []
    assert s["settings"]["max_length"] == 12 and s["settings"]["label_words"] == ["bad", "good"]
    code, stdout, _ = run(["eval", str(out)], capsys)
    assert "on 7 of 20 test examples" in stdout


def test_eval_override_is_printed_and_recorded(tiny_model_dir, review_folder, tmp_path, capsys):
    out, _ = train(tmp_path, capsys, tiny_model_dir, review_folder, "--label-words", "bad,good")
    code, stdout, err = run(["eval", str(out), "--max-length", "9", "--out", str(tmp_path / "ev")], capsys)
    assert code == 0, err
    assert "override: max_length = 9 (the prompt's: 80)" in stdout
    saved = json.loads((tmp_path / "ev" / "eval_summary.json").read_text())
    assert saved["overrides"] == [{"field": "max_length", "recorded": 80, "used": 9}]
    assert json.loads((tmp_path / "ev" / "config.json").read_text())["overrides"] == saved["overrides"]


def test_other_classes_or_template_need_allow_other_task(tiny_model_dir, review_folder, tiny_task_file, tmp_path,
                                                        capsys):
    out, _ = train(tmp_path, capsys, tiny_model_dir, review_folder, "--label-words", "bad,good")
    before = sorted(p.name for p in out.rglob("*"))
    code, _, err = run(["eval", str(out), "--task", str(tiny_task_file)], capsys)
    assert code == 2 and "--allow-other-task" in err and "classes negative, positive" in err
    code, _, err = run(["eval", str(out), "--template", "Text : {text} Answer :"], capsys)
    assert code == 2 and "--allow-other-task" in err and "template" in err
    code, _, err = run(["eval", str(out), "--label-words", "awful,great"], capsys)
    assert code == 2 and "label words awful, great instead of its bad, good" in err
    assert sorted(p.name for p in out.rglob("*")) == before
    code, stdout, err = run(["eval", str(out), "--template", "Text : {text} Answer :", "--allow-other-task"], capsys)
    assert code == 0, err
    assert "override: template = 'Text : {text} Answer :'" in stdout and "override: meaning" in stdout


def test_describe_finds_a_user_folder_task_from_another_folder(tiny_model_dir, review_folder, tmp_path, capsys,
                                                               monkeypatch):
    out, _ = train(tmp_path, capsys, tiny_model_dir, review_folder, "--label-words", "bad,good")
    from softscope.methods.describe import DescribeConfig, _scoring_target

    monkeypatch.chdir(tmp_path)
    name, classes, refs = _scoring_target(SoftPrompt.load(out / "prompt.safetensors"), DescribeConfig())
    assert name == review_folder.name and classes == ["bad", "good"] and refs  # generic references from the classes


# ---- 2. truncation ----------------------------------------------------------------------------------------
def test_pair_truncation_cuts_both_texts_proportionally_and_keeps_the_template(tiny, pair_folder):
    from softscope.engine.scoring import Scorer
    from softscope.engine.tasks import load_task

    task = load_task(str(pair_folder), template="question : {text} answer : {text_b} Label :")
    sc = Scorer(tiny, task, max_length=30)
    ex = task.test[0]  # premise 4 words, hypothesis 37 words; template 6 tokens; BOS none on the tiny tokenizer
    r = sc.row(ex)
    assert r.truncated and len(r.ids) <= 30
    text = tiny.decode(r.ids)
    assert text.startswith("question : ") and " answer : " in text and text.endswith(" Label :")
    a, b = text[len("question : "):].split(" answer : ")
    b = b[: -len(" Label :")]
    # 41 text tokens, 24 kept: premise keeps round(24 * 4 / 41) = 2, hypothesis 22 (never dropped whole)
    assert (len(a.split()), len(b.split())) == (2, 22)
    assert sc.truncated(task.test) == len(task.test)


def test_template_that_does_not_fit_is_an_error(tiny, review_folder):
    from softscope.engine.errors import SoftscopeError
    from softscope.engine.scoring import Scorer
    from softscope.engine.tasks import load_task

    task = load_task(str(review_folder), label_words=["bad", "good"])
    with pytest.raises(SoftscopeError, match="--max-length 3 leaves no room for the input"):
        Scorer(tiny, task, max_length=3).row(task.test[0])


def test_eval_reports_truncated_rows(tiny_model_dir, pair_folder, tmp_path, capsys):
    out, stdout = train(tmp_path, capsys, tiny_model_dir, pair_folder, "--max-length", "30")
    assert "truncated to max length 30" in stdout
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["truncated"] == {"train": 16, "test": 12, "max_length": 30}
    code, stdout, err = run(["eval", str(out), "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["truncated"] == 12
    code, stdout, err = run(["eval", str(out), "--max-length", "128"], capsys)
    assert "truncated: 0 of 12" in stdout


# ---- 3. every option an error message names exists -----------------------------------------------------------
def test_every_option_named_in_a_message_exists():
    import click

    from softscope.cli import cli

    known = set()

    def walk(cmd):
        for p in cmd.params:
            known.update(o for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", []) if o.startswith("--"))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(cli)
    src = Path(__file__).resolve().parents[1] / "src" / "softscope"
    named = {}
    for f in src.rglob("*.py"):
        if f.name == "executor.py":  # ExecutorOptions (--executor, --ray-address...) are not on the CLI yet (#16)
            continue
        for m in re.finditer(r"(?<![\w-])(--[a-z][a-z0-9-]+)", f.read_text()):
            named.setdefault(m.group(1), f.name)
    # pip's flags in install hints, click's --help, the demo script's own argparse flag, the "--no-" prefix builder
    others = ("--no-deps", "--force-reinstall", "--help", "--fresh", "--no-")
    missing = {o: f for o, f in named.items() if o not in known and o not in others}
    assert not missing, missing
    for cmd in ("eval", "interpret", "describe", "explain"):
        opts = {o for p in cli.commands[cmd].params for o in getattr(p, "opts", [])}
        assert {"--template", "--text-b-column", "--max-length"} <= opts, cmd
    assert isinstance(cli, click.Group)


# ---- 4. one verbalizer definition for loss and accuracy -----------------------------------------------------------
def test_multi_token_loss_is_minus_the_class_score(tiny):
    from softscope.engine.scoring import Scorer

    ex = [Example("the movie was great", "positive"), Example("the movie was awful", "negative")]
    task = Task("t", ["negative", "positive"], ["very bad", "very good"], "Sentence : {text} Label :", "Sentence",
                [], ex, ex, [], "tests")
    sc = Scorer(tiny, task, verbalizer="full")
    P = torch.randn(2, tiny.width) * 0.02
    rows = sc.rows(ex)
    lp = sc.class_logprobs(P, rows)
    gold = torch.tensor([r.label for r in rows])
    expect = -lp[torch.arange(2), gold].mean()
    assert sc.label_loss(P, rows).item() == pytest.approx(expect.item(), abs=1e-5)
    # "first" (distinct first tokens): loss is the first token's cross-entropy only
    task2 = Task("t", ["negative", "positive"], ["bad very", "good very"], task.template, "Sentence", [], ex, ex, [],
                 "tests")
    sc2 = Scorer(tiny, task2, verbalizer="first")
    lp2 = sc2.class_logprobs(P, rows)
    assert sc2.label_loss(P, rows).item() == pytest.approx(-lp2[torch.arange(2), gold].mean().item(), abs=1e-5)


# ---- 5. honest summaries and movement from the initialisation ------------------------------------------------------
def test_train_summary_says_which_test_set(tiny_model_dir, review_folder, tmp_path, capsys):
    _, stdout = train(tmp_path, capsys, tiny_model_dir, review_folder, "--label-words", "bad,good", "--max-test", "8")
    assert "final test accuracy (full):" in stdout  # the whole (8-example) test set the run used
    _, stdout = train(tmp_path / "b", capsys, tiny_model_dir, review_folder, "--label-words", "bad,good",
                      "--final-eval", "subset", "--eval-examples", "5")
    assert "final test accuracy (5 of 20):" in stdout


def test_project_reports_movement_and_warns_when_the_prompt_hardly_moved(tiny_model_dir, review_folder, tmp_path,
                                                                          capsys):
    out, _ = train(tmp_path, capsys, tiny_model_dir, review_folder, "--label-words", "bad,good", "--lr", "1e-7")
    p = SoftPrompt.load(out / "prompt.safetensors")
    first = SoftPrompt.load(out / "checkpoints" / "step-00000.safetensors").tensor
    assert torch.equal(p.init, first)
    expect = ((p.tensor - first).norm(dim=-1) / first.norm(dim=-1)).tolist()
    code, stdout, err = run(["project", str(out), "--json"], capsys)
    assert code == 0, err
    moved = json.loads(stdout)["movement"]
    assert moved["relative"] == pytest.approx(expect, abs=1e-7) and max(expect) < 0.01
    assert "hardly moved" in moved["warning"]
    code, stdout, _ = run(["project", str(out)], capsys)
    assert "warning: the prompt has hardly moved" in stdout
    # a prompt that moved: no warning
    from softscope.engine.projection import movement

    p.tensor = p.init * 1.5
    m = movement(p)
    assert m["warning"] is None and m["relative"] == pytest.approx([0.5, 0.5], abs=1e-6)


# ---- 6. describe: descriptions that copy a target-prompt demonstration ------------------------------------------
def test_demo_copies_are_flagged_and_left_out_of_best():
    from softscope.methods.describe import COPY_THRESHOLD, demo_overlap, summarize_checkpoint

    demos = ["Identify the language this text is written in: English, French, German, Spanish",
             "Classify how formal the message is: formal, informal"]
    copy = "of the text: English, French, German, Spanish"
    # words: of the text english french german spanish; the run "english french german spanish" (4 words) is in
    # the first demo: 4 of 7 words covered
    assert demo_overlap(copy, demos) == pytest.approx(4 / 7)
    assert demo_overlap("classify how formal the review is", demos) == pytest.approx(4 / 6)
    assert demo_overlap("classify the review as good or bad", demos) == 0.0
    assert demo_overlap("formal, informal", demos) == 1.0  # shorter than 4 words: found whole in a demo
    assert COPY_THRESHOLD == 0.5
    rows = [dict(target_seed=0, source_layer=1, target_layer=1, cut=copy, similarity=0.9, class_rate=0.0,
                 rouge1=0.1, rouge2=0.0, rougeL=0.1, demo_overlap=0.8, copies_demo=True),
            dict(target_seed=0, source_layer=2, target_layer=1, cut="is the review good or bad", similarity=0.6,
                 class_rate=1.0, rouge1=0.3, rouge2=0.1, rougeL=0.3, demo_overlap=0.0, copies_demo=False)]
    ck = summarize_checkpoint(rows, top_k=2)
    assert ck["best"]["similarity"]["cut"] == "is the review good or bad" and ck["copies"] == 1
    assert summarize_checkpoint(rows, top_k=2, exclude_copies=False)["best"]["similarity"]["copies_demo"] is True


# ---- 7. PEFT: real base model on export, PEFT's placement on import, same log-probs both ways -----------------------
@pytest.fixture(scope="module")
def bos_model(tmp_path_factory):
    """The tiny Llama with a tokenizer that adds BOS (as Llama/Gemma tokenizers do), saved as a folder."""
    from tokenizers import processors

    from conftest import tiny_model, tiny_tokenizer
    from softscope.engine.models import wrap

    tok = tiny_tokenizer()
    tok._tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    model = tiny_model("llama", len(tok)).float().eval()
    d = tmp_path_factory.mktemp("bos-llama")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    adapter = wrap(model, tok, name=str(d), source=str(d))
    assert adapter.bos_ids == [2]
    return d, adapter


def _peft_logprobs(peft_model, tok, texts, label_ids):
    """PEFT's own forward: log-probs of each label token after each text (its virtual tokens before BOS)."""
    out = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, return_tensors="pt")
            logits = peft_model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits[0, -1]
            out.append(logits.float().log_softmax(-1)[label_ids])
    return torch.stack(out)


def _task():
    ex = [Example("the movie was great", "positive"), Example("hated this film", "negative")]
    return Task("t", ["negative", "positive"], ["negative", "positive"], "Sentence : {text} Label :", "Sentence",
                [], ex, ex, [], "tests")


def test_peft_trained_adapter_imports_before_bos_with_the_same_logprobs(bos_model, tmp_path):
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    from softscope.engine.scoring import Scorer

    d, adapter = bos_model
    base = AutoModelForCausalLM.from_pretrained(d).float().eval()
    pm = get_peft_model(base, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=3, token_dim=32,
                                                 num_transformer_submodules=1))
    with torch.no_grad():
        pm.prompt_encoder["default"].embedding.weight.copy_(torch.randn(3, 32, generator=torch.Generator().manual_seed(1)))
    pm.save_pretrained(tmp_path / "peft")
    sp = SoftPrompt.load(tmp_path / "peft")
    assert sp.placement == "before_bos"
    task = _task()
    sc = Scorer(adapter, task, placement=sp.placement)
    ours = sc.class_logprobs(sp.tensor, sc.rows(task.test))
    words = [w[0] for w in sc.label_ids]
    theirs = _peft_logprobs(pm, adapter.tokenizer, [task.format(e) for e in task.test], words)
    assert torch.allclose(ours, theirs, atol=1e-5)
    after = Scorer(adapter, task).class_logprobs(sp.tensor, sc.rows(task.test))  # softscope's own placement differs
    assert (after - theirs).abs().max() > 1e-4


def test_export_records_the_real_base_model_and_peft_scores_it_the_same(bos_model, tmp_path, capsys):
    from peft import AutoPeftModelForCausalLM

    from softscope.engine.scoring import Scorer

    d, adapter = bos_model
    P = torch.randn(3, 32, generator=torch.Generator().manual_seed(2))
    sp = SoftPrompt(tensor=P, model="my-alias", settings={"placement": "before_bos", "model": "my-alias",
                                                          "model_path": str(d)})
    sp.save(tmp_path / "p.safetensors")
    code, stdout, err = run(["export", str(tmp_path / "p.safetensors"), "--peft", str(tmp_path / "x")], capsys)
    assert code == 0, err
    cfg = json.loads((tmp_path / "x" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(d) and "note: PEFT puts" not in stdout
    pm = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "x").float().eval()
    task = _task()
    sc = Scorer(adapter, task, placement="before_bos")
    ours = sc.class_logprobs(P, sc.rows(task.test))
    theirs = _peft_logprobs(pm, adapter.tokenizer, [task.format(e) for e in task.test], [w[0] for w in sc.label_ids])
    assert torch.allclose(ours, theirs, atol=1e-5)
    back = SoftPrompt.load(tmp_path / "x")  # softscope reads its own export back with its settings and alias
    assert back.model == "my-alias" and back.placement == "before_bos" and torch.equal(back.tensor, P)
    # a prompt trained after BOS: the export says PEFT will place it differently
    SoftPrompt(tensor=P, model=str(d)).save(tmp_path / "q.safetensors")
    code, stdout, _ = run(["export", str(tmp_path / "q.safetensors"), "--peft", str(tmp_path / "y")], capsys)
    assert code == 0 and "note: PEFT puts virtual tokens before" in stdout
    assert json.loads((tmp_path / "y" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(d)
