"""Blinded reader studies (visual Turing tests): build a study, record readers' answers, analyse them.

Torch-free and Slicer-free; the Slicer module (ReaderStudy/) and the web reader (radsynth.web) sit on top.
"""
