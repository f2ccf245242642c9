"""Router initialisation for `mixnu merge`: random, uniform, and from text (prompts / data).

`prompts` and `data` run text through the model being built, layer by layer, while the merge
streams: at layer L the router's true input is the `post_attention_layernorm` output, computed
with the merged shared weights of layer L (in the output dtype, as the MoE will hold them) on
hidden states that went through the already-initialised MoE layers 0..L-1 (top-k routing with
renormalised weights, exactly as transformers' Mixtral computes it). So the router at layer L
sees the inputs the finished MoE will give it, and memory holds one layer of weights plus the
sample's hidden states, whatever the depth.

Scaling of the centroids (documented in docs/merge.md): for expert e, `c_e` is the mean router
input over its text's tokens. Rows are `u_e = (c_e - mean_e c_e) / ||c_e - mean_e c_e||`
(subtracting the mean centroid changes every logit of a token by the same amount, which softmax
ignores, and leaves the directions that tell experts apart), then scaled by one factor per layer
so that, over all sample tokens, the logits have standard deviation `LOGIT_STD` across experts:
a soft but informative start for router training, neither uniform nor saturated.
"""

from __future__ import annotations

import random as _random
from pathlib import Path
from typing import Any

from mixnu.errors import DataError
from mixnu.io import iter_corpus
from mixnu.text import document_ids, normalize_text

LOGIT_STD = 1.0


def random_router(num_experts: int, hidden: int, seed: int, layer: int, std: float):
    """Seeded N(0, std^2) router rows for one layer, (E, H) float32 numpy; independent of other layers."""
    import numpy as np

    rng = np.random.default_rng([int(seed), int(layer)])
    return (rng.standard_normal((num_experts, hidden), dtype=np.float32) * np.float32(std)).astype(np.float32)


def sample_texts(experts: list[Any], init: str, samples: int, seed: int) -> list[list[str]]:
    """Per expert, the texts that initialise the router: its prompts, or a seeded sample of its corpus."""
    out = []
    for i, e in enumerate(experts):
        if init == "prompts":
            out.append([normalize_text(p) for p in e.prompts])
            continue
        rng = _random.Random(seed * 7919 + i)
        reservoir: list[str] = []
        for n, line in enumerate(iter_corpus(e.corpus)):
            if n < samples:
                reservoir.append(line)
            else:
                j = rng.randint(0, n)
                if j < samples:
                    reservoir[j] = line
        out.append(reservoir)
    return out


def _moe(x, router_w, experts: list[tuple[Any, Any, Any]], top_k: int):
    """Mixtral's sparse MoE on x (T, H): softmax router, top-k, renormalised weights, SwiGLU experts."""
    import torch
    import torch.nn.functional as F

    probs = torch.softmax((x @ router_w.T).float(), dim=-1)
    top_w, top_i = torch.topk(probs, top_k, dim=-1)
    top_w = top_w / top_w.sum(dim=-1, keepdim=True)
    out = torch.zeros_like(x)
    for e, (w1, w2, w3) in enumerate(experts):
        tok, slot = torch.where(top_i == e)
        if tok.numel() == 0:
            continue
        h = x[tok]
        w1, w2, w3 = w1.float(), w2.float(), w3.float()  # one expert in float32 at a time
        y = F.linear(F.silu(F.linear(h, w1)) * F.linear(h, w3), w2)
        out.index_add_(0, tok, y * top_w[tok, slot, None])
    return out


class TextForward:
    """Hidden states of the init texts, advanced through the MoE one layer at a time.

    Call `embed_rows(chunk, row_start)` with every row chunk of the embedding matrix, then per
    layer `router_inputs(weights)` (returns the router inputs per expert group), `centroid_router`
    and `advance(router, experts)`. Everything runs in float32 on CPU with batch size 1 per text,
    so no padding or attention mask differs from what a single prompt sees.
    """

    def __init__(self, base_config: dict[str, Any], tokenizer_dir: Path, texts: list[list[str]],
                 max_tokens: int, top_k: int) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        cfg = {k: v for k, v in base_config.items() if k not in ("architectures", "model_type", "transformers_version")}
        self.config = LlamaConfig(**cfg)
        self.config._attn_implementation = "eager"
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.top_k = top_k
        self.groups: list[list[Any]] = []  # expert -> list of token id tensors (1, T)
        for e, group in enumerate(texts):
            # `[BOS] body`, cut to max_tokens: the ids training and `ppl` give the same text (mixnu.text)
            ids = [torch.tensor([x[:max_tokens]]) for x in document_ids(tok, group)]
            ids = [x for x in ids if x.shape[1] > 0]
            if not ids:
                raise DataError(f"router init: the texts of expert {e} tokenize to nothing; give non-empty text")
            self.groups.append(ids)
        self.hidden: list[list[Any]] = [[None] * len(g) for g in self.groups]
        rotary = LlamaRotaryEmbedding(self.config)
        longest = max(x.shape[1] for g in self.groups for x in g)
        pos = torch.arange(longest)[None]
        probe = torch.zeros(1, longest, self.config.hidden_size)
        self.cos, self.sin = rotary(probe, pos)
        self._x: list[list[Any]] = []

    def embed_rows(self, chunk, row_start: int) -> None:
        """Fill the initial hidden states from one row chunk [row_start, row_start + len) of embed_tokens."""
        import torch

        end = row_start + chunk.shape[0]
        for g, group in enumerate(self.groups):
            for i, ids in enumerate(group):
                if self.hidden[g][i] is None:
                    self.hidden[g][i] = torch.zeros(ids.shape[1], chunk.shape[1])
                sel = (ids[0] >= row_start) & (ids[0] < end)
                if sel.any():
                    self.hidden[g][i][sel] = chunk[ids[0][sel] - row_start].float()

    def held_bytes(self) -> int:
        """Bytes of hidden states held (for the merge's memory accounting)."""
        return sum(h.nbytes for g in self.hidden for h in g if h is not None)

    def router_inputs(self, layer: int, weights: dict[str, Any]) -> list[Any]:
        """Run layer `layer`'s attention block; return per expert the (T, H) router inputs."""
        import torch
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer

        with torch.device("meta"):
            block = LlamaDecoderLayer(self.config, layer)
        block.mlp = torch.nn.Identity()
        block.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False, assign=True)
        xs_by_group: list[Any] = []
        self._x = []
        with torch.no_grad():
            for group in self.hidden:
                xs = []
                for i, h in enumerate(group):
                    t = h.shape[0]
                    mask = torch.full((t, t), float("-inf")).triu(1)[None, None]
                    pe = (self.cos[:, :t], self.sin[:, :t])
                    a, _ = block.self_attn(hidden_states=block.input_layernorm(h[None]), attention_mask=mask,
                                           position_embeddings=pe)
                    h2 = h + a[0]
                    group[i] = h2
                    xs.append(block.post_attention_layernorm(h2))
                self._x.append(xs)
                xs_by_group.append(torch.cat(xs))
        return xs_by_group

    @staticmethod
    def centroid_router(xs_by_group: list[Any]):
        """Router rows (E, H) float32 from per-expert router inputs, centred, unit-norm, scaled (see module doc)."""
        import torch

        cents = torch.stack([x.double().mean(0) for x in xs_by_group])
        d = cents - cents.mean(0, keepdim=True)
        norms = d.norm(dim=-1, keepdim=True)
        u = torch.where(norms > 1e-12, d / norms.clamp_min(1e-30), torch.zeros_like(d))
        z = torch.cat(xs_by_group).double() @ u.T
        spread = (z - z.mean(-1, keepdim=True)).std()
        scale = LOGIT_STD / spread if spread > 1e-12 else 1.0
        return (u * scale).float()

    def advance(self, router_w, experts: list[tuple[Any, Any, Any]]) -> None:
        """Finish the layer: h += MoE(router inputs) with the layer's router and experts (output dtype)."""
        import torch

        xs = [x for group in self._x for x in group]
        with torch.no_grad():  # the MoE is per token: all texts go through it as one (T_total, H) batch
            parts = iter(torch.split(_moe(torch.cat(xs), router_w.float(), experts, self.top_k),
                                     [x.shape[0] for x in xs]))
            for group in self.hidden:
                for i, h in enumerate(group):
                    group[i] = h + next(parts)
        self._x = []
