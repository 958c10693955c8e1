"""dyreg_edu: the equations of DyReg-GNN (Duta, Nicolicioiu and Leordeanu, NeurIPS 2021)
as short, readable PyTorch.

Modules (import what you need; importing the package does nothing else):

- :mod:`dyreg_edu.kernels`: kernel pooling and re-mapping (Eq. 5-7, 10).
- :mod:`dyreg_edu.layers`: the LayerNorm flavours the authors' module uses, the GRU over
  time, the parameter count.
- :mod:`dyreg_edu.regions`: region generation (Eq. 1-4, 11-14): f, g_i, the region GRU,
  W_o, gamma and the alpha constraints.
- :mod:`dyreg_edu.graph`: graph processing (Eq. 8-9).
- :mod:`dyreg_edu.dyreg`: :class:`~dyreg_edu.dyreg.DyRegBlock`, every variant of the paper.
- :mod:`dyreg_edu.models`: the MultiSyncMNIST ResNets and TSM-ResNet with DyReg blocks,
  ``param_groups``, MACs.
- :mod:`dyreg_edu.official_block`, :mod:`dyreg_edu.official`: the authors' parameter names, one
  block, and whole checkpoints (``tsm_from_official``).
- :mod:`dyreg_edu.files`: reading torch files with one clear error for a file that is not one.
- :mod:`dyreg_edu.metrics`: accuracy, confusion matrix, the object-centric distance.
- :mod:`dyreg_edu.runs`: a run's plumbing (checkpoints, logs, provenance, processes), shared by both
  trainers.
- :mod:`dyreg_edu.inputs`, :mod:`dyreg_edu.mini`, :mod:`dyreg_edu.train`, :mod:`dyreg_edu.ablations`:
  the data of a run, the mini design, training on MultiSyncMNIST and the paper's ablation tables
  (``python -m dyreg_edu.train``, ``python -m dyreg_edu.ablations``).
- :mod:`dyreg_edu.train_ssv2`: training and evaluating TSM + DyReg on Something-Something V2.
- :mod:`dyreg_edu.experiments`: research switches, **none in the paper**, apart from the method (the
  trainer reaches them through hooks), and chapter 11's programs (the graph alone, the oracle's nodes).
- :mod:`dyreg_edu.evaluate_tsm`: the authors' Something-Something checkpoint on a clip
  (``python -m dyreg_edu.evaluate_tsm``).
- :mod:`dyreg_edu.exercises`: the check cells of the book's implementation exercises.
- :mod:`dyreg_edu.notebook`: helpers for the book's chapters (fast mode, provenance).
"""

__version__ = "0.1.0"
