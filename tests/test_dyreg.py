"""DyRegBlock: identity at initialisation, shapes, variants, switches, errors."""

import pytest
import torch

from dyreg_edu.dyreg import VARIANTS, DyRegBlock
from dyreg_edu.graph import SpatioTemporalGraph
from dyreg_edu.layers import count_parameters
from dyreg_edu.regions import FunctionF, function_f_strides, initial_size


def synthetic_block(**kwargs):
    return DyRegBlock(128, 16, 16, node_dim=32, region_dim=32, **kwargs)


def randomise_zero_inits(block):
    """Make gamma and the residual LayerNorm non-zero so the branch does something."""
    with torch.no_grad():
        block.residual_norm.scale.normal_()
        if block.properties.kernels == "regions":
            block.region_generator.gamma.uniform_(0.2, 0.6)
    return block


@pytest.mark.parametrize("variant", VARIANTS)
def test_identity_at_initialisation(variant):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 128, 16, 16)
    y, aux = synthetic_block(variant=variant)(x)
    assert torch.equal(y, x)
    assert aux["kernels"].shape == (2, 4, 9, 16, 16)
    torch.testing.assert_close(aux["kernels"].sum((-2, -1)), torch.ones(2, 4, 9))
    if variant == "semantic":
        assert "regions" not in aux
    else:
        assert aux["regions"].shape == (2, 4, 9, 4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_learns_and_changes_the_output(variant):
    torch.manual_seed(1)
    block = randomise_zero_inits(synthetic_block(variant=variant))
    x = torch.randn(2, 3, 128, 16, 16)
    y, _ = block(x)
    assert (y - x).abs().max() > 1e-3
    y.square().mean().backward()
    assert block.graph.message_mlp.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", ["dyreg", "lite", "no_gru", "constant_time", "static", "pos_only"])
def test_regions_start_at_the_anchor(variant):
    torch.manual_seed(2)
    _, aux = synthetic_block(variant=variant)(torch.randn(1, 3, 128, 16, 16))
    regions = aux["regions"]
    torch.testing.assert_close(regions[..., :2], torch.full_like(regions[..., :2], 8.0))
    fixed_size = variant in ("pos_only", "constant_time", "static")  # Table 5: no dynamic size
    expected_size = 16 / 6 + 1 if fixed_size else initial_size(16, 3)
    torch.testing.assert_close(regions[..., 2:], torch.full_like(regions[..., 2:], expected_size))
    assert initial_size(16, 3) == pytest.approx(16 / 6 + 2)


def test_only_gamma_learns_in_the_region_generator_at_first():
    torch.manual_seed(3)
    block = synthetic_block()
    with torch.no_grad():
        block.residual_norm.scale.fill_(1.0)
    y, _ = block(torch.randn(2, 3, 128, 16, 16))
    y.square().mean().backward()
    generator = block.region_generator
    assert generator.gamma.grad.abs().sum() > 0
    for name, param in generator.named_parameters():
        if name != "gamma":
            assert param.grad is None or param.grad.abs().sum() == 0, name


@pytest.mark.parametrize("frames, size, channels", [(10, 16, 128), (16, 28, 128), (16, 14, 256), (16, 7, 512)])
def test_shapes_at_the_papers_sizes(frames, size, channels):
    torch.manual_seed(4)
    block = randomise_zero_inits(DyRegBlock(channels, size, size, node_dim=min(channels, 64), region_dim=16))
    y, aux = block(torch.randn(1, frames, channels, size, size))
    assert y.shape == (1, frames, channels, size, size)
    assert aux["regions"].shape == (1, frames, 9, 4)
    assert aux["nodes_out"].shape == (1, frames, 9, min(channels, 64))
    assert aux["attention"].shape == (1, frames, 3, 9, 9)


@pytest.mark.parametrize("size, out", [(32, 7), (16, 7), (28, 6), (14, 6), (8, 6), (7, 5)])
def test_function_f_output_size_table(size, out):
    f = FunctionF(8, size, size)
    assert f(torch.randn(2, 8, size, size)).shape == (2, 16, out, out)
    assert f.out_size == out


def test_function_f_strides_table():
    assert function_f_strides(16) == (2, 1, 0, 1)
    assert function_f_strides(28) == (2, 2, 0, 0)
    assert function_f_strides(7) == (1, 1, 0, 1)
    with pytest.raises(ValueError, match="up to 50 pixels.*got 56"):
        function_f_strides(56)


@pytest.mark.parametrize("num_nodes", [5, 9, 16])
@pytest.mark.parametrize("variant", ["dyreg", "pos_only"])
def test_initial_size_does_not_depend_on_the_number_of_nodes(num_nodes, variant):
    # Eq. 12: h_init = H/6 whatever N is, so Table 7 changes the node count and nothing else.
    _, aux = synthetic_block(num_nodes=num_nodes, variant=variant)(torch.randn(1, 2, 128, 16, 16))
    expected = 16 / 6 + 1 if variant == "pos_only" else 16 / 6 + 2
    torch.testing.assert_close(aux["regions"][..., 2:], torch.full_like(aux["regions"][..., 2:], expected))


@pytest.mark.parametrize("num_nodes", [5, 16])
def test_any_number_of_nodes(num_nodes):
    torch.manual_seed(5)
    for variant in ("dyreg", "fixed", "semantic"):
        block = randomise_zero_inits(synthetic_block(num_nodes=num_nodes, variant=variant))
        y, aux = block(torch.randn(1, 3, 128, 16, 16))
        assert aux["kernels"].shape == (1, 3, num_nodes, 16, 16)
        assert aux["attention"].shape == (1, 3, 3, num_nodes, num_nodes)


def test_attention_rows_sum_to_one():
    torch.manual_seed(6)
    graph = SpatioTemporalGraph(16)
    nodes, attention = graph(torch.randn(2, 5, 9, 16))
    assert nodes.shape == (2, 5, 9, 16)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 5, 3, 9))


def test_parameter_counts_of_the_synthetic_setting():
    count = count_parameters
    assert count(synthetic_block()) == 290_088
    assert count(synthetic_block(variant="lite")) == 42_033 - 64  # the authors' unused LayerNorm
    fixed = count(synthetic_block(variant="fixed"))
    assert count(synthetic_block(variant="semantic")) - fixed == 29_104 + 297


def test_switches_change_the_computation_but_not_the_identity():
    torch.manual_seed(7)
    x = torch.randn(1, 3, 128, 16, 16)
    reference = randomise_zero_inits(synthetic_block())
    reference_y, _ = reference(x)
    switches = [
        dict(size_plus_one=False),
        dict(normalize_kernels=False),
        dict(temporal_first=False),
        dict(anchors="grid"),
    ]
    for switch in switches:
        block = synthetic_block(**switch)
        assert torch.equal(block(x)[0], x), switch
        block.load_state_dict(reference.state_dict())
        assert not torch.allclose(block(x)[0], reference_y), switch
    concat = synthetic_block(messages="concat")
    assert concat.graph.message_mlp.in_features == 64


def test_clamp_and_position_gradient_switches():
    torch.manual_seed(8)
    block = randomise_zero_inits(synthetic_block(clamp_centers=False))
    with torch.no_grad():
        block.region_generator.gamma.fill_(50.0)
    _, aux = block(torch.randn(1, 2, 128, 16, 16))
    assert aux["regions"][..., :2].max() > 15  # beyond the clamp at H - 1
    x = torch.randn(1, 2, 128, 16, 16)
    grads = []
    for position_grad in (True, False):
        torch.manual_seed(9)
        block = randomise_zero_inits(synthetic_block(position_grad=position_grad))
        block(x)[0].square().sum().backward()
        grads.append(block.region_generator.gamma.grad)
    assert grads[1].abs().sum() > 0  # the pooling path still teaches the regions
    assert not torch.allclose(grads[0], grads[1])  # but the position embedding no longer does


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: synthetic_block(variant="dynamic"), "variant must be one of.*'dynamic'"),
        (lambda: DyRegBlock(0, 16, 16), "in_channels must be a positive integer, got 0"),
        (lambda: synthetic_block(anchors="corner"), "anchors must be 'center' or 'grid', got 'corner'"),
        (lambda: synthetic_block(messages="mean"), "messages must be one of.*'mean'"),
        (lambda: synthetic_block(num_nodes=6, grid=(2, 2)), r"grid \(2, 2\) does not hold num_nodes=6"),
        (lambda: synthetic_block(fixed_size=3.0), "fixed_size applies to regions of constant size.*not to 'dyreg'"),
        (lambda: synthetic_block(variant="static", learn_size=True, fixed_size=3.0), "not to 'static' with learn_size=True"),
        (lambda: synthetic_block(variant="fixed", learn_size=True), "learn_size applies to generated regions, not to variant 'fixed'"),
        (lambda: synthetic_block(variant="fixed", fixed_pooling="gauss"), "fixed_pooling must be 'area' or 'tent', got 'gauss'"),
        (lambda: synthetic_block(variant="fixed", fixed_size=3.0), "fixed_size applies to .*fixed_pooling='tent'"),
        (lambda: synthetic_block(variant="pos_only", fixed_size=0.0), "fixed_size must be a positive half-extent in pixels, got 0.0"),
        (lambda: DyRegBlock(128, 16, 16, node_dim=0), r"node_dim must be a positive int \(or None: the block's own\), got 0"),
        (lambda: synthetic_block(train_height=0), "train_height must be a positive int"),
    ],
)
def test_bad_construction_is_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    "shape",
    [(2, 128, 16, 16), (1, 2, 64, 16, 16), (1, 2, 128, 14, 14)],
)
def test_bad_input_shape_is_named(shape):
    with pytest.raises(ValueError, match=r"\[B, T, 128, 16, 16\].*" + str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")):
        synthetic_block()(torch.randn(*shape))


def test_the_block_keeps_only_the_papers_and_the_authors_keywords():
    """Research switches live in dyreg_edu.experiments, not in the method's signature (at most 20 keywords)."""
    import inspect

    keywords = [p for p in inspect.signature(DyRegBlock).parameters.values() if p.kind is p.KEYWORD_ONLY]
    assert len(keywords) <= 20
    assert not {"residual_scale_init", "node_motion", "motion_from", "position_scale", "gamma_init"} & {p.name for p in keywords}
    assert torch.equal(synthetic_block().residual_norm.scale, torch.zeros(128))  # the authors' zero start: the identity


def test_static_with_learned_sizes_is_the_other_reading():
    torch.manual_seed(7)
    default, learned = synthetic_block(variant="static"), synthetic_block(variant="static", learn_size=True)
    assert default.region_generator.fixed_size == pytest.approx(16 / 6 + 1)
    assert learned.region_generator.fixed_size is None and learned.region_generator.w_o.out_features == 4
    _, aux = learned(torch.randn(1, 2, 128, 16, 16))
    torch.testing.assert_close(aux["regions"][..., 2:], torch.full_like(aux["regions"][..., 2:], initial_size(16, 3)))
    with torch.no_grad():
        learned.region_generator.gamma.fill_(0.5)
    _, aux = learned(torch.randn(1, 2, 128, 16, 16))
    sizes = aux["regions"][..., 2:]
    assert not torch.allclose(sizes, torch.full_like(sizes, initial_size(16, 3)))  # the sizes are learned
    torch.testing.assert_close(sizes[:, 0], sizes[:, 1])  # but, as Static, the same for every frame


def test_fixed_with_tent_kernels_on_the_grid():
    area, tent = synthetic_block(variant="fixed"), synthetic_block(variant="fixed", fixed_pooling="tent")
    # area cells tile the map (they sum to a constant: every pixel counted once, shared only at
    # the fractional cell borders); tents of size H/6 + 1 overlap their neighbours
    torch.testing.assert_close(area.fixed_grid.kernels.sum(0), torch.full((16, 16), 9 / 256))
    shared = lambda kernels: int(kernels.gt(0).sum(0).gt(1).sum())  # noqa: E731  pixels in 2+ kernels
    assert shared(area.fixed_grid.kernels) == 16 * 16 - 14 * 14  # the two rows and columns that straddle a border
    assert shared(tent.fixed_grid.kernels) > shared(area.fixed_grid.kernels)
    assert not torch.allclose(tent.fixed_grid.kernels.sum(0), torch.full((16, 16), 9 / 256))
    torch.testing.assert_close(tent.fixed_grid.kernels.sum((-2, -1)), torch.ones(9))
    torch.testing.assert_close(tent.fixed_grid.regions[:, 2:], torch.full((9, 2), 16 / 6 + 1))
    torch.testing.assert_close(tent.fixed_grid.regions[:3, 0], torch.tensor([8 / 3, 8.0, 40 / 3]))
    x = torch.randn(1, 2, 128, 16, 16)
    torch.testing.assert_close(tent(x)[0], x)  # still the identity at initialisation


def test_switch_presets_and_overrides():
    from dyreg_edu.variants import AUTHORS_CODE, PAPER

    torch.manual_seed(8)
    by_preset = synthetic_block(switches=PAPER)
    by_keywords = synthetic_block(size_plus_one=False, normalize_kernels=False, clamp_centers=False,
                                  messages="concat", temporal_first=False)
    assert by_preset.switches == by_keywords.switches == PAPER
    by_keywords.load_state_dict(by_preset.state_dict())
    randomise_zero_inits(by_preset)
    by_keywords.load_state_dict(by_preset.state_dict())
    x = torch.randn(1, 3, 128, 16, 16)
    torch.testing.assert_close(by_preset(x)[0], by_keywords(x)[0])
    assert synthetic_block(switches=PAPER, messages="sum").switches.messages == "sum"  # a keyword overrides one
    assert synthetic_block().switches == AUTHORS_CODE


def test_variants_are_built_from_their_properties():
    from dyreg_edu.baselines import FixedGridKernels, SemanticKernels
    from dyreg_edu.regions import RegionGenerator
    from dyreg_edu.variants import GENERATED_VARIANTS, PROPERTIES

    from dyreg_edu.variants import BLOCK_VARIANTS

    assert set(PROPERTIES) == set(BLOCK_VARIANTS) == set(VARIANTS) | {"oracle"}
    assert synthetic_block(variant="oracle").kernel_source is None  # its regions are given
    for variant in VARIANTS:
        block = synthetic_block(variant=variant)
        source = block.kernel_source
        expected = {"regions": RegionGenerator, "grid": FixedGridKernels, "maps": SemanticKernels}
        assert isinstance(source, expected[PROPERTIES[variant].kernels])
        assert sum(isinstance(m, (RegionGenerator, FixedGridKernels, SemanticKernels)) for m in block.children()) == 1
        if variant in GENERATED_VARIANTS:
            generator = block.region_generator
            assert (generator.fixed_size is None) == PROPERTIES[variant].size_predicted
            assert (getattr(generator, "gru", None) is not None) == (PROPERTIES[variant].region_gru
                                                                     and PROPERTIES[variant].latents != "learned")


def test_the_oracle_pools_the_given_regions():
    """Appendix E.6: no region generator; the kernels are the tents of the regions given."""
    from dyreg_edu.kernels import pool_nodes, region_kernels

    torch.manual_seed(3)
    block = randomise_zero_inits(DyRegBlock(32, 16, 16, num_nodes=3, variant="oracle"))
    assert not any("region" in name or "fixed_grid" in name or "semantic" in name for name, _ in block.named_parameters())
    x = torch.randn(2, 4, 32, 16, 16)
    regions = torch.cat([torch.rand(2, 4, 3, 2) * 15, torch.full((2, 4, 3, 2), 1.5)], -1)
    y, aux = block(x, regions)
    assert torch.equal(aux["regions"], regions)
    kernels = region_kernels(regions, 16, 16)
    torch.testing.assert_close(aux["kernels"], kernels)
    torch.testing.assert_close(aux["nodes_in"], pool_nodes(x, kernels) + block.position(kernels))
    assert (y - x).abs().max() > 1e-3


def test_the_oracle_needs_its_regions_and_only_it_takes_them():
    oracle = DyRegBlock(32, 16, 16, num_nodes=3, variant="oracle")
    x = torch.randn(1, 2, 32, 16, 16)
    with pytest.raises(ValueError, match=r"oracle needs regions \[B, T, N, 4\] = \[1, 2, 3, 4\].*got None"):
        oracle(x)
    with pytest.raises(ValueError, match=r"got \(1, 2, 9, 4\)"):
        oracle(x, torch.ones(1, 2, 9, 4))
    with pytest.raises(ValueError, match="makes its own regions; only 'oracle'"):
        DyRegBlock(32, 16, 16, variant="dyreg")(x, torch.ones(1, 2, 9, 4))
    with pytest.raises(ValueError, match="fixed_size applies"):
        DyRegBlock(32, 16, 16, variant="oracle", fixed_size=2.0)


def test_every_region_starts_on_its_anchor():
    """Eq. 11's gamma is 0 at initialisation: every region on its anchor (another start: experiments.init)."""
    x = torch.randn(2, 3, 32, 16, 16)  # the region generator reads the projected map (node_dim 32)
    paper = synthetic_block(anchors="grid")
    assert torch.equal(paper.region_generator.gamma, torch.zeros(4))
    regions, _ = paper.region_generator(x)
    anchors = paper.region_generator.anchors
    torch.testing.assert_close(regions[..., :2], anchors.expand_as(regions[..., :2]))
