"""Importance-matrix quants through llama.cpp's own tools (built by `make`), on the demo-derived checkpoint.

One job writes f16, q2_k, q4_k_m, iq4_xs and iq2_xs with ``--imatrix auto`` (one matrix, computed once for the
module); one without writes q2_k and q4_k_m. The matrix must earn its keep on the quality report's held-out text
(mean KL against the f16 GGUF), the IQ files must chat, and what is predicted must be what llama.cpp wrote.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import gguf
import pytest

from tests.checkpoints import demo_hf_checkpoint
from tuillm.convert.gguf_header import read_gguf_header
from tuillm.convert.imatrix import check_imatrix
from tuillm.convert.llama_tools import TOOLS, find_tool
from tuillm.convert.quant_rules import output_tensor_types
from tuillm.core.conversion.job import convert_many
from tuillm.core.conversion.plan import estimate_size, open_source, plan_outputs
from tuillm.core.conversion.quality import REPORT_TEXT, compare
from tuillm.core.events import Cancelled, Event, Log, Progress

pytestmark = pytest.mark.slow
Q = gguf.GGMLQuantizationType
WITH = ("f16", "q2_k", "q4_k_m", "iq4_xs", "iq2_xs")
WITHOUT = ("q2_k", "q4_k_m")


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    for name in TOOLS:
        find_tool(name)  # missing: the one-line message that says to run make, as a failure


@pytest.fixture(scope="module")
def ckpt() -> Path:
    return demo_hf_checkpoint()


@pytest.fixture(scope="module")
def with_matrix(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], list[Event]]:
    out = tmp_path_factory.mktemp("with-imatrix")
    events: list[Event] = []
    results = convert_many(ckpt, plan_outputs(open_source(ckpt), list(WITH), out), imatrix="auto",
                           emit=events.append)
    return {r.out_type: r.path for r in results}, events


@pytest.fixture(scope="module")
def without(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("without-imatrix")
    return {r.out_type: r.path for r in convert_many(ckpt, plan_outputs(open_source(ckpt), list(WITHOUT), out))}


@pytest.fixture(scope="module")
def kl(with_matrix: tuple[dict[str, Path], list[Event]], without: dict[str, Path]) -> dict[str, float]:
    """Mean KL divergence against the f16 GGUF on the quality report's text (the report's own functions)."""
    from tuillm.core.llama.logits import llama_logits, llama_tokenize

    files = with_matrix[0]
    ids = llama_tokenize(files["f16"], REPORT_TEXT)[:512]
    reference = llama_logits(files["f16"], ids)
    figures = {f"{t}+imatrix": compare(reference, llama_logits(files[t], ids), ids).mean_kl for t in WITHOUT}
    figures |= {t: compare(reference, llama_logits(without[t], ids), ids).mean_kl for t in WITHOUT}
    print("\nmean KL vs f16 on REPORT_TEXT:", json.dumps(figures, indent=1))
    return figures


def test_imatrix_lowers_the_kl_divergence(kl: dict[str, float]) -> None:
    assert kl["q2_k+imatrix"] <= 0.9 * kl["q2_k"], kl  # at least 10% lower
    assert kl["q4_k_m+imatrix"] < kl["q4_k_m"], kl


def test_the_matrix_is_kept_beside_the_outputs(with_matrix: tuple[dict[str, Path], list[Event]]) -> None:
    files, events = with_matrix
    folder = files["f16"].parent
    matrix = folder / f"{open_source(demo_hf_checkpoint()).name}.imatrix"
    assert check_imatrix(matrix) == matrix
    sidecar = json.loads(matrix.with_name(matrix.name.replace(".imatrix", ".imatrix.json")).read_text())
    assert set(sidecar) == {"source", "calibration", "llama_cpp"}
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temporaries left
    stage = [e for e in events if isinstance(e, Progress) and e.stage.endswith(" imatrix")]
    assert stage and stage[-1].done == stage[-1].total >= 2, stage[-3:]  # the tool's chunk counter, to the end
    assert [e.done for e in stage] == sorted(e.done for e in stage)
    # Every quantized output says which matrix it was made with (llama-quantize's metadata).
    fields = read_gguf_header(files["q2_k"]).fields
    assert str(fields.get("quantize.imatrix.file", "")).endswith(".imatrix")


def test_predicted_types_and_sizes_are_llama_cpps(with_matrix: tuple[dict[str, Path], list[Event]]) -> None:
    src = open_source(demo_hf_checkpoint())
    for out_type in ("iq4_xs", "iq2_xs", "q2_k"):
        path = with_matrix[0][out_type]
        predicted = output_tensor_types(src.tensors, out_type, n_gqa=src.n_gqa, imatrix=True)
        actual = {t.name: Q[t.type_name] for t in read_gguf_header(path).tensors}
        assert actual == dict(zip([t.name for t in src.tensors], predicted, strict=True)), out_type
        real = path.stat().st_size
        assert abs(estimate_size(src, out_type, imatrix=True) - real) / real < 0.01, out_type
        if out_type == "iq2_xs":  # the 1536-wide ffn_down past the first eighth: the type's own blocks
            assert actual["blk.20.ffn_down.weight"] == Q.IQ2_XS and actual["blk.0.ffn_down.weight"] == Q.Q2_K


@pytest.mark.parametrize("out_type", ["iq4_xs", "iq2_xs"])
def test_iq_types_chat(out_type: str, with_matrix: tuple[dict[str, Path], list[Event]]) -> None:
    from tuillm.core.llama.loader import quiet_llama

    llm = quiet_llama(str(with_matrix[0][out_type]), n_ctx=512, seed=0)
    try:
        reply = llm.create_chat_completion([{"role": "user", "content": "What is the capital of France?"}],
                                           temperature=0.0, max_tokens=24)
    finally:
        llm.close()
    answer = reply["choices"][0]["message"]["content"]
    assert "paris" in answer.lower(), (out_type, answer)


def test_reused_for_the_same_source_not_for_another_text(ckpt: Path, tmp_path: Path,
                                                         with_matrix: tuple[dict[str, Path], list[Event]]) -> None:
    folder = with_matrix[0]["f16"].parent
    events: list[Event] = []
    out = folder / "again-Q3_K_M.gguf"
    convert_many(ckpt, [("q3_k_m", out)], imatrix="auto", emit=events.append)
    assert any(isinstance(e, Log) and "reusing" in e.message for e in events)
    assert not any(isinstance(e, Progress) and e.stage.endswith("imatrix") for e in events)
    # Another calibration text: a new matrix (checked by the cancel, which comes as soon as it starts).
    text = tmp_path / "calibration.txt"
    text.write_text("A different text about rivers, tides and the moon. " * 200, encoding="utf-8")
    cancel = threading.Event()

    def emit(event: Event) -> None:
        if isinstance(event, Progress) and event.stage.endswith("imatrix"):
            cancel.set()

    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(Cancelled):
        convert_many(ckpt, [("q3_k_m", tmp_path / "x.gguf")], imatrix="auto", calibration=text, emit=emit,
                     cancel=cancel)
    assert list(tmp_path.iterdir()) == [text]  # no matrix, no intermediate, no output
    assert sorted(p.name for p in folder.iterdir()) == before


def test_given_matrix_and_overrides_through_llama_quantize(with_matrix: tuple[dict[str, Path], list[Event]],
                                                           tmp_path: Path) -> None:
    files = with_matrix[0]
    matrix = next(files["f16"].parent.glob("*.imatrix"))
    out = tmp_path / "over.gguf"
    convert_many(files["f16"], [("q4_k_m", out)], imatrix=str(matrix),
                 tensor_types={r"^token_embd\.weight$": "q8_0", "ffn_down": "q5_0"})
    src = open_source(files["f16"])
    actual = {t.name: Q[t.type_name] for t in read_gguf_header(out).tensors}
    predicted = output_tensor_types(src.tensors, "q4_k_m", n_gqa=src.n_gqa, imatrix=True,
                                    tensor_types={r"^token_embd\.weight$": "q8_0", "ffn_down": "q5_0"})
    assert actual == dict(zip([t.name for t in src.tensors], predicted, strict=True))
    assert actual["token_embd.weight"] == Q.Q8_0 and actual["blk.5.ffn_down.weight"] == Q.Q5_0


def test_a_killed_job_leaves_no_tool_running(ckpt: Path, tmp_path: Path) -> None:
    """SIGKILL to the converting process: llama-imatrix (exec'd through the wrapper) goes with it."""
    import subprocess
    import sys

    import psutil

    code = ("import sys; from pathlib import Path; from tuillm.core.conversion.job import convert_many; "
            "convert_many(Path(sys.argv[1]), [('q2_k', Path(sys.argv[2]))], imatrix='auto')")
    job = subprocess.Popen([sys.executable, "-c", code, str(ckpt), str(tmp_path / "k.gguf")])
    try:
        tool = None
        for _ in range(6000):  # x 0.05 s: a bound so a broken job fails the test instead of hanging it
            tool = next((c for c in psutil.Process(job.pid).children(recursive=True)
                         if c.name() == "llama-imatrix"), None)
            if tool is not None or job.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert tool is not None, "llama-imatrix never started"
        job.kill()
        job.wait()
        gone, alive = psutil.wait_procs([tool], timeout=30)  # bounded: the kernel's signal is immediate
        assert alive == []
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()


def test_iq_rules_on_an_untied_model(tmp_path: Path) -> None:
    """A small random llama with an output head and 256-wide rows (8 layers, GQA 2): the IQ mixes' rules for the
    embedding, the head, attn_v/attn_output and the first eighth of ffn_down, each checked against llama.cpp."""
    from tests.checkpoints import tiny_random_checkpoint

    ckpt = tiny_random_checkpoint("llama", tmp_path / "ck", overrides={
        "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 8, "num_attention_heads": 4,
        "num_key_value_heads": 2})
    src = open_source(ckpt)
    types = ["iq2_xs", "iq2_m", "iq3_xxs", "iq1_m", "iq3_m", "iq4_nl", "q4_k_m"]
    (tmp_path / "out").mkdir()
    results = convert_many(ckpt, plan_outputs(src, types, tmp_path / "out"), imatrix="auto")
    seen: set[Q] = set()
    for result in results:
        predicted = output_tensor_types(src.tensors, result.out_type, n_gqa=src.n_gqa, imatrix=True)
        actual = {t.name: Q[t.type_name] for t in read_gguf_header(result.path).tensors}
        assert actual == dict(zip([t.name for t in src.tensors], predicted, strict=True)), result.out_type
        seen |= set(predicted)
    assert {Q.IQ2_XS, Q.IQ2_S, Q.IQ3_XXS, Q.IQ3_S, Q.IQ1_M, Q.IQ2_XXS, Q.Q2_K, Q.Q5_K, Q.IQ4_NL} <= seen
