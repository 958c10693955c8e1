"""dyreg_edu.graph: messages (Eq. 8), attention (Eq. 9's weights), the temporal step."""
import pytest
import torch

from dyreg_edu.graph import SpatioTemporalGraph, attention_weights


def test_attention_is_a_softmax_over_senders():
    torch.manual_seed(0)
    q, k = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    a = attention_weights(q, k)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 5))
    torch.testing.assert_close(a, (q @ k.transpose(-1, -2)).softmax(-1))  # no 1/sqrt(C), as the authors


@pytest.mark.parametrize("messages", ["sum", "concat"])
def test_pairwise_messages_follow_eq_8(messages):
    torch.manual_seed(1)
    graph = SpatioTemporalGraph(6, messages=messages)
    nodes = torch.randn(2, 3, 4, 6)
    m = graph.pairwise_messages(nodes)
    assert m.shape == (2, 3, 4, 4, 6)  # [..., receiver i, sender j, C]
    i, j = 1, 3
    pair = nodes[..., i, :] + nodes[..., j, :] if messages == "sum" else torch.cat([nodes[..., j, :], nodes[..., i, :]], -1)
    raw = graph.message_mlp(pair).relu()  # before the joint LayerNorm over a frame's N x N x C messages
    everything = graph.message_mlp(
        nodes[..., :, None, :] + nodes[..., None, :, :] if messages == "sum" else torch.cat(
            torch.broadcast_tensors(nodes[..., None, :, :], nodes[..., :, None, :]), -1)).relu()
    torch.testing.assert_close(everything[..., i, j, :], raw)
    torch.testing.assert_close(m, graph.message_norm(everything))


def test_graph_output_and_attention_shapes():
    torch.manual_seed(2)
    graph = SpatioTemporalGraph(6, iterations=3)
    out, attention = graph(torch.randn(2, 5, 4, 6))
    assert out.shape == (2, 5, 4, 6) and attention.shape == (2, 5, 3, 4, 4)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 5, 3, 4))
