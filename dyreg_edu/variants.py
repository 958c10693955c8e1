r"""The paper's variants as a table of properties, and the code-versus-paper switches.

**Variants.** Table 5 builds DyReg-GNN one property at a time; Tables 6 and 9 change how
the regions are made. Each row of :data:`PROPERTIES` says what a variant has, and the
region generator and the block are built from these properties (nothing else in the
library tests a variant's name to decide what to compute):

=================  ===========  =========  ==========  =========  ==========  ==========
variant            kernels      learned    from the    per frame  size        region GRU
                                positions  video                  predicted   (Eq. 3)
=================  ===========  =========  ==========  =========  ==========  ==========
``fixed``          grid cells   no         no          no         no          --
``static``         regions      yes        no          no         no          --
``constant_time``  regions      yes        yes         no         no          last state
``pos_only``       regions      yes        yes         yes        no          yes
``dyreg``          regions      yes        yes         yes        yes         yes
``no_gru``         regions      yes        yes         yes        yes         no
``lite``           regions      yes        yes         yes        yes         yes
``semantic``       maps         --         yes         yes        --          --
``oracle``         given boxes  --         yes         yes        given       --
=================  ===========  =========  ==========  =========  ==========  ==========

(``lite`` differs from ``dyreg`` in how the latents are made: its ``g_i`` read the map
itself, with sinusoidal positions, instead of ``f``'s output.)

``oracle`` is Appendix E.6's upper bound: no region generator, the regions are the
ground-truth boxes of the objects, given to the block's ``forward`` (one node per object).
It is not a way to find regions, so it is kept out of :data:`VARIANTS`;
:data:`BLOCK_VARIANTS` has every variant that :class:`~dyreg_edu.dyreg.DyRegBlock` builds.

**Switches.** Six places where the authors' code differs from the paper's words, in one
frozen :class:`Switches`; :data:`AUTHORS_CODE` (the default everywhere, which the golden
fixtures check) and :data:`PAPER` are the two presets:
``DyRegBlock(..., switches=PAPER)``.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VariantProperties", "PROPERTIES", "VARIANTS", "ORACLE_VARIANTS", "BLOCK_VARIANTS",
           "GENERATED_VARIANTS", "Switches", "AUTHORS_CODE", "PAPER", "properties"]


@dataclass(frozen=True)
class VariantProperties:
    """What a variant's nodes are made of (one row of the table in the module docstring).

    Attributes:
        kernels: ``"regions"`` (tents from predicted regions, Eq. 1-6), ``"grid"`` (fixed
            cells), ``"maps"`` (predicted global pooling weights, Semantic) or ``"boxes"``
            (tents from regions given to ``forward``, the oracle).
        from_video: the regions depend on the video (``False``: learned ``z_i``, Static).
        per_frame: the regions may change from frame to frame (``False``: Constant-Time).
        size_predicted: the sizes come from the latents (Eq. 12); else a constant size.
        region_gru: the GRU of Eq. 3 over the latents (``no_gru`` drops it).
        latents: ``"f"`` (g_i on f's output, Eq. 1-2), ``"lite"`` (g_i on the map with
            positions) or ``"learned"`` (Static's parameters).
    """

    kernels: str
    from_video: bool = True
    per_frame: bool = True
    size_predicted: bool = True
    region_gru: bool = True
    latents: str = "f"


PROPERTIES: dict[str, VariantProperties] = {
    "fixed": VariantProperties("grid", from_video=False, per_frame=False, size_predicted=False, region_gru=False,
                               latents="none"),
    "static": VariantProperties("regions", from_video=False, per_frame=False, size_predicted=False,
                                region_gru=False, latents="learned"),
    "constant_time": VariantProperties("regions", per_frame=False, size_predicted=False),
    "pos_only": VariantProperties("regions", size_predicted=False),
    "dyreg": VariantProperties("regions"),
    "no_gru": VariantProperties("regions", region_gru=False),
    "lite": VariantProperties("regions", latents="lite"),
    "semantic": VariantProperties("maps", size_predicted=False, region_gru=False, latents="none"),
    "oracle": VariantProperties("boxes", size_predicted=False, region_gru=False, latents="none"),
}

#: Every variant, in Table 5's order, then Tables 6 and 9.
VARIANTS = ("dyreg", "pos_only", "constant_time", "static", "fixed", "semantic", "lite", "no_gru")
#: The variants given their regions (the ground-truth boxes of Appendix E.6).
ORACLE_VARIANTS = ("oracle",)
#: Every variant a :class:`~dyreg_edu.dyreg.DyRegBlock` builds.
BLOCK_VARIANTS = VARIANTS + ORACLE_VARIANTS
#: The variants whose kernels come from predicted (or learned) regions.
GENERATED_VARIANTS = tuple(v for v in VARIANTS if PROPERTIES[v].kernels == "regions")


def properties(variant: str) -> VariantProperties:
    """The row of :data:`PROPERTIES` for ``variant``, or a ``ValueError`` naming the choices."""
    if variant not in PROPERTIES:
        raise ValueError(f"variant must be one of {BLOCK_VARIANTS}, got {variant!r}")
    return PROPERTIES[variant]


@dataclass(frozen=True)
class Switches:
    r"""Where the authors' code and the paper differ (defaults: the code).

    Attributes:
        size_plus_one: ``s = e^{\tilde o}(L/6 + 1) + 1`` (code) or ``e^{\tilde o} L/6`` (Eq. 12).
        normalize_kernels: each kernel sums to one (code) or raw tents (Eq. 7).
        clamp_centers: centres clamped to ``[0, L-1]`` (code) or the tanh alone (Eq. 13).
        position_grad: the regions also learn through the positional embedding (release
            code; the paper's wording implies it too); ``False`` detaches the kernel before the
            embedding, one mode of the pre-release code (whose scripts' default also froze the
            embedding's weights, which no switch here reproduces).
        messages: ``"sum"``, MLP(v_i + v_j) (code), or ``"concat"``, MLP([v_j; v_i]) (Eq. 8).
        temporal_first: the node GRU before the spatial messages (code) or after (Eq. 9).
    """

    size_plus_one: bool = True
    normalize_kernels: bool = True
    clamp_centers: bool = True
    position_grad: bool = True
    messages: str = "sum"
    temporal_first: bool = True


#: The authors' released code: what the golden fixtures were made with (our default).
AUTHORS_CODE = Switches()
#: The paper's equations as written.
PAPER = Switches(size_plus_one=False, normalize_kernels=False, clamp_centers=False, position_grad=True,
                 messages="concat", temporal_first=False)
