"""Chat speed: the engine against raw llama-cpp-python streaming on the demo model, in one run.

Prints decode tokens/s and time to first token (TTFT) of
  raw     llama_cpp.Llama.create_chat_completion(stream=True)
  engine  tuillm.core.chat_engine.ChatSession (worker thread, events, stop checks)
and the ratios engine/raw (goal >= 0.97 for decode tokens/s), then second-turn TTFT with prefix reuse against the
same prompt evaluated fresh. Both sides load the model with the same options and decode greedily, so they produce
the same tokens; runs alternate and the median of each is reported.
TUI/raw (a headless app streaming a real reply) comes with the Chat pane.

Run: .venv/bin/python tests/bench/chat.py [--runs N] [--tokens N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from tuillm.core.chat_engine import ChatSession, LoadOptions, Sampling, new_llama
from tuillm.core.paths import demo_model_path

N_CTX = 2048
QUESTION = [{"role": "system", "content": "You are a storyteller."},
            {"role": "user", "content": "Tell me a long story about a lighthouse keeper and a storm."}]
# A long first turn makes prefix reuse visible: the second turn only evaluates the new question.
LONG_SYSTEM = "You are a helpful assistant. " + " ".join(
    f"Rule {i}: answer carefully, cite what you know, and keep a friendly tone." for i in range(40))


def raw_run(llm, max_tokens: int) -> tuple[float, float, int]:
    llm.reset()  # no KV reuse between runs: each measures a full prompt evaluation
    t0 = time.perf_counter()
    t_first = t_last = 0.0
    n = 0
    for chunk in llm.create_chat_completion(QUESTION, stream=True, temperature=0.0, repeat_penalty=1.0,
                                            max_tokens=max_tokens):
        if chunk["choices"][0]["delta"].get("content"):
            n += 1
            t_last = time.perf_counter()
            if n == 1:
                t_first = t_last
    return t_first - t0, (n - 1) / (t_last - t_first) if n > 1 else 0.0, n


def engine_run(session: ChatSession, max_tokens: int) -> tuple[float, float, int]:
    session.reset_cache().result()
    done = session.reply(QUESTION, Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=max_tokens)).result()
    st = done.stats
    return st.ttft_s, st.tokens_per_s, st.generated_tokens


def second_turn(session: ChatSession) -> tuple[float, float, int, int]:
    """TTFT of turn two with the cache from turn one, and of the same prompt after a cache reset."""
    first = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "Say hello."}]
    greedy = Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=16)
    session.reset_cache().result()
    answer = session.reply(first, greedy).result().text
    turn2 = [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": "Now say goodbye."}]
    reused = session.reply(turn2, greedy).result().stats
    session.reset_cache().result()
    fresh = session.reply(turn2, greedy).result().stats
    return reused.ttft_s, fresh.ttft_s, reused.cached_tokens, reused.prompt_tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    path = str(demo_model_path())
    llm = new_llama(path, n_ctx=N_CTX, n_gpu_layers=0, verbose=False)
    session = ChatSession()
    session.load(path, LoadOptions(n_ctx=N_CTX, n_gpu_layers=0)).result()
    raw_engine = ([], [])
    engine_run(session, 8)  # warm both once (page cache, thread pools)
    raw_run(llm, 8)
    for _ in range(args.runs):
        raw_engine[0].append(raw_run(llm, args.tokens))
        raw_engine[1].append(engine_run(session, args.tokens))
    llm.close()

    def med(rows: list[tuple[float, float, int]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    raw_ttft, raw_tps = med(raw_engine[0], 0), med(raw_engine[0], 1)
    eng_ttft, eng_tps = med(raw_engine[1], 0), med(raw_engine[1], 1)
    print(f"demo model: {path}")
    print(f"runs: {args.runs}, reply: up to {args.tokens} tokens (raw {raw_engine[0][0][2]}, "
          f"engine {raw_engine[1][0][2]} generated)")
    print(f"{'':8} {'decode tok/s':>13} {'TTFT ms':>9}")
    print(f"{'raw':8} {raw_tps:13.1f} {raw_ttft * 1000:9.1f}")
    print(f"{'engine':8} {eng_tps:13.1f} {eng_ttft * 1000:9.1f}")
    print(f"engine/raw decode tokens/s: {eng_tps / raw_tps:.3f}  (goal >= 0.97)")
    print(f"engine/raw TTFT: {eng_ttft / raw_ttft:.3f}  (lower is better; 1.0 = same)")
    print("TUI/raw: not measured yet (the Chat pane comes later)")

    reuse = [second_turn(session) for _ in range(args.runs)]
    reused_ttft = statistics.median(r[0] for r in reuse)
    fresh_ttft = statistics.median(r[1] for r in reuse)
    print(f"second turn: {reuse[0][2]} of {reuse[0][3]} prompt tokens reused from the cache")
    print(f"second-turn TTFT: prefix reuse {reused_ttft * 1000:.1f} ms, fresh prompt {fresh_ttft * 1000:.1f} ms "
          f"(reuse/fresh {reused_ttft / fresh_ttft:.3f})")
    session.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
