"""Stands in for ``mpirun ... deepcam-hvd train`` in runner tests: writes a finished log.

Usage: fake_train.py DEEPCAM train [OPTIONS] --output_dir DIR [--seed S]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.submission.mllogs import write_log  # noqa: E402

args = sys.argv[1:]
out = Path(args[args.index("--output_dir") + 1])
# Like the trainer: --seed if given, else a fresh one from the clock (--fixed-seed: 333).
seed = int(args[args.index("--seed") + 1]) if "--seed" in args else \
    333 if "--fixed-seed" in args else time.time_ns() // 1000 % (2**31 - 2) + 1
if "--sleep" in args:
    time.sleep(float(args[args.index("--sleep") + 1]))
if "--fail" in args:
    print("training failed on purpose", file=sys.stderr)
    sys.exit(3)
print("fake training:", " ".join(args[1:]))
write_log(out / "mlperf.log", seed=seed, epochs=4, accuracy=0.85)
