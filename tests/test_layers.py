"""dyreg_edu.layers: the GRU over time, written out for torch.compile."""

import pytest
import torch
from torch import nn

from dyreg_edu.layers import gru_steps, run_over_time


def test_gru_steps_is_the_grus_own_recurrence():
    """The written-out GRU (what runs under torch.compile) computes what nn.GRU does, values and gradients."""
    torch.manual_seed(0)
    gru = nn.GRU(6, 5, batch_first=True).double()
    sequences = torch.randn(4, 7, 6, dtype=torch.float64, requires_grad=True)
    ours, theirs = gru_steps(gru, sequences), gru(sequences)[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(ours)
    grads = [torch.autograd.grad((out * weights).sum(), [sequences, *gru.parameters()]) for out in
             (gru_steps(gru, sequences), gru(sequences)[0])]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="one-layer"):
        gru_steps(nn.GRU(6, 5, num_layers=2, batch_first=True), sequences.float())


def test_run_over_time_compiles_without_a_graph_break():
    gru = nn.GRU(4, 4, batch_first=True)
    nodes = torch.randn(2, 3, 5, 4)
    compiled = torch.compile(lambda x: run_over_time(gru, x), fullgraph=True, backend="eager")
    with torch._dynamo.config.patch(allow_rnn=True):  # as the trainer compiles: see dyreg_edu.runs.compile_model
        torch.testing.assert_close(compiled(nodes), run_over_time(gru, nodes), rtol=1e-5, atol=1e-6)
