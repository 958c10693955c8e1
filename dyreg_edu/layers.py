"""The LayerNorm flavours of the authors' module (not named in the paper).

The authors normalise *jointly* over several trailing dimensions (all of ``C x H x W``
of a frame, or all ``N x C`` node features of a frame) but keep one scale and one bias
per *channel*. ``torch.nn.LayerNorm`` would learn one per element, so we write it out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

#: PyTorch's default LayerNorm epsilon, which the authors' module uses.
LAYER_NORM_EPS = 1e-5


class ChannelAffineLayerNorm(nn.Module):
    """LayerNorm over the last ``normalized_dims`` dimensions, affine per channel.

    Args:
        num_channels: size of the channel dimension that carries the scale and bias.
        normalized_dims: how many trailing dimensions are normalised together.
        channel_dim: which of those trailing dimensions is the channel one, counted from
            the end (``-1`` for ``[..., N, C]`` node features, ``-3`` for ``[..., C, H, W]`` maps).
        scale_init: initial scale (1, or 0 for the zero-initialised residual branch).

    Shapes: input and output ``[..., *normalised]``; the scale has ``num_channels`` entries.
    """

    def __init__(self, num_channels: int, normalized_dims: int, channel_dim: int = -1, scale_init: float = 1.0):
        super().__init__()
        if not -normalized_dims <= channel_dim <= -1:
            raise ValueError(f"channel_dim must be one of the {normalized_dims} normalised dims, got {channel_dim}")
        self.normalized_dims = normalized_dims
        self.channel_dim = channel_dim
        self.scale = nn.Parameter(torch.full((num_channels,), float(scale_init)))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def _broadcast(self, param: Tensor) -> Tensor:
        # a channel vector shaped to broadcast over the trailing dims after the channel one
        return param.reshape(param.shape + (1,) * (-1 - self.channel_dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < self.normalized_dims or x.shape[self.channel_dim] != self.scale.numel():
            raise ValueError(
                f"expected [..., {self.normalized_dims} normalised dims] with {self.scale.numel()} channels "
                f"at dim {self.channel_dim}, got {tuple(x.shape)}"
            )
        x = F.layer_norm(x, x.shape[-self.normalized_dims:], eps=LAYER_NORM_EPS)
        return x * self._broadcast(self.scale) + self._broadcast(self.bias)

    def extra_repr(self) -> str:
        return f"channels={self.scale.numel()}, normalized_dims={self.normalized_dims}, channel_dim={self.channel_dim}"


def map_norm(channels: int, scale_init: float = 1.0) -> ChannelAffineLayerNorm:
    """LayerNorm over a frame's ``C x H x W`` map, per-channel affine (``[..., C, H, W]``)."""
    return ChannelAffineLayerNorm(channels, normalized_dims=3, channel_dim=-3, scale_init=scale_init)


def node_norm(channels: int, normalized_dims: int = 2) -> ChannelAffineLayerNorm:
    """LayerNorm over a frame's ``N x C`` nodes (or ``N x N x C`` messages), per-channel affine."""
    return ChannelAffineLayerNorm(channels, normalized_dims=normalized_dims, channel_dim=-1)


def run_over_time(gru: nn.GRU, nodes: Tensor) -> Tensor:
    """Run ``gru`` over the ``T`` frames of every node's sequence, from a zero state.

    Shapes: ``[B, T, N, C] -> [B, T, N, C]``. Under ``torch.compile`` the same recurrence runs written out
    (:func:`gru_steps`), which the compiler can fuse; ``nn.GRU``'s fused kernel stops its graph.
    """
    batch = nodes.shape[0]
    sequences = rearrange(nodes, "b t n c -> (b n) t c")
    outputs = gru_steps(gru, sequences) if torch.compiler.is_compiling() else gru(sequences)[0]
    return rearrange(outputs, "(b n) t c -> b t n c", b=batch)


def gru_steps(gru: nn.GRU, sequences: Tensor) -> Tensor:
    """``gru(sequences)[0]`` for a one-layer, unidirectional, batch-first ``nn.GRU``, written out step by
    step with its own weights (PyTorch's GRU equations, gates in the order r, z, n), from a zero state.

    Shapes: ``[S, T, C] -> [S, T, H]``.
    """
    if gru.num_layers != 1 or gru.bidirectional or not gru.batch_first:
        raise ValueError("gru_steps takes a one-layer, unidirectional, batch-first nn.GRU")
    inputs = F.linear(sequences, gru.weight_ih_l0, gru.bias_ih_l0)  # [S, T, 3H], all frames at once
    state = sequences.new_zeros(sequences.shape[0], gru.hidden_size)
    outputs = []
    for t in range(sequences.shape[1]):
        hidden = F.linear(state, gru.weight_hh_l0, gru.bias_hh_l0)  # [S, 3H]
        x_r, x_z, x_n = inputs[:, t].chunk(3, dim=-1)
        h_r, h_z, h_n = hidden.chunk(3, dim=-1)
        reset, update = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        state = (1 - update) * torch.tanh(x_n + reset * h_n) + update * state
        outputs.append(state)
    return torch.stack(outputs, dim=1)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """The number of parameters of ``module`` (the paper's "Params" columns), shared ones once."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
