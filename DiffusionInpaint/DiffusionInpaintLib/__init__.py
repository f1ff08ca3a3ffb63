"""DiffusionInpaint's Qt-free logic (MRML nodes in, new synthetic volume nodes out) and panel parameters."""
