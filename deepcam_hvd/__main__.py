"""``python -m deepcam_hvd``: the same as the ``deepcam-hvd`` command."""

from deepcam_hvd.entry import main

main()
