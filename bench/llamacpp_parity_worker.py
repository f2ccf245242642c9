"""Run inside the llama-cpp-python venv: greedy tokens and next-token log-probs from a GGUF with llama.cpp.

Reads JSON on stdin: {"gguf": PATH, "prompts": [[token ids], ...], "new_tokens": N, "top": K, "texts": [str]}.
Writes JSON on stdout: {"greedy": [[ids]], "logprobs": [[[id, logprob] x K]], "tokenized": [[ids]], "seconds": s}.
`logprobs` are llama.cpp's log-softmax over the full vocabulary at the last prompt position (float64 here).
`tokenized` is llama.cpp's own tokenization of `texts` (no BOS, special tokens not parsed).
Used by bench/real_model.py; not part of the mixnu package (llama-cpp-python is not a mixnu dependency).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from llama_cpp import Llama


def main() -> None:
    job = json.load(sys.stdin)
    t0 = time.perf_counter()
    llm = Llama(model_path=job["gguf"], n_ctx=512, n_threads=1, n_batch=512, logits_all=True, verbose=False)
    greedy, logprobs = [], []
    for ids in job["prompts"]:
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        lp = logits - (np.log(np.exp(logits - logits.max()).sum()) + logits.max())
        top = np.argsort(-lp)[: job["top"]]
        logprobs.append([[int(i), float(lp[i])] for i in top])
        out = []
        for _ in range(job["new_tokens"]):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            out.append(nxt)
            llm.eval([nxt])
        greedy.append(out)
    tokenized = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) for t in job.get("texts", [])]
    json.dump({"greedy": greedy, "logprobs": logprobs, "tokenized": tokenized,
               "seconds": round(time.perf_counter() - t0, 2)}, sys.stdout)


if __name__ == "__main__":
    main()
