"""RadSynth engine: diffusion-based synthesis of medical images, importable without 3D Slicer."""

__version__ = "0.1.0"
