"""Figures for the book: ``regions`` (kernels and regions), ``graph`` (nodes and
attention), ``video`` (clips, boxes and animations). Import the submodule you need;
each imports matplotlib only when loaded."""
