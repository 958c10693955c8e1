"""Counter-based random numbers in pure torch ``int64`` arithmetic.

Every random number of a MultiSyncMNIST video is a pure function of
``(seed, split, video index, stream, counter)``::

    key(video) = mix(mix(seed * G + split) + index * G)
    bits(video, stream, counter) = mix(mix(key ^ (stream * G)) + counter * G) >> 2

where ``mix`` is the SplitMix64 finaliser (Steele et al., 2014) and ``G`` the
64-bit golden-ratio constant. Only integer ``+ * ^ >> &`` are used; torch
``int64`` wraps modulo 2**64 on CPU and CUDA alike, so the bits are identical on
every device, in every worker and whatever the batch a video is generated in.
``bits`` are 62-bit non-negative integers; ``randint`` reduces them modulo
``n`` (bias below 2**-50 for the small ``n`` used here).
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch

MASK64 = (1 << 64) - 1


def _signed(x: int) -> int:
    """A Python int modulo 2**64, as a signed int64 value."""
    x &= MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


GOLDEN = _signed(0x9E3779B97F4A7C15)
_C1 = _signed(0xBF58476D1CE4E5B9)
_C2 = _signed(0x94D049BB133111EB)


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on an int64 tensor (bijective on 64-bit words)."""
    x = (x ^ _shr(x, 30)) * _C1
    x = (x ^ _shr(x, 27)) * _C2
    return x ^ _shr(x, 31)


def mix64_reference(x: int) -> int:
    """Pure-Python SplitMix64 finaliser on unsigned ints (for tests)."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def video_keys(seed: int, split_id: int, index: torch.Tensor) -> torch.Tensor:
    """One 64-bit key per video: ``[B]`` int64 from the video indices ``[B]``."""
    base = mix64(torch.tensor(_signed(_signed(seed) * GOLDEN + split_id), dtype=torch.int64))
    return mix64(base.to(index.device) + index.to(torch.int64) * GOLDEN)


def bits(keys: torch.Tensor, stream: int, n: int) -> torch.Tensor:
    """``[B, n]`` non-negative 62-bit integers for ``n`` counters of one stream."""
    k = mix64(keys ^ _signed(stream * GOLDEN))
    counter = torch.arange(n, dtype=torch.int64, device=keys.device) * GOLDEN
    return _shr(mix64(k[:, None] + counter[None, :]), 2)


def randint(keys: torch.Tensor, stream: int, shape: tuple[int, ...], high) -> torch.Tensor:
    """Integers in ``[0, high)`` of shape ``[B, *shape]``; ``high`` int or broadcastable tensor."""
    n = 1
    for s in shape:
        n *= s
    r = bits(keys, stream, n).reshape(keys.shape[0], *shape)
    return torch.remainder(r, high)


def uniform(keys: torch.Tensor, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Float64 uniforms in ``[0, 1)`` of shape ``[B, *shape]`` (53 exact bits)."""
    n = 1
    for s in shape:
        n *= s
    r = _shr(bits(keys, stream, n), 9)  # 53 bits
    return (r.to(torch.float64) * 2.0**-53).reshape(keys.shape[0], *shape)


@functools.lru_cache(maxsize=64)
def _stream_tables(sizes: tuple[tuple[int, int], ...], device: str):
    """Constants of :func:`streams`: salts ``[S]``, column stream ``[N]``, counters ``[N]`` (int64)."""
    salt = [_signed(stream * GOLDEN) for stream, _ in sizes]
    column = [j for j, (_, n) in enumerate(sizes) for _ in range(n)]
    counter = [_signed(c * GOLDEN) for _, n in sizes for c in range(n)]
    return tuple(torch.tensor(v, dtype=torch.int64, device=device) for v in (salt, column, counter))


def streams(keys: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """``bits(keys, stream, n)`` for every ``(stream, n)`` of ``sizes``, hashed in one pass.

    Returns ``[B, n]`` int64 tensors in the order of ``sizes``, bitwise equal
    to separate :func:`bits` calls (the same integer arithmetic on all counters
    at once, so a few large ops instead of many small ones).
    """
    sizes = tuple((int(s), int(n)) for s, n in sizes)
    salt, column, counter = _stream_tables(sizes, str(keys.device))
    k = mix64(keys[:, None] ^ salt).index_select(1, column)  # [B, N]
    out = _shr(mix64(k + counter), 2)
    return list(out.split([n for _, n in sizes], 1))


def reduce(r: torch.Tensor, high) -> torch.Tensor:
    """Integers in ``[0, high)`` from :func:`bits` values ``r`` (as :func:`randint`)."""
    return torch.remainder(r, high)


def to_uniform(r: torch.Tensor) -> torch.Tensor:
    """Float64 uniforms in ``[0, 1)`` from :func:`bits` values ``r`` (as :func:`uniform`)."""
    return _shr(r, 9).to(torch.float64) * 2.0**-53
