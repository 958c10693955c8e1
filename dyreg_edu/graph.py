r"""Graph processing: paper Eq. 8-9 (Section 3.3), as the authors' code computes it.

Nodes ``v`` are ``[B, T, N, C]``. One *iteration* (K = 3 of them, Appendix C) is

- a **temporal step**: every node's sequence :math:`v_{i,1..T}` goes through a GRU
  (one GRU, shared by the nodes and by the iterations), and
- a **spatial step** (Eq. 8): messages between all pairs of nodes of a frame, weighted
  by dot-product attention, added back to the nodes.

Where the authors' code and the paper's wording differ, a switch picks:

=================== ============================ =====================================
switch              authors' code (default)      paper wording
=================== ============================ =====================================
``messages``        ``"sum"``: MLP(v_i + v_j)     ``"concat"``: MLP([v_j; v_i]) (Eq. 8)
``temporal_first``  ``True``: GRU, then messages  ``False``: messages, then GRU (Eq. 9)
=================== ============================ =====================================

Not in the paper but in the code (and kept): LayerNorms before the iterations, on the
messages (over ``N x N x C``) and after each update (over ``N x C``); a learned bias
and a ReLU after the aggregation; unscaled :math:`q \cdot k` attention with learned
query/key projections; and a last, separate GRU over time after the iterations.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from .layers import node_norm, run_over_time

MESSAGE_FORMS = ("sum", "concat")


def attention_weights(queries: Tensor, keys: Tensor) -> Tensor:
    r"""Dot-product attention of every node ``i`` over every node ``j`` of a frame.

    :math:`a_{ij} = \mathrm{softmax}_j (q_i \cdot k_j)`, without the usual
    :math:`1/\sqrt{C}` (the authors' choice). Shapes: ``[..., N, C] x2 -> [..., N, N]``;
    every row sums to one.
    """
    return torch.einsum("...ic,...jc->...ij", queries, keys).softmax(dim=-1)


class SpatioTemporalGraph(nn.Module):
    r"""The spatio-temporal graph of Section 3.3 (the authors' ``RSTG``), any number of nodes.

    Args:
        channels: node dimension ``C``.
        iterations: ``K``, the number of temporal + spatial steps (3 in the paper).
        messages: ``"sum"`` (code) or ``"concat"`` (Eq. 8's wording).
        temporal_first: ``True`` (code) runs the GRU before the spatial step in each
            iteration; ``False`` after it (Eq. 9's wording).

    Shapes: ``forward([B, T, N, C]) -> ([B, T, N, C], attention [B, T, K, N, N])``.
    """

    def __init__(self, channels: int, iterations: int = 3, messages: str = "sum", temporal_first: bool = True):
        super().__init__()
        if messages not in MESSAGE_FORMS:
            raise ValueError(f"messages must be one of {MESSAGE_FORMS}, got {messages!r}")
        if iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {iterations}")
        self.iterations = iterations
        self.messages = messages
        self.temporal_first = temporal_first
        message_in = channels if messages == "sum" else 2 * channels
        self.message_mlp = nn.Linear(message_in, channels)
        self.query = nn.Linear(channels, channels)
        self.key = nn.Linear(channels, channels)
        self.aggregate_bias = nn.Parameter(torch.zeros(channels))
        self.temporal_gru = nn.GRU(channels, channels, batch_first=True)
        self.final_gru = nn.GRU(channels, channels, batch_first=True)
        self.input_norm = node_norm(channels)
        self.message_norm = node_norm(channels, normalized_dims=3)
        self.update_norm = node_norm(channels)

    def pairwise_messages(self, nodes: Tensor) -> Tensor:
        r"""Eq. 8's messages :math:`m_{ij}` for every ordered pair, ``i = j`` included.

        Shapes: ``[..., N, C] -> [..., N (receiver i), N (sender j), C]``.
        """
        receivers = rearrange(nodes, "... i c -> ... i 1 c")
        senders = rearrange(nodes, "... j c -> ... 1 j c")
        if self.messages == "sum":
            pairs = receivers + senders
        else:
            receivers, senders = torch.broadcast_tensors(receivers, senders)
            pairs = torch.cat([senders, receivers], dim=-1)
        return self.message_norm(self.message_mlp(pairs).relu())

    def spatial_step(self, nodes: Tensor) -> tuple[Tensor, Tensor]:
        r"""Messages, attention, aggregation and the residual update of one frame's nodes.

        .. math:: v_i \leftarrow \mathrm{LN}\Big(v_i + \mathrm{ReLU}\big(\textstyle\sum_j a_{ij} m_{ij} + b\big)\Big)

        Shapes: ``[..., N, C] -> ([..., N, C], [..., N, N])``.
        """
        messages = self.pairwise_messages(nodes)
        attention = attention_weights(self.query(nodes), self.key(nodes))
        aggregated = torch.einsum("...ij,...ijc->...ic", attention, messages)
        update = (aggregated + self.aggregate_bias).relu()
        return self.update_norm(nodes + update), attention

    def forward(self, nodes: Tensor) -> tuple[Tensor, Tensor]:
        if nodes.dim() != 4:
            raise ValueError(f"nodes must be [B, T, N, C], got {tuple(nodes.shape)}")
        nodes = self.input_norm(nodes)
        attentions = []
        for _ in range(self.iterations):
            if self.temporal_first:
                nodes = run_over_time(self.temporal_gru, nodes)
            nodes, attention = self.spatial_step(nodes)
            if not self.temporal_first:
                nodes = run_over_time(self.temporal_gru, nodes)
            attentions.append(attention)
        nodes = run_over_time(self.final_gru, nodes)
        return nodes, torch.stack(attentions, dim=2)
