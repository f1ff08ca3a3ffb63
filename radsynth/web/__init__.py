"""Browser front ends. ``radsynth.web`` serves reader studies: ``radsynth reader serve study/``.

Standard library HTTP server + SimpleITK slicing + a small canvas viewer; see docs/web-reader.md for why this and
not trame-slicer.
"""
