"""CTGenerate's Qt-free logic (MRML nodes in, new synthetic volume nodes out)."""
