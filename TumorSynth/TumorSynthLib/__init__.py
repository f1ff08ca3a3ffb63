"""Qt-free part of the TumorSynth module, importable with the slicer-core wheel (see logic.py)."""
