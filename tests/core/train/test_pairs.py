"""Preference pairs without a model: both shapes (prompt/chosen/rejected strings, chat pairs with an explicit or
implicit prompt), the line-numbered errors of bad files (also through ``tuillm train --method dpo``), rendering
with a chat template with only the answer labelled, and the cut. A character tokenizer stands in for the model's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.train.jsonl_rows import CHATML, chars, write
from tuillm.core.train.data import IGNORE, DatasetError
from tuillm.core.train.pairs import describe_pairs, encode_pairs, load_pairs, preview_pairs, tokenize_side


def msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def labelled(example_ids: list[int], labels: list[int]) -> str:
    return "".join(chr(t) for t, label in zip(example_ids, labels, strict=True) if label != IGNORE)


def test_string_pairs_are_user_and_assistant_turns(tmp_path: Path) -> None:
    ds = load_pairs(write(tmp_path / "p.jsonl", [{"prompt": "Hi?", "chosen": "Hello!", "rejected": "No."}] * 2))
    assert ds.format == "pairs" and len(ds.records) == 2
    record = ds.records[0]
    assert record.prompt == (msg("user", "Hi?"),)
    assert record.chosen == (msg("assistant", "Hello!"),) and record.rejected == (msg("assistant", "No."),)


def test_chat_pairs_with_an_implicit_prompt_share_their_first_messages(tmp_path: Path) -> None:
    row = {"chosen": [msg("system", "Be kind."), msg("user", "Sky?"), msg("assistant", "Blue.")],
           "rejected": [msg("system", "Be kind."), msg("user", "Sky?"), msg("assistant", "Green.")]}
    ds = load_pairs(write(tmp_path / "p.jsonl", [row]))
    assert ds.format == "chat pairs"
    record = ds.records[0]
    assert record.prompt == (msg("system", "Be kind."), msg("user", "Sky?"))
    assert record.chosen == (msg("assistant", "Blue."),) and record.rejected == (msg("assistant", "Green."),)


def test_chat_pairs_with_an_explicit_prompt(tmp_path: Path) -> None:
    rows = [{"prompt": [msg("user", "Sky?")], "chosen": [msg("assistant", "Blue.")],
             "rejected": [msg("assistant", "Green.")]},
            {"prompt": "Sea?", "chosen": [msg("assistant", "Wet.")], "rejected": [msg("assistant", "Dry.")]}]
    ds = load_pairs(write(tmp_path / "p.jsonl", rows))
    assert [r.prompt for r in ds.records] == [(msg("user", "Sky?"),), (msg("user", "Sea?"),)]


def test_only_the_answer_is_labelled_not_the_prompts_assistant_turns() -> None:
    prompt = (msg("user", "A?"), msg("assistant", "Earlier."), msg("user", "B?"))
    done = tokenize_side(prompt, (msg("assistant", "Now."),), CHATML, chars, 1000)
    ids, labels = done.example.input_ids, done.example.labels
    text = "".join(chr(t) for t in ids)
    assert text == CHATML.render([*prompt, msg("assistant", "Now.")], add_generation_prompt=False)
    assert "Earlier." in text and "Earlier." not in labelled(ids, labels)
    assert labelled(ids, labels).startswith("Now.")


def test_encoding_cuts_counts_and_drops(tmp_path: Path) -> None:
    rows = [{"prompt": "Q", "chosen": "yes " * 5, "rejected": "no"},
            {"prompt": "Q" * 200, "chosen": "yes", "rejected": "no"}]
    ds = load_pairs(write(tmp_path / "p.jsonl", rows))
    seen: list[tuple[int, int]] = []
    enc = encode_pairs(ds, chars, CHATML, 70, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]  # told after each pair, the dropped one too (core.train.prepare.EncodeProgress)
    # Pair 1: its chosen side is cut (answer partly kept); pair 2: the prompt alone passes the cut, dropped.
    assert len(enc.pairs) == 1 and enc.truncated == 2 and enc.dropped == 1
    pair = enc.pairs[0]
    assert len(pair.chosen.input_ids) == 70 and labelled(pair.chosen.input_ids, pair.chosen.labels).startswith("yes")
    assert labelled(pair.rejected.input_ids, pair.rejected.labels) == "no<|im_end|>\n"
    assert describe_pairs(ds, enc, 70) == ("p.jsonl: 2 preference pairs, pairs format; 2 longer than 70 tokens, "
                                           "cut; 1 dropped (no answer token left after the cut)")
    with pytest.raises(DatasetError, match="no pair keeps an answer within the max length 20 tokens"):
        encode_pairs(ds, chars, CHATML, 20)
    with pytest.raises(DatasetError, match="no chat template"):
        encode_pairs(ds, chars, None, 400)


def test_the_preview_shows_each_side_with_its_answer_marked(tmp_path: Path) -> None:
    from tuillm.core.train.preview import CUT, PROMPT, TRAINED, BaseTokenizer
    from tuillm.tui.panes.train_preview import preview_text

    rows = [{"prompt": "Sky?", "chosen": "Blue.", "rejected": "Green."},
            {"prompt": "Sea?", "chosen": "Wet " * 20, "rejected": "Dry."},
            {"prompt": "x", "chosen": "y", "rejected": "z"}]
    ds = load_pairs(write(tmp_path / "p.jsonl", rows))
    tokenizer = BaseTokenizer(CHATML, chars, lambda text, n: min(n, len(text)))
    shown = preview_pairs(ds, tokenizer, n=2, max_len=80)
    assert shown.count == 3 and [e.line for e in shown.examples] == [1, 1, 2, 2]
    assert [(text, kind) for text, kind in shown.examples[0].pieces if kind != PROMPT] == [
        ("Blue.<|im_end|>\n", TRAINED)]
    assert [text for text, kind in shown.examples[1].pieces if kind == TRAINED] == ["Green.<|im_end|>\n"]
    assert any(kind == CUT for _, kind in shown.examples[2].pieces)  # "Wet " * 20 runs past 80 tokens
    text = preview_text(shown, 80).plain
    assert text.startswith("p.jsonl: 3 preference pairs, pairs format, template: chatml")
    assert "chosen, line 1: " in text and "rejected, line 1: " in text and "chosen, line 2: " in text


@pytest.mark.parametrize(("rows", "expected"), [
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}, "{oops", "[1]"], "1 invalid JSON line (line 2)"),
    ([{"prompt": "a", "completion": "b"}],
     "line 1: not a preference pair (keys: completion, prompt); --method dpo takes prompt/chosen/rejected rows"),
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": "b"}],
     "1 bad preference pair (line 2; line 2: 'chosen' and 'rejected' missing)"),
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": "b", "rejected": "b"},
      {"chosen": "b", "rejected": "c"}],
     "2 bad preference pairs (lines 2, 3; line 2: 'chosen' and 'rejected' are the same answer)"),
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": "b", "rejected": 3}],
     "line 2: 'chosen' and 'rejected' must both be strings"),
    ([{"chosen": [msg("user", "a"), msg("assistant", "b")], "rejected": [msg("user", "z"), msg("assistant", "c")]}],
     "line 1: no 'prompt', and 'chosen' and 'rejected' share no first message"),
    ([{"chosen": [msg("user", "a"), msg("assistant", "b")], "rejected": [msg("user", "a"), msg("user", "c")]}],
     "line 1: 'rejected': no assistant message"),
    ([{"prompt": [msg("robot", "a")], "chosen": [msg("assistant", "b")], "rejected": [msg("assistant", "c")]}],
     "line 1: 'prompt': message role 'robot'"),
    ([{"chosen": [msg("user", "a"), msg("assistant", "b")],
       "rejected": [msg("user", "a"), msg("assistant", "b"), msg("user", "c"), msg("assistant", "d")]}],
     "line 1: 'chosen' holds nothing after the prompt"),
    ([{"prompt": "a", "chosen": [], "rejected": [msg("assistant", "c")]}],
     "line 1: 'chosen' holds nothing after the prompt"),
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": [msg("assistant", "b")],
                                                         "rejected": [msg("assistant", "c")]}],
     "line 2: not in the pairs format of line 1"),
    ([{"prompt": [], "chosen": [msg("assistant", "b")], "rejected": [msg("assistant", "c")]}],
     "line 1: field 'prompt' missing, or not a string or a non-empty message list"),
    # The same answer once read as messages (a key no template shows differs): it trained on with a loss of log 2
    # and no gradient, teaching nothing.
    ([{"chosen": [msg("user", "a"), {**msg("assistant", "b"), "weight": 1}], "rejected": [msg("user", "a"),
                                                                                     msg("assistant", "b")]}],
     "line 1: 'chosen' and 'rejected' are the same answer"),
    ([{"prompt": "a", "chosen": [{**msg("assistant", "b"), "name": "x"}], "rejected": [msg("assistant", "b")]}],
     "line 1: 'chosen' and 'rejected' are the same answer"),
])
def test_bad_pair_files_name_their_lines(tmp_path: Path, rows: list, expected: str) -> None:
    with pytest.raises(DatasetError) as err:
        load_pairs(write(tmp_path / "p.jsonl", rows))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_the_cli_refuses_a_bad_pair_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tuillm.tui.cli import main

    data = write(tmp_path / "p.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a"}])
    out = tmp_path / "out"
    assert main(["train", "demo", "--method", "dpo", "--data", str(data), "-o", str(out)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"tuillm: {data}: 1 bad preference pair (line 2; line 2: 'chosen' and 'rejected' missing)"]
    # A pair file given to supervised training is refused before anything loads, too.
    assert main(["train", "demo", "--data", str(data), "-o", str(out)]) == 1
    assert capsys.readouterr().err == (f"tuillm: {data}: line 1: unknown format (keys: chosen, prompt, rejected); "
                                       "these are preference pairs: choose the dpo method (--method dpo)\n")
    assert main(["train", "demo", "--method", "dpo", "--beta", "0", "--data", str(data), "-o", str(out)]) == 1
    assert capsys.readouterr().err.strip() == "tuillm: --beta: must be a number above 0 and at most 10, not '0'"
    good = write(tmp_path / "good.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}])
    assert main(["train", "demo", "--method", "dpo", "--train-on-prompt", "--data", str(good), "-o", str(out)]) == 1
    assert capsys.readouterr().err.strip() == ("tuillm: --train-on-prompt is for supervised data: DPO scores the "
                                               "answers only")
    assert not out.exists()
