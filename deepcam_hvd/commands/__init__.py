"""Subcommands of the ``deepcam-hvd`` CLI, one module each."""
