"""Whole models: the MultiSyncMNIST ResNet-18 and TSM-ResNet-50 with DyReg blocks.

- :func:`syncmnist_model`: the paper's synthetic-data model (Appendix E.1): a 2D
  ResNet-18 with three stages (the authors' ``resnet13``), one grey channel, a DyReg
  block between ``layer2`` and ``layer3`` (``128 x 16 x 16`` projected to 32 channels),
  per-frame logits averaged over the frames. Parameter counts match Table 6.
- :func:`tsm_resnet`: TSM-ResNet-50 (residual temporal shift of 1/8 + 1/8 channels) with
  DyReg inside the bottlenecks ``layer2[2]`` (res3), ``layer3[4]`` (res4) and ``layer4[1]``
  (res5), after the 3x3 conv, as the authors place it. Parameter counts match Table 12.
- :func:`param_groups`: the authors' optimiser groups (biases lr x2 without decay, norms
  without decay, classifier lr x5 / x10).
- :func:`count_macs`: multiply-accumulates of one forward pass.
- :func:`collect_aux`: the regions and kernels of every DyReg block during a forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torchvision
from einops import rearrange, reduce
from torch import Tensor, nn

from .dyreg import BLOCK_VARIANTS, DyRegBlock
from .layers import ChannelAffineLayerNorm
from .regions import regions_from_boxes

SYNC_BLOCK = dict(in_channels=128, height=16, width=16, node_dim=32, region_dim=32)

#: Where the authors put DyReg in TSM-ResNet-50 at 224 x 224: (layer, block) and the block's config.
TSM_STAGES = {
    "res3": (("layer2", 2), dict(in_channels=128, height=28, width=28, node_dim=128, region_dim=128)),
    "res4": (("layer3", 4), dict(in_channels=256, height=14, width=14, node_dim=256, region_dim=128)),
    "res5": (("layer4", 1), dict(in_channels=512, height=7, width=7, node_dim=256, region_dim=128)),
}


def _check_video(video: Tensor, channels: int, size: int | None = None) -> None:
    if video.dim() != 5 or video.shape[2] != channels or (size is not None and video.shape[-2:] != (size, size)):
        expected = f"[B, T, {channels}, {size or 'H'}, {size or 'W'}]"
        raise ValueError(f"video must be {expected}, got {tuple(video.shape)}")
    if not video.is_floating_point():
        raise ValueError(f"video must be a floating-point tensor (e.g. uint8 frames / 255), got {video.dtype}")


#: The paper's MultiSyncMNIST backbone (the authors' ``resnet13``): ResNet-18's stem and first three stages.
PAPER_BACKBONE = dict(widths=(64, 128, 256), blocks=(2, 2, 2), stem="resnet")
#: The mini-scale backbone of :mod:`dyreg_edu.train`: a 3x3 stem of stride 2 (no max-pool)
#: and one block per stage, so a 64-pixel video gives a 16 x 16 map to the graph.
MINI_BACKBONE = dict(widths=(16, 32, 64), blocks=(1, 1, 1), stem="small")


def resnet_stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` ResNet basic blocks, the first with ``stride`` (torchvision's ``_make_layer``, same names)."""
    BasicBlock = torchvision.models.resnet.BasicBlock
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))
    layers = [BasicBlock(in_channels, out_channels, stride, downsample)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _stem(kind: str, width: int) -> nn.Sequential:
    """``"resnet"``: 7x7 conv stride 2 + max-pool (stride 4); ``"small"``: 3x3 conv stride 2 (stride 2)."""
    if kind == "resnet":
        conv, pool = nn.Conv2d(1, width, 7, stride=2, padding=3, bias=False), nn.MaxPool2d(3, stride=2, padding=1)
        return nn.Sequential(conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True), pool)
    if kind == "small":
        return nn.Sequential(nn.Conv2d(1, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
    raise ValueError(f"stem must be 'resnet' or 'small', got {kind!r}")


class SyncMNISTModel(nn.Module):
    """ResNet (3 stages, grey input) with an optional graph block after ``layer2``.

    ``forward(video [B, T, 1, S, S] in [0, 1]) -> logits [B, num_classes]``; with
    ``return_aux=True`` also the block's aux dict (regions, kernels, ...). ``variant="oracle"``
    also needs ``boxes=`` (the generator's ground-truth boxes, Appendix E.6).

    Args:
        variant: ``"resnet18"`` (no graph) or a :class:`~dyreg_edu.dyreg.DyRegBlock` variant.
        input_size: ``S``; the graph's map is ``S / 8`` (``stem="resnet"``) or ``S / 4`` (``"small"``).
        widths, blocks, stem: the backbone (:data:`PAPER_BACKBONE` by default, :data:`MINI_BACKBONE`).
        node_dim, region_dim: the block's ``C`` and ``D`` (32 and 32 on MultiSyncMNIST).
        dropout: probability of the dropout before the classifier.
        dropout_on: ``"map"`` (the authors' code: dropout on the unpooled ``layer3`` map, then
            the spatial mean) or ``"pooled"`` (the usual place: after the mean).
        classifier_init: ``"authors"`` (weights N(0, 0.001), bias 0, as their TSN head) or
            ``"torch"`` (``nn.Linear``'s default).
        padding: the backbone's convolutions pad with ``"zeros"`` (the paper's ResNet) or wrap around
            (``"circular"``): then nothing in the plain model can tell where on the frame a digit is (zero
            padding leaks it through the borders), which a task about position (the ladder's ``where``)
            needs, so that only the nodes' regions know positions. The graph block keeps its own.
        temporal_shift: shift a quarter of ``layer3``'s input channels by one frame (TSM's
            shift, :func:`temporal_shift`, in place: an eighth from the next frame, an eighth
            from the previous), so that the plain model can see motion without a graph: the
            motion-aware control of Chapter 7. Adds no parameters.
        block_class: the graph block's class (:class:`~dyreg_edu.dyreg.DyRegBlock`; a research
            subclass from :mod:`dyreg_edu.experiments` takes its own keywords too).
        block_kwargs: the block's keywords (its switches).
    """

    def __init__(self, variant: str = "dyreg", num_classes: int = 56, num_nodes: int = 9, *, input_size: int = 128,
                 widths=PAPER_BACKBONE["widths"], blocks=PAPER_BACKBONE["blocks"], stem: str = "resnet",
                 node_dim: int = 32, region_dim: int = 32, dropout: float = 0.0, dropout_on: str = "map",
                 classifier_init: str = "torch", temporal_shift: bool = False, padding: str = "zeros",
                 block_class: type[DyRegBlock] = DyRegBlock, **block_kwargs):
        super().__init__()
        if variant != "resnet18" and variant not in BLOCK_VARIANTS:
            raise ValueError(f"variant must be 'resnet18' or one of {BLOCK_VARIANTS}, got {variant!r}")
        if dropout_on not in ("map", "pooled"):
            raise ValueError(f"dropout_on must be 'map' or 'pooled', got {dropout_on!r}")
        if classifier_init not in ("authors", "torch"):
            raise ValueError(f"classifier_init must be 'authors' or 'torch', got {classifier_init!r}")
        if padding not in ("zeros", "circular"):
            raise ValueError(f"padding must be 'zeros' or 'circular', got {padding!r}")
        stride = {"resnet": 8, "small": 4}.get(stem, 0)
        if stride and input_size % stride:
            raise ValueError(f"input_size must be a multiple of {stride} for stem {stem!r}, got {input_size}")
        self.input_size, self.dropout_on, self.temporal_shift = input_size, dropout_on, temporal_shift
        self.stem = _stem(stem, widths[0])
        self.layer1 = resnet_stage(widths[0], widths[0], blocks[0], 1)
        self.layer2 = resnet_stage(widths[0], widths[1], blocks[1], 2)
        self.layer3 = resnet_stage(widths[1], widths[2], blocks[2], 2)
        _torchvision_init(self)
        for conv in self.modules():  # the backbone's, before the graph block exists
            if isinstance(conv, nn.Conv2d) and conv.padding != (0, 0):
                conv.padding_mode = padding
        self.graph = None
        if variant != "resnet18":
            side = input_size // stride
            self.graph = block_class(widths[1], side, side, node_dim=node_dim, region_dim=region_dim,
                                     variant=variant, num_nodes=num_nodes, **block_kwargs)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(widths[2], num_classes)
        if classifier_init == "authors":
            nn.init.normal_(self.classifier.weight, 0, 0.001)
            nn.init.zeros_(self.classifier.bias)

    def features(self, video: Tensor) -> Tensor:
        """The map the graph reads: ``[B, T, 1, S, S] -> [B, T, C, H, W]`` (``layer2``'s output)."""
        _check_video(video, 1, self.input_size)
        x = rearrange(video * 2 - 1, "b t c h w -> (b t) c h w")  # [0, 1] -> [-1, 1], as the authors' loader hints
        return rearrange(self.layer2(self.layer1(self.stem(x))), "(b t) c h w -> b t c h w", b=video.shape[0])

    def head(self, x: Tensor) -> Tensor:
        """``layer3`` (after the temporal shift, when on), the spatial mean and the classifier,
        logits averaged over frames: ``[B, T, C, H, W] -> [B, num_classes]``."""
        frames = rearrange(x, "b t c h w -> (b t) c h w")
        if self.temporal_shift:
            frames = temporal_shift(frames, x.shape[1])
        maps = self.layer3(frames)
        if self.dropout_on == "map":
            pooled = reduce(self.dropout(maps), "bt c h w -> bt c", "mean")
        else:
            pooled = self.dropout(reduce(maps, "bt c h w -> bt c", "mean"))
        return reduce(self.classifier(pooled), "(b t) k -> b k", "mean", b=x.shape[0])

    def forward(self, video: Tensor | None = None, return_aux: bool = False, boxes: Tensor | None = None, *,
                features: Tensor | None = None):
        """``boxes`` ``[B, T, D, 4]``: the generator's ground-truth boxes (``x1, y1, x2, y2`` in video
        pixels), which only ``variant="oracle"`` reads (its regions, Appendix E.6); other variants
        ignore them, so a training loop may always pass them. ``features`` instead of ``video``: the
        map :meth:`features` would give (``[B, T, C, H, W]``, e.g. from a cache of a frozen backbone)."""
        if (video is None) == (features is None):
            raise ValueError("give the model either video [B, T, 1, S, S] or features [B, T, C, H, W], not both")
        x, aux = self.features(video) if features is None else features, {}
        if self.graph is not None:
            x, aux = self.graph(x, self.box_regions(boxes) if self.graph.given_regions else None)
        logits = self.head(x)
        return (logits, aux) if return_aux else logits

    def box_regions(self, boxes: Tensor | None) -> Tensor:
        """The regions of the digits' boxes on the graph's map (the oracle's, Appendix E.6):
        ``[B, T, D, 4] -> [B, T, D, 4]``."""
        if boxes is None:
            raise ValueError("variant 'oracle' reads the ground-truth boxes: call model(video, boxes=boxes) "
                             "with boxes [B, T, D, 4] (x1, y1, x2, y2 in video pixels)")
        return regions_from_boxes(boxes.float(), self.input_size, self.graph.height, self.graph.width)


def _torchvision_init(model: nn.Module) -> None:
    """torchvision's ResNet initialisation: Kaiming-normal convs, BatchNorm scale 1 and shift 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def syncmnist_model(variant: str = "dyreg", *, num_classes: int = 56, num_nodes: int = 9, **kwargs) -> SyncMNISTModel:
    """The MultiSyncMNIST model of the paper; ``variant="resnet18"`` is the backbone alone.

    Keyword arguments: those of :class:`SyncMNISTModel` (backbone, head), the rest go to
    :class:`~dyreg_edu.dyreg.DyRegBlock` (the switches).
    """
    return SyncMNISTModel(variant, num_classes, num_nodes, **kwargs)


# --------------------------------------------------------------------------- TSM


def temporal_shift(x: Tensor, num_frames: int, fold_div: int = 8) -> Tensor:
    """TSM's shift (Lin et al., 2019): ``1/fold_div`` of the channels take the next frame's
    values, the next ``1/fold_div`` the previous frame's, the rest stay; zeros at the ends.

    Shapes: ``[(B T), C, H, W] -> [(B T), C, H, W]``.
    """
    x = rearrange(x, "(b t) c h w -> b t c h w", t=num_frames)
    fold = x.shape[2] // fold_div
    shifted = torch.zeros_like(x)
    shifted[:, :-1, :fold] = x[:, 1:, :fold]  # from the future
    shifted[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]  # from the past
    shifted[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return rearrange(shifted, "b t c h w -> (b t) c h w")


class ShiftThen(nn.Module):
    """``module(temporal_shift(x))``: the residual shift on a bottleneck's first conv."""

    def __init__(self, module: nn.Module, num_frames: int, fold_div: int = 8):
        super().__init__()
        self.net, self.num_frames, self.fold_div = module, num_frames, fold_div

    def forward(self, x: Tensor) -> Tensor:
        return self.net(temporal_shift(x, self.num_frames, self.fold_div))


class ThenGraph(nn.Module):
    """``graph(conv(x))`` on ``(B T)``-stacked frames: DyReg after a bottleneck's 3x3 conv."""

    def __init__(self, conv: nn.Module, graph: DyRegBlock, num_frames: int):
        super().__init__()
        self.conv, self.graph, self.num_frames = conv, graph, num_frames

    def forward(self, x: Tensor) -> Tensor:
        x = rearrange(self.conv(x), "(b t) c h w -> b t c h w", t=self.num_frames)
        y, _ = self.graph(x)
        return rearrange(y, "b t c h w -> (b t) c h w")


#: The input size the placements of :data:`TSM_STAGES` assume, and each stage's stride.
TSM_INPUT_SIZE = 224
TSM_STRIDES = {"res3": 8, "res4": 16, "res5": 32}


def tsm_stage_config(stage: str, input_size: int = TSM_INPUT_SIZE, train_size: int | None = None) -> dict:
    """The :class:`~dyreg_edu.dyreg.DyRegBlock` arguments at ``stage`` for ``input_size`` frames.

    ``train_size`` (default ``input_size``) is the frame size the model was trained on; when it
    differs (256 crops on a model trained at 224: the authors' ``--full_res``), the block runs on
    the larger map (32/16/8) with the parameters of the training map (28/14/7).
    """
    config = dict(TSM_STAGES[stage][1])
    train_size = train_size or input_size
    for size in (input_size, train_size):
        if size % 32:
            raise ValueError(f"frame sizes must be multiples of 32 (ResNet-50's stride), got {size}")
    stride = TSM_STRIDES[stage]
    config["height"] = config["width"] = input_size // stride
    if train_size != input_size:
        config["train_height"] = config["train_width"] = train_size // stride
    return config


class TSMResNet(nn.Module):
    """TSM-ResNet with DyReg blocks; ``forward(video [B, T, 3, S, S]) -> logits [B, K]``.

    The head follows the authors' TSN: dropout, global average pool, a linear layer, and
    frame logits averaged over time. Where the authors' code differs from TSM's, a switch:

    - ``dropout_on``: ``"map"`` (the authors': their ``avgpool`` is an identity and their
      ``fc`` a dropout, so dropout acts on the unpooled ``2048 x 7 x 7`` map, then the mean)
      or ``"pooled"`` (TSM's: dropout on the pooled 2048 features). Same in eval mode.
    - ``classifier_init``: ``"authors"`` (N(0, 0.001) weights, zero bias; TSM's too) or
      ``"torch"`` (``nn.Linear``'s default).

    ``input_size`` is the frame side ``S`` (224; 256 for full-resolution evaluation) and
    ``train_size`` the side the weights were trained at (default ``input_size``).
    """

    def __init__(self, depth, num_classes, num_frames, graph_stages, regions, pretrained, dropout=0.5, *,
                 dropout_on="map", classifier_init="authors", input_size=TSM_INPUT_SIZE, train_size=None):
        super().__init__()
        builders = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34, 50: torchvision.models.resnet50, 101: torchvision.models.resnet101}
        if depth not in builders:
            raise ValueError(f"depth must be one of {sorted(builders)}, got {depth}")
        unknown = set(graph_stages) - set(TSM_STAGES)
        if unknown:
            raise ValueError(f"graph_stages must be a subset of {tuple(TSM_STAGES)}, got {tuple(graph_stages)}")
        if regions not in ("dyreg", "fixed"):
            raise ValueError(f"regions must be 'dyreg' or 'fixed', got {regions!r}")
        if graph_stages and depth != 50:
            raise ValueError(f"graph placements are those of the authors' ResNet-50; got depth={depth}")
        if dropout_on not in ("map", "pooled"):
            raise ValueError(f"dropout_on must be 'map' or 'pooled', got {dropout_on!r}")
        if classifier_init not in ("authors", "torch"):
            raise ValueError(f"classifier_init must be 'authors' or 'torch', got {classifier_init!r}")
        self.num_frames, self.dropout_on = num_frames, dropout_on
        self.input_size, self.train_size = input_size, train_size or input_size
        self.graph_stages, self.regions = tuple(graph_stages), regions
        self.backbone = builders[depth](weights=_pretrained_weights(depth) if pretrained else None)
        for layer in ("layer1", "layer2", "layer3", "layer4"):
            for block in getattr(self.backbone, layer):
                block.conv1 = ShiftThen(block.conv1, num_frames)
        for stage in graph_stages:
            (layer, index), _ = TSM_STAGES[stage]
            config = tsm_stage_config(stage, input_size, train_size)
            block = getattr(self.backbone, layer)[index]
            block.conv2 = ThenGraph(block.conv2, DyRegBlock(**config, variant=regions), num_frames)
        features = self.backbone.fc.in_features
        self.backbone.fc = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(features, num_classes)
        if classifier_init == "authors":
            nn.init.normal_(self.classifier.weight, 0, 0.001)
            nn.init.zeros_(self.classifier.bias)

    def features(self, frames: Tensor) -> Tensor:
        """The backbone up to ``layer4``: ``[(B T), 3, S, S] -> [(B T), 2048, S/32, S/32]``."""
        net = self.backbone
        x = net.maxpool(net.relu(net.bn1(net.conv1(frames))))
        return net.layer4(net.layer3(net.layer2(net.layer1(x))))

    def forward(self, video: Tensor) -> Tensor:
        _check_video(video, 3)
        if video.shape[1] != self.num_frames:
            raise ValueError(f"this model was built for {self.num_frames} frames, got {video.shape[1]}")
        if self.graph_stages and tuple(video.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"the DyReg blocks of this model were built for {self.input_size} x {self.input_size} frames, got "
                f"{tuple(video.shape[-2:])}; build it with input_size={video.shape[-1]} (and train_size="
                f"{self.train_size} to keep the trained parameters: full-resolution evaluation)")
        maps = self.features(rearrange(video, "b t c h w -> (b t) c h w"))
        if self.dropout_on == "map":
            pooled = reduce(self.dropout(maps), "bt c h w -> bt c", "mean")
        else:
            pooled = self.dropout(reduce(maps, "bt c h w -> bt c", "mean"))
        return reduce(self.classifier(pooled), "(b t) k -> b k", "mean", t=self.num_frames)


def _pretrained_weights(depth: int):
    names = {18: "ResNet18_Weights", 34: "ResNet34_Weights", 50: "ResNet50_Weights", 101: "ResNet101_Weights"}
    return getattr(torchvision.models, names[depth]).IMAGENET1K_V1


def tsm_resnet(depth: int = 50, *, num_classes: int = 174, num_frames: int = 16, graph_stages=(), regions: str = "dyreg",
               pretrained: bool = False, **kwargs) -> TSMResNet:
    """TSM-ResNet (``depth``) with DyReg (or Fixed-grid) graphs at ``graph_stages`` ⊆ ``("res3", "res4", "res5")``.

    ``pretrained=True`` loads torchvision's ImageNet weights (downloaded once by torchvision).
    Keyword arguments: those of :class:`TSMResNet` (``dropout``, ``dropout_on``,
    ``classifier_init``, ``input_size``, ``train_size``). ``input_size=256, train_size=224``
    is the authors' full-resolution evaluation of a model trained at 224.
    """
    return TSMResNet(depth, num_classes, num_frames, tuple(graph_stages), regions, pretrained, **kwargs)


def param_groups(model: nn.Module, lr: float, weight_decay: float, *, fc_lr5: bool = True,
                 multipliers: bool = True) -> list[dict]:
    """The authors' optimiser parameter groups (their TSN's ``get_optim_policies``), for ``torch.optim.SGD``.

    ========================= ======= ============ ==========================================
    group                     lr x    weight decay what
    ========================= ======= ============ ==========================================
    ``first_conv_weight``     1       yes          the first convolution's weight
    ``normal_weight``         1       yes          other conv / linear / GRU weights, and
                                                   gamma and the graph's aggregation bias
    ``normal_bias``           2       no           their biases
    ``norm``                  1       no           BatchNorm and LayerNorm scales and shifts
    ``classifier_weight``     5       yes          the classifier (``fc_lr5``; else normal)
    ``classifier_bias``       10      no           its bias (``fc_lr5``; else normal bias)
    ========================= ======= ============ ==========================================

    ``fc_lr5=False`` is the authors' setting when fine-tuning from the same dataset;
    ``multipliers=False`` (their MultiSyncMNIST setting) sets every multiplier to 1.
    Returns the non-empty groups as dicts with ``params``, ``lr``, ``weight_decay``, ``name``.
    """
    groups: dict[str, list] = {name: [] for name in ("first_conv_weight", "first_conv_bias", "normal_weight",
                                                      "normal_bias", "norm", "classifier_weight", "classifier_bias")}
    settings = {"first_conv_weight": (1, 1), "first_conv_bias": (2, 0), "normal_weight": (1, 1), "normal_bias": (2, 0),
                "norm": (1, 0), "classifier_weight": (5, 1), "classifier_bias": (10, 0)}
    classifier = getattr(model, "classifier", None)
    seen_conv = False
    for module in model.modules():
        params = dict(module.named_parameters(recurse=False))
        if not params:
            continue
        if module is classifier:
            groups["classifier_weight" if fc_lr5 else "normal_weight"].append(params.pop("weight"))
            groups["classifier_bias" if fc_lr5 else "normal_bias"].extend(params.pop(k) for k in list(params))
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and not seen_conv:
            seen_conv = True
            groups["first_conv_weight"].append(params.pop("weight"))
            groups["first_conv_bias"].extend(params.pop(k) for k in list(params))
        elif isinstance(module, (nn.modules.batchnorm._NormBase, ChannelAffineLayerNorm, nn.LayerNorm)):
            groups["norm"].extend(params.pop(k) for k in list(params))
        for name in list(params):  # convs, linears, GRUs, and the free parameters (gamma, att_bias, ...)
            groups["normal_bias" if _is_layer_bias(module, name) else "normal_weight"].append(params.pop(name))
    result = []
    for name, params in groups.items():
        if params:
            lr_mult, decay_mult = settings[name] if multipliers else (1, 1)
            result.append({"params": params, "lr": lr * lr_mult, "weight_decay": weight_decay * decay_mult, "name": name})
    return result


def _is_layer_bias(module: nn.Module, name: str) -> bool:
    """A bias of a conv, linear or recurrent layer (the authors' ``normal_bias``); free parameters
    named ``*bias`` elsewhere (the graph's aggregation bias) are weights to them."""
    layers = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear, nn.GRU, nn.LSTM)
    return isinstance(module, layers) and name.startswith("bias")


# --------------------------------------------------------------------------- Table 12

#: Paper Table 12 (16 frames at 224): ``(graph_stages, regions) -> (GFLOPs, M params)`` as printed.
TABLE_12 = {
    "TSM-R50": ((), "dyreg", 65.8, 23.9),
    "+Fixed r4": (("res4",), "fixed", 66.3, 24.9),
    "+DyReg r4": (("res4",), "dyreg", 66.4, 25.7),
    "+Fixed r3-4-5": (("res3", "res4", "res5"), "fixed", 67.2, 26.1),
    "+DyReg r3-4-5": (("res3", "res4", "res5"), "dyreg", 67.4, 28.7),
}


def table12_rows(num_frames: int = 16, size: int = 224) -> list[dict]:
    """Our parameters and multiply-accumulates (counted on the ``meta`` device, nothing computed)
    next to paper Table 12, one dict per row: ``model``, ``params_M``, ``paper_params_M``,
    ``gmacs``, ``paper_gflops`` and the relative differences in percent."""
    video = torch.empty(1, num_frames, 3, size, size, device="meta")
    rows = []
    for name, (stages, regions, gflops, params) in TABLE_12.items():
        model = tsm_resnet(graph_stages=stages, regions=regions, num_frames=num_frames).to("meta")
        ours_params = sum(p.numel() for p in model.parameters()) / 1e6
        ours_macs = count_macs(model, video) / 1e9
        rows.append({"model": name, "params_M": round(ours_params, 3), "paper_params_M": params,
                     "params_diff_pct": round(100 * (ours_params / params - 1), 2), "gmacs": round(ours_macs, 2),
                     "paper_gflops": gflops, "macs_diff_pct": round(100 * (ours_macs / gflops - 1), 2)})
    return rows


def fixed_parts(model: nn.Module) -> dict[str, int]:
    """Parameters of the graph blocks of ``model`` by part: ``graph`` (RSTG), ``position``
    (kernel -> node embedding), ``projections`` (res5's ``C_in -> C -> C_in`` 1x1 convs and their
    LayerNorm), ``residual`` (the zero-initialised LayerNorm), ``regions`` (the region generator).
    Used to explain the +Fixed r3-4-5 row of Table 12."""
    parts = {"graph": 0, "position": 0, "projections": 0, "residual": 0, "regions": 0}
    prefixes = {"graph.": "graph", "position_embedding.": "position", "project_": "projections",
                "residual_norm.": "residual", "region_generator.": "regions"}
    for module in model.modules():
        if isinstance(module, DyRegBlock):
            for name, param in module.named_parameters():
                part = next(v for k, v in prefixes.items() if name.startswith(k))
                parts[part] += param.numel()
    return parts


# --------------------------------------------------------------------------- measuring


def count_macs(model: nn.Module, video: Tensor) -> int:
    """Multiply-accumulates of one forward pass of ``model(video)`` (convolutions, matrix
    products and everything else torch's FLOP counter knows; FLOPs / 2). The paper's
    Table 12 calls these FLOPs.

    Put the model and the video on the ``meta`` device (``model.to("meta")``) to count
    without computing anything: 65.4 G for TSM-R50 at 16 x 224 x 224 that way. The pass runs in
    eval mode (BatchNorm statistics and dropout untouched); the model's mode is restored after.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter, training = FlopCounterMode(display=False), model.training
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(video)
    finally:
        model.train(training)
    return counter.get_total_flops() // 2


@contextlib.contextmanager
def collect_aux(model: nn.Module) -> Iterator[dict[str, dict]]:
    """Record the aux dict (regions, kernels, ...) of every DyReg block of ``model`` during
    the forward passes inside the ``with`` block: ``{module name: aux}``.

    >>> with collect_aux(model) as aux:
    ...     logits = model(video)
    >>> aux["backbone.layer3.4.conv2.graph"]["regions"].shape
    """
    records: dict[str, dict] = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: records.__setitem__(name, out[1]))
        for name, module in model.named_modules()
        if isinstance(module, DyRegBlock)
    ]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()
