"""The Place, Shape, Texture sliders, Operations and Variants sections of the TumorSynth panel (the Qt side).

Wiring only: widget values go to the module's parameter node; work goes to ``operations.OperationsLogic``
(through the module widget's background job, so the GUI never blocks) and to ``sliders.ShapePreview``.
"""

import dataclasses
import importlib.util
import logging

import qt
import slicer

from radsynth.errors import RadSynthError

from . import operations as ops
from . import sliders
from .logic import TEXTURE_PRESET

PREVIEW_DELAY_MS = 150   # a slider drag fires dozens of changes a second; preview once it pauses
FROM_POINT, FROM_PAINTED = "point", "painted"
#: parameter node defaults, merged into the module logic's
DEFAULTS = {"PlaceFrom": FROM_POINT, "PaintedShape": ops.SHAPE_PAINTED, "Variants": "1", "Preview": "1",
            **{f"Shape:{s.feature}": str(s.start) for s in sliders.SHAPE_SLIDERS}}


class OperationsPanel:
    def __init__(self, widget, ensure_dependencies):
        self.widget, self.ui = widget, widget.ui
        self.ensure_dependencies = ensure_dependencies
        # the module's runner: one background worker (and one loaded model set) for every operation
        self.logic = ops.OperationsLogic(widget.logic.runner)
        self.preview = sliders.ShapePreview()
        self._observedPoint = None
        ui = self.ui
        self.shapeSliders = {"shape_Sphericity": ui.sphericitySlider, "shape_Elongation": ui.elongationSlider,
                             "shape_Flatness": ui.flatnessSlider}
        self.textureSliders = {"firstorder_Mean": ui.meanSlider, "firstorder_Entropy": ui.heterogeneitySlider,
                               "glcm_Contrast": ui.contrastSlider}
        self.measuredLabels = {ops.VOLUME: ui.volumeMeasuredLabel, "shape_Sphericity": ui.sphericityMeasuredLabel,
                               "shape_Elongation": ui.elongationMeasuredLabel,
                               "shape_Flatness": ui.flatnessMeasuredLabel, "firstorder_Mean": ui.meanMeasuredLabel,
                               "firstorder_Entropy": ui.heterogeneityMeasuredLabel,
                               "glcm_Contrast": ui.contrastMeasuredLabel}
        self.specs = {s.feature: s for s in sliders.SHAPE_SLIDERS + sliders.TEXTURE_SLIDERS}
        for feature, slider in {**self.shapeSliders, **self.textureSliders}.items():
            spec = self.specs[feature]
            slider.minimum, slider.maximum, slider.decimals = spec.minimum, spec.maximum, spec.decimals
            slider.singleStep = 10.0 ** -spec.decimals
        ui.volumeSlider.maximum = sliders.VOLUME_STEPS
        volume = self.specs[ops.VOLUME]
        ui.volumeSpinBox.minimum, ui.volumeSpinBox.maximum = volume.minimum, volume.maximum
        ui.pointPlaceWidget.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceSingleMarkup

        self._previewTimer = qt.QTimer()
        self._previewTimer.setSingleShot(True)
        self._previewTimer.setInterval(PREVIEW_DELAY_MS)
        self._previewTimer.timeout.connect(self.updatePreview)

        changed = widget.updateParameterNodeFromGUI
        ui.pointSelector.currentNodeChanged.connect(changed)
        for selector in (ui.paintedSegmentSelector, ui.organSegmentSelector):
            selector.currentNodeChanged.connect(changed)
            selector.currentSegmentChanged.connect(changed)
        for button in (ui.placeAtPointRadioButton, ui.placePaintedRadioButton, ui.useShapeRadioButton,
                       ui.insideRadioButton, ui.aroundRadioButton, ui.previewCheckBox):
            button.toggled.connect(changed)
        ui.variantsSpinBox.valueChanged.connect(changed)
        ui.volumeSlider.valueChanged.connect(
            lambda pos: setattr(ui.volumeSpinBox, "value", sliders.volume_from_position(pos)))
        ui.volumeSpinBox.valueChanged.connect(self.onShapeChanged)
        for slider in self.shapeSliders.values():
            slider.valueChanged.connect(self.onShapeChanged)
        for slider in self.textureSliders.values():
            slider.valueChanged.connect(changed)
        # a new texture source restarts the texture sliders from it, once the widget has stored the choice
        for signal in (ui.presetComboBox.currentIndexChanged, ui.texturePresetRadioButton.toggled,
                       ui.textureSegmentSelector.currentSegmentChanged, ui.textureVolumeSelector.currentNodeChanged):
            signal.connect(lambda *a: qt.QTimer.singleShot(0, self.resetTexture))
        ui.resetTextureButton.clicked.connect(lambda *a: self.resetTexture())
        ui.typicalShapeButton.clicked.connect(lambda *a: self.onTypicalShape())
        for button, op in ((ui.placeButton, ops.PLACE), (ui.removeTumorButton, ops.REMOVE),
                           (ui.moveButton, ops.MOVE), (ui.resizeButton, ops.RESIZE),
                           (ui.retextureButton, ops.RETEXTURE)):
            button.clicked.connect(lambda _=False, op=op: self.run(op))

    def cleanup(self):
        self._previewTimer.stop()
        self._observePoint(None)
        self.preview.clear()

    # -- parameter node -----------------------------------------------------------------------------------------
    def updateGUI(self, p):
        ui = self.ui
        point = p.GetNodeReference("PointNode")
        ui.pointSelector.setCurrentNode(point)
        ui.pointPlaceWidget.setCurrentNode(point)
        self._observePoint(point)
        ui.paintedSegmentSelector.setCurrentNode(p.GetNodeReference("PaintedSegmentation"))
        ui.paintedSegmentSelector.setCurrentSegmentID(p.GetParameter("PaintedSegmentID"))
        ui.organSegmentSelector.setCurrentNode(p.GetNodeReference("OrganSegmentation"))
        ui.organSegmentSelector.setCurrentSegmentID(p.GetParameter("OrganSegmentID"))
        painted = p.GetParameter("PlaceFrom") == FROM_PAINTED
        ui.placePaintedRadioButton.checked, ui.placeAtPointRadioButton.checked = painted, not painted
        mode = p.GetParameter("PaintedShape")
        ui.useShapeRadioButton.checked = mode == ops.SHAPE_PAINTED
        ui.insideRadioButton.checked = mode == ops.SHAPE_INSIDE
        ui.aroundRadioButton.checked = mode == ops.SHAPE_AROUND
        for w in (ui.paintedLabel, ui.paintedSegmentSelector, ui.useShapeRadioButton, ui.insideRadioButton,
                  ui.aroundRadioButton):
            w.enabled = painted
        volume = float(p.GetParameter(f"Shape:{ops.VOLUME}") or sliders.DEFAULT_VOLUME_ML)
        ui.volumeSpinBox.value = volume
        ui.volumeSlider.value = sliders.position_from_volume(volume)
        for feature, slider in self.shapeSliders.items():
            slider.value = float(p.GetParameter(f"Shape:{feature}") or self.specs[feature].start)
        texture = {f: float(p.GetParameter(f"Texture:{f}")) for f in self.textureSliders
                   if p.GetParameter(f"Texture:{f}")}
        model_dir = p.GetParameter("ModelDir") or None
        # limits first: the model's training range, holding the stored values so that none is clipped
        for feature, (low, high) in sliders.texture_limits(model_dir, texture).items():
            self.textureSliders[feature].minimum, self.textureSliders[feature].maximum = low, high
        for feature, value in texture.items():
            self.textureSliders[feature].value = value
        note = sliders.unfollowed_note(model_dir)
        self.ui.textureResponseLabel.text = note
        self.ui.textureResponseLabel.visible = bool(note)
        ui.previewCheckBox.checked = p.GetParameter("Preview") != "0"
        ui.variantsSpinBox.value = int(p.GetParameter("Variants") or 1)

    def updateParameterNode(self, p):
        ui = self.ui
        p.SetNodeReferenceID("PointNode", ui.pointSelector.currentNodeID)
        p.SetNodeReferenceID("PaintedSegmentation", ui.paintedSegmentSelector.currentNodeID())
        p.SetParameter("PaintedSegmentID", ui.paintedSegmentSelector.currentSegmentID() or "")
        p.SetNodeReferenceID("OrganSegmentation", ui.organSegmentSelector.currentNodeID())
        p.SetParameter("OrganSegmentID", ui.organSegmentSelector.currentSegmentID() or "")
        p.SetParameter("PlaceFrom", FROM_PAINTED if ui.placePaintedRadioButton.checked else FROM_POINT)
        p.SetParameter("PaintedShape", ops.SHAPE_INSIDE if ui.insideRadioButton.checked else
                       ops.SHAPE_AROUND if ui.aroundRadioButton.checked else ops.SHAPE_PAINTED)
        p.SetParameter(f"Shape:{ops.VOLUME}", str(ui.volumeSpinBox.value))
        for feature, slider in self.shapeSliders.items():
            p.SetParameter(f"Shape:{feature}", str(slider.value))
        if p.GetParameter("TextureSlidersSet") == "1":
            for feature, slider in self.textureSliders.items():
                p.SetParameter(f"Texture:{feature}", str(slider.value))
        p.SetParameter("Preview", "1" if ui.previewCheckBox.checked else "0")
        p.SetParameter("Variants", str(ui.variantsSpinBox.value))

    def parameters(self, operation):
        p, base = self.widget._parameterNode, self.widget.parameters()
        shape = {f: float(p.GetParameter(f"Shape:{f}")) for f in (ops.VOLUME, *self.shapeSliders)}
        overrides = ({f: float(p.GetParameter(f"Texture:{f}")) for f in self.textureSliders}
                     if p.GetParameter("TextureSlidersSet") == "1" else {})
        from_painted = operation == ops.PLACE and p.GetParameter("PlaceFrom") == FROM_PAINTED
        values = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
        values.update(operation=operation, point=p.GetNodeReference("PointNode"),
                      painted_segmentation=p.GetNodeReference("PaintedSegmentation"),
                      painted_segment_id=p.GetParameter("PaintedSegmentID"),
                      shape_mode=p.GetParameter("PaintedShape") if from_painted else ops.SHAPE_GENERATE,
                      organ_segmentation=p.GetNodeReference("OrganSegmentation"),
                      organ_segment_id=p.GetParameter("OrganSegmentID"), shape=shape, texture_overrides=overrides,
                      variants=int(p.GetParameter("Variants") or 1))
        return ops.OperationParameters(**values)

    def updateButtons(self, running):
        p = self.widget._parameterNode
        has_input = p is not None and p.GetNodeReference("InputVolume") is not None
        has_tumor = has_input and bool(p.GetParameter("SegmentID"))
        self.ui.placeButton.enabled = has_input and not running
        for button in (self.ui.removeTumorButton, self.ui.moveButton, self.ui.resizeButton,
                       self.ui.retextureButton):
            button.enabled = has_tumor and not running

    # -- sliders and preview ------------------------------------------------------------------------------------
    def onShapeChanged(self, *args):
        self.ui.volumeSlider.blockSignals(True)
        self.ui.volumeSlider.value = sliders.position_from_volume(self.ui.volumeSpinBox.value)
        self.ui.volumeSlider.blockSignals(False)
        self.widget.updateParameterNodeFromGUI()
        self._previewTimer.start()  # restarts: the preview waits until the slider rests

    def _observePoint(self, node):
        if node is self._observedPoint:
            return
        for event in (slicer.vtkMRMLMarkupsNode.PointModifiedEvent,
                      slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent):
            if self._observedPoint is not None:
                self.widget.removeObserver(self._observedPoint, event, self._onPointMoved)
            if node is not None:
                self.widget.addObserver(node, event, self._onPointMoved)
        self._observedPoint = node
        self._previewTimer.start()

    def _onPointMoved(self, caller, event):
        self._previewTimer.start()

    def updatePreview(self):
        p = self.widget._parameterNode
        if p is None or p.GetParameter("Preview") == "0" or self.widget.busy():
            self.preview.clear()
            return
        if importlib.util.find_spec("torch") is None:
            return  # a slider must not start installing packages; Place asks for them
        at_point = p.GetParameter("PlaceFrom") != FROM_PAINTED
        shape = self.parameters(ops.PLACE).shape
        try:
            state = self.preview.update(shape, int(p.GetParameter("Seed") or 0), p.GetNodeReference("InputVolume"),
                                        p.GetNodeReference("PointNode") if at_point else None)
        except RadSynthError as exc:
            self.ui.statusLabel.text = f"Preview: {exc}"
            return
        self.showMeasured(shape, state.measured, "preview")
        self.ui.statusLabel.text = f"Preview: {state.error}" if state.error else ""

    def showMeasured(self, targets, measured, source):
        for feature, label in self.measuredLabels.items():
            if feature not in measured:
                label.text = ""
                continue
            spec = self.specs[feature]
            label.text = f"{measured[feature]:.{spec.decimals}f}"
            target = targets.get(feature)
            wanted = f"target {target:.{spec.decimals}f}, " if target is not None else ""
            label.toolTip = f"{spec.label}: {wanted}measured {measured[feature]:.4g} on the {source}"

    def onTypicalShape(self):
        if not self.ensure_dependencies():
            return
        values = sliders.shape_defaults(self.preview.shape_model(), self.ui.volumeSpinBox.value)
        for feature, slider in self.shapeSliders.items():
            slider.value = values[feature]

    def resetTexture(self, onlyIfUnset=False):
        """Texture sliders back to the texture source's values (a preset, or measured on a segment)."""
        p = self.widget._parameterNode
        if p is None or (onlyIfUnset and p.GetParameter("TextureSlidersSet") == "1"):
            return
        params = self.widget.parameters()
        if params.texture_source != TEXTURE_PRESET and importlib.util.find_spec("radiomics") is None:
            return  # measuring a segment needs pyradiomics, installed on the first run
        try:
            values = sliders.texture_source_values(params)
        except RadSynthError:
            p.SetParameter("TextureSlidersSet", "0")  # no source yet: runs use the source as it will be
            return
        wasModified = p.StartModify()
        p.SetParameter("TextureSlidersSet", "1")
        for feature, value in values.items():
            p.SetParameter(f"Texture:{feature}", str(value))  # updateGUI widens the slider's limits to hold it
        p.EndModify(wasModified)

    # -- running ------------------------------------------------------------------------------------------------
    def run(self, operation):
        if self.widget.busy() or not self.ensure_dependencies():
            return
        try:
            batch = self.logic.prepare(self.parameters(operation))
        except RadSynthError as exc:
            slicer.util.errorDisplay(str(exc), windowTitle="TumorSynth")
            return
        self._previewTimer.stop()
        self.preview.clear()
        self.widget.startJob(self.logic, batch, self.onDone)

    def onDone(self, outputs):
        """Show the first variant, and make it the next operation's input so the user can iterate."""
        first = outputs[0]
        p = self.widget._parameterNode
        wasModified = p.StartModify()
        p.SetNodeReferenceID("InputVolume", first["volume"].GetID())
        p.SetNodeReferenceID("Segmentation", first["segmentation"].GetID())
        p.SetParameter("SegmentID", first["segment_id"])
        p.EndModify(wasModified)
        self.showMeasured(first["targets"], first["measured"], "result")
        slicer.util.setSliceViewerLayers(background=first["volume"], fit=False)
        names = ", ".join(f"'{o['volume'].GetName()}'" for o in outputs)
        self.ui.statusLabel.text = " ".join([f"Added {names} (marked synthetic)."] + first["warnings"])
        logging.info("TumorSynth %s: %s", outputs[0]["volume"].GetAttribute("RadSynth.Operation"), names)
