"""Qt-free logic of the ReaderStudy module."""
