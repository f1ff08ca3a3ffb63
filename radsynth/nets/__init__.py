"""Network builders on MONAI blocks. Each builder takes the ``architecture`` dict stored in a model card."""
