"""The ``deepcam-hvd`` console entry point: settle the allocator, then run the CLI.

Kept free of heavy imports: choosing the allocator may re-execute the process (see
:mod:`deepcam_hvd.allocator`), which must happen before torch is loaded.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run ``deepcam-hvd`` on the planned allocator."""
    from deepcam_hvd.allocator import exec_with_allocator
    from deepcam_hvd.errors import DeepcamError

    try:
        exec_with_allocator()
    except DeepcamError as exc:
        print(f"deepcam-hvd: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # exec itself failed: run on the system allocator instead
        print(f"deepcam-hvd: warning: could not restart with the planned allocator ({exc}); "
              "using the system malloc", file=sys.stderr)
    from deepcam_hvd.cli import main as cli_main

    cli_main()
