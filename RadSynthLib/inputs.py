"""Reading a panel's input nodes into engine objects, with the checks every operation needs, on the main thread.

Everything here refuses bad input with a :class:`~radsynth.errors.RadSynthError` a clinician understands, before
anything slow starts, and never changes the scene.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from radsynth import mrml
from radsynth.errors import InvalidImageError, InvalidMaskError
from radsynth.pipelines import registry
from radsynth.volume import Volume, check_ct


def read_volume(node: Any, what: str = "the CT volume to modify", ct: bool = True) -> Volume:
    """A scalar volume node as a Volume; refuses none, a label map, a node outside a scene and (``ct``) non-CT."""
    if node is None:
        raise InvalidImageError(f"Select {what}.")
    name = node.GetName()
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InvalidImageError(f"'{name}' is a label map; select the image itself.")
    if node.GetScene() is None:
        raise InvalidImageError(f"'{name}' is not in the scene.")
    if node.GetImageData() is None:
        raise InvalidImageError(f"'{name}' holds no image data.")
    image = mrml.volume_from_node(node)
    if ct:
        check_ct(image)
    return image


def read_segment(segmentation: Any, segment_id: str, reference: Any, what: str) -> Volume:
    """One segment as a 0/1 mask on ``reference``'s grid (a volume node or a Volume already read from it)."""
    if segmentation is None or not segment_id:
        raise InvalidMaskError(f"Select {what}.")
    return mrml.segment_to_mask(segmentation, segment_id, reference)


def check_options(operation: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values the operation declares, checked against their declared type and range, with the declared
    defaults filled in for unset ones (``Operation.check``).

    A panel offers its widgets' values by option name; those the operation does not take are ignored, so one
    panel can serve several operations.
    """
    op = registry.get(operation)
    return op.check({k: v for k, v in values.items() if k in op.option_names})


def node_name(node: Optional[Any], default: str = "") -> str:
    return node.GetName() if node is not None else default
