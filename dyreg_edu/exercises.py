"""Check cells for the book's implementation exercises.

An implementation exercise in a chapter has three cells:

1. a **stub** the student fills in, e.g. ``def my_tent(center, size, length): raise
   NotImplementedError``;
2. the **solution**, a hidden cell tagged ``solution`` that redefines the same function
   (``make student`` removes it, so the student edition keeps only the stub);
3. a **check** cell: ``check(my_tent, tent, inputs)``, which calls the student's function
   and the library's on the same random inputs and says what is wrong, if anything.

A check never raises: a stub that is not written yet, an exception, a wrong shape or
wrong values are each reported in one readable paragraph, so that the student edition
runs from top to bottom. It returns ``True`` when everything matches.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["check", "random_inputs"]


def random_inputs(make: Callable[[torch.Generator], Sequence], trials: int = 5, seed: int = 0) -> list[tuple]:
    """``trials`` argument tuples from ``make(generator)``, reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return [tuple(make(generator)) for _ in range(trials)]


def _describe(args: Iterable) -> str:
    parts = []
    for arg in args:
        if isinstance(arg, Tensor):
            parts.append(f"Tensor{list(arg.shape)}")
        elif isinstance(arg, float):
            parts.append(f"{arg:.3g}")
        else:
            parts.append(repr(arg))
    return "(" + ", ".join(parts) + ")"


def _as_tensors(value) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _as_tensors(item)]
    return [torch.as_tensor(value, dtype=torch.float32)]


def _compare(got, expected, atol: float, rtol: float) -> str | None:
    """``None`` when ``got`` equals ``expected`` (within tolerance), else what differs."""
    got_list, expected_list = _as_tensors(got), _as_tensors(expected)
    if len(got_list) != len(expected_list):
        return f"returned {len(got_list)} tensor(s), expected {len(expected_list)}"
    for k, (g, e) in enumerate(zip(got_list, expected_list)):
        which = f"output {k}: " if len(expected_list) > 1 else ""
        if not isinstance(g, Tensor):
            return f"{which}returned {type(g).__name__}, expected a tensor"
        if g.shape != e.shape:
            return f"{which}shape {list(g.shape)}, expected {list(e.shape)}"
        g, e = g.detach().double(), e.detach().double()
        if not torch.allclose(g, e, atol=atol, rtol=rtol):
            error = (g - e).abs()
            where = tuple(int(i) for i in torch.nonzero(error == error.max())[0])
            return (f"{which}values differ: largest error {error.max().item():.3g} at index {where} "
                    f"(got {g[where].item():.4g}, expected {e[where].item():.4g})")
    return None


def _grads(fn, args) -> tuple[object, list[Tensor | None]]:
    leaves = [a.detach().clone().requires_grad_(True) if isinstance(a, Tensor) and a.is_floating_point() else a
              for a in args]
    out = fn(*leaves)
    total = sum((t * torch.linspace(0.5, 1.5, t.numel()).view_as(t)).sum() for t in _as_tensors(out))
    params = [a for a in leaves if isinstance(a, Tensor) and a.requires_grad]
    grads = torch.autograd.grad(total, params, allow_unused=True) if total.requires_grad else [None] * len(params)
    return out, list(grads)


def check(student: Callable, reference: Callable, inputs: Sequence[tuple], *, name: str | None = None,
          atol: float = 1e-5, rtol: float = 1e-4, grad: bool = False) -> bool:
    """Call ``student(*args)`` and ``reference(*args)`` for each ``args`` in ``inputs`` and
    print whether they agree; with ``grad=True`` the gradients with respect to every
    floating-point tensor argument must agree too. Returns ``True`` when all agree."""
    name = name or getattr(student, "__name__", "your function")
    for trial, args in enumerate(inputs, start=1):
        try:
            if grad:
                got, got_grads = _grads(student, args)
            else:
                got = student(*args)
        except NotImplementedError:
            print(f"`{name}` is not written yet: replace `raise NotImplementedError` in its cell, "
                  "run that cell, then this one.")
            return False
        except Exception as error:  # the student's code failed: say how, do not stop the notebook
            print(f"`{name}{_describe(args)}` raised {type(error).__name__}: {error}")
            return False
        if grad:
            expected, expected_grads = _grads(reference, args)
        else:
            expected = reference(*args)
        problem = _compare(got, expected, atol, rtol)
        if problem is None and grad:
            for k, (g, e) in enumerate(zip(got_grads, expected_grads)):
                if (g is None) != (e is None):
                    problem = f"the gradient of argument {k} is {'missing' if g is None else 'unexpected'}"
                elif g is not None:
                    problem = _compare(g, e, atol, rtol)
                    problem = problem and f"gradient of tensor argument {k}: {problem}"
                if problem:
                    break
        if problem:
            print(f"`{name}` is not right yet on input {trial} of {len(inputs)} {_describe(args)}: {problem}.")
            return False
    what = "values and gradients" if grad else "values"
    print(f"Passed: `{name}` gives the library's {what} on all {len(inputs)} random inputs.")
    return True
