"""dyreg_edu: the equations of DyReg-GNN (Duta, Nicolicioiu and Leordeanu, NeurIPS 2021)
as short, readable PyTorch.

Modules (import what you need; importing the package does nothing else):

- :mod:`dyreg_edu.kernels`: kernel pooling and re-mapping (Eq. 5-7, 10).
- :mod:`dyreg_edu.layers`: the LayerNorm flavours the authors' module uses.
- :mod:`dyreg_edu.regions`: region generation (Eq. 1-4, 11-14): f, g_i, the region GRU,
  W_o, gamma and the alpha constraints.
- :mod:`dyreg_edu.graph`: graph processing (Eq. 8-9).
- :mod:`dyreg_edu.dyreg`: :class:`~dyreg_edu.dyreg.DyRegBlock`, every variant of the paper.
- :mod:`dyreg_edu.official`: loading the authors' parameter names.
- :mod:`dyreg_edu.notebook`: helpers for the book's chapters (fast mode, provenance).
"""

__version__ = "0.1.0"
