"""The Place, Shape, Texture sliders, Operations and Variants sections of the TumorSynth panel (the Qt side).

Wiring only: widget values go to the module's typed parameter node (``TumorSynthParameterNode``, declared in
``defaults.PARAMETERS``); work goes to ``operations.OperationsLogic`` (through the module widget's background job,
so the GUI never blocks) and to ``sliders.ShapePreview``.
"""

import dataclasses
import importlib.util
import logging

import qt
import slicer
from slicer.i18n import tr as _

from radsynth.errors import RadSynthError

from . import operations as ops
from . import sliders
from .defaults import FROM_PAINTED, FROM_POINT, TEXTURE_PRESET

PREVIEW_DELAY_MS = 150   # a slider drag fires dozens of changes a second; preview once it pauses


def texture_name(feature):
    return f"texture_{feature}"


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
        # ranges from the engine's declarations (shape) and the texture model's defaults (texture)
        for feature, slider in {**self.shapeSliders, **self.textureSliders}.items():
            spec = self.specs[feature]
            slider.minimum, slider.maximum, slider.decimals = spec.minimum, spec.maximum, spec.decimals
            slider.singleStep = 10.0 ** -spec.decimals
        ui.volumeSlider.maximum = sliders.VOLUME_STEPS
        volume = self.specs[ops.VOLUME]
        ui.volumeSpinBox.minimum, ui.volumeSpinBox.maximum = volume.minimum, volume.maximum
        ui.variantsSpinBox.maximum = ops.MAX_VARIANTS
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
        ui.pointSelector.setCurrentNode(p.pointNode)
        ui.pointPlaceWidget.setCurrentNode(p.pointNode)
        self._observePoint(p.pointNode)
        ui.paintedSegmentSelector.setCurrentNode(p.paintedSegmentation)
        ui.paintedSegmentSelector.setCurrentSegmentID(p.paintedSegmentID)
        ui.organSegmentSelector.setCurrentNode(p.organSegmentation)
        ui.organSegmentSelector.setCurrentSegmentID(p.organSegmentID)
        painted = p.placeFrom == FROM_PAINTED
        ui.placePaintedRadioButton.checked, ui.placeAtPointRadioButton.checked = painted, not painted
        ui.useShapeRadioButton.checked = p.paintedShape == ops.SHAPE_PAINTED
        ui.insideRadioButton.checked = p.paintedShape == ops.SHAPE_INSIDE
        ui.aroundRadioButton.checked = p.paintedShape == ops.SHAPE_AROUND
        for w in (ui.paintedLabel, ui.paintedSegmentSelector, ui.useShapeRadioButton, ui.insideRadioButton,
                  ui.aroundRadioButton):
            w.enabled = painted
        volume = getattr(p, ops.VOLUME)
        ui.volumeSpinBox.value = volume
        ui.volumeSlider.value = sliders.position_from_volume(volume)
        for feature, slider in self.shapeSliders.items():
            slider.value = getattr(p, feature)
        texture = {f: getattr(p, texture_name(f)) for f in self.textureSliders} if p.textureSlidersSet else {}
        model_dir = p.modelDir or None
        # limits first: the model's training range, holding the stored values so that none is clipped
        for feature, (low, high) in sliders.texture_limits(model_dir, texture).items():
            self.textureSliders[feature].minimum, self.textureSliders[feature].maximum = low, high
        for feature, value in texture.items():
            self.textureSliders[feature].value = value
        note = sliders.unfollowed_note(model_dir)
        self.ui.textureResponseLabel.text = note
        self.ui.textureResponseLabel.visible = bool(note)
        ui.previewCheckBox.checked = p.preview
        ui.variantsSpinBox.value = p.variants

    def updateParameterNode(self, p):
        ui = self.ui
        p.pointNode = ui.pointSelector.currentNode()
        p.paintedSegmentation = ui.paintedSegmentSelector.currentNode()
        p.paintedSegmentID = ui.paintedSegmentSelector.currentSegmentID() or ""
        p.organSegmentation = ui.organSegmentSelector.currentNode()
        p.organSegmentID = ui.organSegmentSelector.currentSegmentID() or ""
        p.placeFrom = FROM_PAINTED if ui.placePaintedRadioButton.checked else FROM_POINT
        p.paintedShape = (ops.SHAPE_INSIDE if ui.insideRadioButton.checked else
                          ops.SHAPE_AROUND if ui.aroundRadioButton.checked else ops.SHAPE_PAINTED)
        setattr(p, ops.VOLUME, float(ui.volumeSpinBox.value))
        for feature, slider in self.shapeSliders.items():
            setattr(p, feature, float(slider.value))
        if p.textureSlidersSet:
            for feature, slider in self.textureSliders.items():
                setattr(p, texture_name(feature), float(slider.value))
        p.preview = bool(ui.previewCheckBox.checked)
        p.variants = int(ui.variantsSpinBox.value)

    def parameters(self, operation):
        p, base = self.widget._parameterNode, self.widget.parameters()
        shape = {f: float(getattr(p, f)) for f in ops.SHAPE_FEATURES}
        overrides = ({f: float(getattr(p, texture_name(f))) for f in self.textureSliders}
                     if p.textureSlidersSet else {})
        from_painted = operation == ops.PLACE and p.placeFrom == FROM_PAINTED
        values = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
        values.update(operation=operation, point=p.pointNode, painted_segmentation=p.paintedSegmentation,
                      painted_segment_id=p.paintedSegmentID,
                      shape_mode=p.paintedShape if from_painted else ops.SHAPE_GENERATE,
                      organ_segmentation=p.organSegmentation, organ_segment_id=p.organSegmentID, shape=shape,
                      texture_overrides=overrides, variants=p.variants)
        return ops.OperationParameters(**values)

    def updateButtons(self, running):
        p = self.widget._parameterNode
        has_input = p is not None and p.inputVolume is not None
        has_tumor = has_input and bool(p.segmentID)
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
        if p is None or not p.preview or self.widget.busy():
            self.preview.clear()
            return
        if importlib.util.find_spec("torch") is None:
            return  # a slider must not start installing packages; Place asks for them
        at_point = p.placeFrom != FROM_PAINTED
        shape = self.parameters(ops.PLACE).shape
        try:
            state = self.preview.update(shape, p.seed, p.inputVolume, p.pointNode if at_point else None)
        except RadSynthError as exc:
            self.ui.statusLabel.text = _("Preview: {message}").format(message=exc)
            return
        self.showMeasured(shape, state.measured, "preview")
        self.ui.statusLabel.text = _("Preview: {message}").format(message=state.error) if state.error else ""

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
        if p is None or (onlyIfUnset and p.textureSlidersSet):
            return
        params = self.widget.parameters()
        if params.texture_source != TEXTURE_PRESET and importlib.util.find_spec("radiomics") is None:
            return  # measuring a segment needs pyradiomics, installed on the first run
        try:
            values = sliders.texture_source_values(params)
        except RadSynthError:
            p.textureSlidersSet = False  # no source yet: runs use the source as it will be
            return
        wasModified = p.StartModify()
        p.textureSlidersSet = True
        for feature, value in values.items():
            setattr(p, texture_name(feature), value)  # updateGUI widens the slider's limits to hold it
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
        p.inputVolume = first["volume"]
        p.segmentation = first["segmentation"]
        p.segmentID = first["segment_id"]
        p.EndModify(wasModified)
        self.showMeasured(first["targets"], first["measured"], "result")
        slicer.util.setSliceViewerLayers(background=first["volume"], fit=False)
        names = ", ".join(f"'{o['volume'].GetName()}'" for o in outputs)
        message = _("Added {names} (marked synthetic).").format(names=names)
        self.ui.statusLabel.text = " ".join([message] + first["warnings"])
        logging.info("TumorSynth %s: %s", outputs[0]["volume"].GetAttribute("RadSynth.Operation"), names)
