"""RadSynthLib: what every RadSynth Slicer module shares, as Slicer's DICOMLib serves the DICOM modules.

- :mod:`jobs`: a background job over prepare (main thread) / execute (worker thread) / apply (main thread), with
  progress and cancel, polled from the panel's timer;
- :mod:`workers`: the engine runner a panel uses and the worker process behind it (one per module, or shared);
- :mod:`inputs`: reading input nodes with the checks every operation needs; option checks from the declarations;
- :mod:`results`: result nodes (volume, segmentation, table), all or none, placed under the input's study in the
  subject hierarchy, segments with standard terminology, variants grouped in a folder;
- :mod:`parameters`: panel parameters mirroring the engine's option declarations (for ``parameterNodeWrapper``);
- :mod:`dependencies`: Python packages the engine needs inside Slicer (pip_ensure, the PyTorch extension);
- :mod:`sample_data`: the sample chest CTs registered with Slicer's SampleData module;
- :mod:`widgets`: the thin Qt part (the job's progress bar, status line and Cancel button).

Everything except :mod:`widgets` and the Slicer-only functions of :mod:`dependencies` and :mod:`sample_data` is
Qt-free and importable with the slicer-core wheel, so it is tested without the Slicer application.
"""
