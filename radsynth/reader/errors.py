"""Errors of reader studies: one family under :class:`radsynth.errors.RadSynthError`, so every front end (CLI,
Slicer panel, web reader) shows the message as it is and nothing was changed."""

from ..errors import RadSynthError


class StudyError(RadSynthError):
    """The study folder, a reader token, an answer or a case file is missing, invalid or was tampered with."""


class AnswerKeyError(StudyError):
    """The answer key is missing, unreadable, was changed after the study was built, or belongs to another study."""
