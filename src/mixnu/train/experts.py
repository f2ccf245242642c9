"""MoE bookkeeping of the training loop: the share of tokens each expert receives per layer, and Mixtral's
load-balancing (aux) loss, between two log records."""

from __future__ import annotations

import torch


class ExpertLoad:
    """MoE bookkeeping between two log records: tokens routed to each expert (top-k) and the aux loss."""

    def __init__(self, top_k: int, n_exp: int) -> None:
        self.top_k, self.n_exp = top_k, n_exp
        self.counts, self.aux, self.last = torch.zeros(0), 0.0, None

    def add(self, out) -> None:
        """Count one forward pass's routing (`out.router_logits`: per layer (tokens, experts))."""
        if out.router_logits is None:
            return
        rows = [torch.bincount(r.detach().topk(self.top_k, dim=-1).indices.flatten(), minlength=self.n_exp)
                for r in out.router_logits]
        counts = torch.stack(rows).cpu()
        self.counts = counts if self.counts.numel() == 0 else self.counts + counts
        self.aux += float(out.aux_loss.detach()) if out.aux_loss is not None else 0.0

    def flush(self, accelerator, n_micro: int) -> dict:
        """The log fields (shares per layer summed over processes, mean aux loss) and a fresh interval."""
        rec = {}
        if self.counts.numel():
            self.counts = accelerator.reduce(self.counts.to(accelerator.device), "sum").cpu()
            rec["expert_load"] = shares(self.counts)
            rec["aux_loss"] = self.aux / n_micro  # load-balancing loss before router_aux_loss_coef
        self.last, self.counts, self.aux = self.counts.clone(), torch.zeros(0), 0.0
        return rec


def shares(load: torch.Tensor) -> list[list[float]]:
    """(layers, experts) token counts -> each expert's share per layer, 4 decimals."""
    return (load / load.sum(1, keepdim=True)).round(decimals=4).tolist()
