"""The source documents' original formulations (per-image / per-class Python loops, boolean indexing).

Not export-friendly on purpose: they are the semantics our vectorised losses must equal (tests) and
the baseline our speed is measured against (benchmarks). One module per family, like ``lossgraph/``.
"""
