"""What an experiment is, and how the trainer reaches the experiments of a run (:class:`Hooks`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Experiment:
    """One research switch (not in the paper): its settings are the dataclass's fields, and it acts
    on a run through these hooks, each of which does nothing unless the experiment overrides it.

    ======================================= =============================================================
    hook                                    when the trainer calls it
    ======================================= =============================================================
    ``check(cfg)``                          with the run's settings: a one-line ``ValueError`` if they do
                                            not fit this experiment
    ``model_options() -> dict``             building the model: keywords for ``SyncMNISTModel`` (its
                                            ``block_class`` and that class's keywords)
    ``setup(model, cfg) -> dict | None``    after the model is built and the mini design's parts are
                                            loaded: change or freeze parts; fields for the result file
    ``train_mode(model)``                   after ``model.train()`` at every step (a frozen part stays
                                            in eval mode)
    ``boxes(boxes, training) -> boxes``     the ground-truth boxes given to the model (the oracle's)
    ``loss(step, model, aux, boxes)``       a term added to the label's loss, or ``None``
    ======================================= =============================================================
    """

    #: The name in :data:`dyreg_edu.experiments.EXPERIMENTS` and in ``TrainConfig.experiments``.
    name = ""

    def check(self, cfg) -> None:
        pass

    def model_options(self) -> dict:
        return {}

    def setup(self, model, cfg) -> dict | None:
        return None

    def train_mode(self, model) -> None:
        pass

    def boxes(self, boxes: Tensor, training: bool) -> Tensor:
        return boxes

    def loss(self, step: int, model, aux: dict, boxes: Tensor) -> Tensor | None:
        return None

    def settings(self) -> dict:
        """The settings as saved in ``TrainConfig.experiments[name]``."""
        return dataclasses.asdict(self)


def require(name: str, ok: bool, expected: str, value) -> None:
    """A one-line ``ValueError`` naming the experiment's setting unless ``ok``."""
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


class Hooks:
    """The experiments of one run, in the order of :data:`~dyreg_edu.experiments.EXPERIMENTS`; each
    method calls that hook of every experiment (the trainer's one generic line per extension point)."""

    def __init__(self, experiments: list[Experiment]):
        self.experiments = experiments

    def __bool__(self) -> bool:
        return bool(self.experiments)

    def check(self, cfg) -> None:
        for experiment in self.experiments:
            experiment.check(cfg)

    def model_options(self) -> dict:
        options = {}
        for experiment in self.experiments:
            options.update(experiment.model_options())
        return options

    def setup(self, model, cfg) -> dict:
        """Every experiment's setup, in order; the fields they report for the result file."""
        fields = {}
        for experiment in self.experiments:
            fields.update(experiment.setup(model, cfg) or {})
        return fields

    def train_mode(self, model) -> None:
        for experiment in self.experiments:
            experiment.train_mode(model)

    def boxes(self, boxes: Tensor, training: bool) -> Tensor:
        for experiment in self.experiments:
            boxes = experiment.boxes(boxes, training)
        return boxes

    def loss(self, step: int, model, aux: dict, boxes: Tensor) -> Tensor | float:
        """The sum of the experiments' loss terms (``0.0`` when none adds one)."""
        terms = [e.loss(step, model, aux, boxes) for e in self.experiments]
        return sum((t for t in terms if t is not None), 0.0)
