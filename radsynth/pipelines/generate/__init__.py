"""CTGenerate's engine: grow a CT stack slice by slice from seed slices (ASCII, :mod:`.ascii`).

Operations (``generate-slices``, ``generate-organs``) are not declared in the registry yet: they come with the
pipeline that wires HU conversion, geometry, IC-Net and the model cards end to end.
"""
