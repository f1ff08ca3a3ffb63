"""Shared MRML fixtures (real MRML from the slicer-core wheel)."""

import pytest
import slicer


@pytest.fixture
def scene():
    """A scene as Slicer sets it up: the segmentations logic registers the representation converters."""
    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    yield scene
    logic.SetMRMLScene(None)
