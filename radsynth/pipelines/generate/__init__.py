"""CTGenerate's engine: whole-volume latent diffusion (:mod:`.latent`, MAISI family) and slice-by-slice growth from
seed slices with a score model of adjacent slices (ASCII, :mod:`.ascii`).

The slice-wise operations (``generate-slices``, ``generate-organs``) are not declared in the registry yet: they come
with the pipeline that wires HU conversion, geometry, IC-Net and the model cards end to end.
"""
