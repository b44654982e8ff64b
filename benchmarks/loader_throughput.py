"""Loader throughput per process on full-size (768 x 1152 x 16) samples.

Synthesises a few samples into a temporary folder (plain HDF5, gzip HDF5, npy), then times one
process reading an epoch of them through ``deepcam_hvd.data`` loaders with 0/1/2 reader
threads, against a baseline that reads each file with plain h5py and normalises like the
reference (HWC arithmetic, then transpose to contiguous CHW). Files sit in the page cache (they
were just written), so this measures the CPU cost of decoding and normalising, not the file
system. Writes ``benchmarks/results/loader_throughput.json`` and prints a Markdown table.

The committed JSON also holds rows for spawned reader processes (``kind: spawn``), measured
before that reader was removed from the package: slower than threads on plain HDF5 (15.5
against 35.4 samples/s with 2 readers) and npy (14.2 against 23.0), faster only on gzip HDF5
(3.8 against 2.4).

    .venv/bin/python benchmarks/loader_throughput.py [--samples 16] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from deepcam_hvd.data.convert import convert_dataset
from deepcam_hvd.data.layout import DATA_KEY, LABEL_KEY, list_split
from deepcam_hvd.data.loader import LoaderSettings, train_loader
from deepcam_hvd.data.reader import read_stored
from deepcam_hvd.data.stats import read_stats
from deepcam_hvd.data.synth_dataset import synthesize_dataset, write_sample_hdf5
from deepcam_hvd.distributed.local import LocalBackend

RESULTS = Path(__file__).resolve().parent / "results" / "loader_throughput.json"
MB = 1e6


def make_roots(base: Path, samples: int, height: int, width: int) -> dict[str, Path]:
    """Write the same samples as plain HDF5, gzip HDF5 and npy roots under ``base``."""
    plain = base / "hdf5-plain"
    synthesize_dataset(plain, LocalBackend(), samples, 1, height, width, seed=333)
    gzip = base / "hdf5-gzip"
    for split in ("train", "validation"):
        files = list_split(plain, split)
        (gzip / split).mkdir(parents=True)
        for name in files.names:
            data, label = read_stored(files.paths(name), "hdf5")
            write_sample_hdf5(gzip / split / f"{name}.h5", data, label, "gzip")
    shutil.copyfile(plain / "stats.h5", gzip / "stats.h5")
    npy = base / "npy"
    convert_dataset(plain, npy, LocalBackend())
    return {"hdf5-plain": plain, "hdf5-gzip": gzip, "npy": npy}


def disk_mb(root: Path) -> float:
    """Average size on disk of one training sample (MB)."""
    files = [p for p in (root / "train").iterdir() if p.is_file()]
    return sum(p.stat().st_size for p in files) / MB / len(list_split(root, "train"))


def baseline_epoch(root: Path) -> tuple[float, int]:
    """Reference-style reading: h5py read, normalise in HWC, transpose, contiguous tensor."""
    stats = read_stats(root / "stats.h5")
    shift = stats.minval.astype(np.float32)
    scale = (1.0 / (stats.maxval - stats.minval)).astype(np.float32)
    files = list_split(root, "train")
    start = time.perf_counter()
    for name in files.names:
        with h5py.File(files.primary(name), "r") as f:
            data = f[DATA_KEY][...]
            label = f[LABEL_KEY][...].astype(np.int64)
        data = scale * (data - shift)
        x = torch.from_numpy(np.ascontiguousarray(np.transpose(data, (2, 0, 1))))
        y = torch.from_numpy(label)
        assert x.shape[0] == 16 and y.ndim == 2
    return time.perf_counter() - start, len(files)


def loader_epochs(root: Path, readers: int, epochs: int) -> dict[str, float]:
    """Time ``epochs`` passes of a loader with ``readers`` threads."""
    settings = LoaderSettings(local_batch_size=2, readers=readers)
    times = []
    with train_loader(root, 0, 1, settings) as loader:
        n = loader.num_samples
        for epoch in range(epochs):
            start = time.perf_counter()
            for batch in loader.iter_epoch(epoch):
                assert batch.data.shape[1] == 16
            times.append(time.perf_counter() - start)
    steady = times[1:] or times
    return {"first_s": times[0], "best_s": min(steady), "median_s": float(np.median(steady)),
            "samples": n}


def main() -> None:
    """Run the benchmark, write the JSON and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1152)
    parser.add_argument("--epochs", type=int, default=4, help="passes per setting (>= 2)")
    parser.add_argument("--tmp", default=tempfile.gettempdir())
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    load_at_start = os.getloadavg()
    base = Path(tempfile.mkdtemp(prefix="deepcam_loader_bench_", dir=args.tmp))
    try:
        t0 = time.perf_counter()
        roots = make_roots(base, args.samples, args.height, args.width)
        synth_s = time.perf_counter() - t0
        sample_mb = args.height * args.width * 16 * 4 / MB
        rows = []
        passes = [baseline_epoch(roots["hdf5-plain"]) for _ in range(args.epochs)]
        n = passes[0][1]
        base_times = [t for t, _ in passes]
        rows.append({"form": "hdf5-plain", "loader": "baseline h5py + numpy (reference-style)",
                     "readers": 0, "kind": "-", "samples_per_s": n / min(base_times[1:]),
                     "median_samples_per_s": n / float(np.median(base_times[1:])),
                     "first_epoch_s": base_times[0]})
        for form, root in roots.items():
            for readers in (0, 1, 2):
                res = loader_epochs(root, readers, args.epochs)
                rows.append({"form": form, "loader": "deepcam_hvd", "readers": readers,
                             "kind": "thread" if readers else "sync",
                             "samples_per_s": res["samples"] / res["best_s"],
                             "median_samples_per_s": res["samples"] / res["median_s"],
                             "first_epoch_s": res["first_s"]})
        for row in rows:
            row["mb_per_s"] = row["samples_per_s"] * sample_mb
            row["disk_mb_per_sample"] = disk_mb(roots[row["form"]])
        result = {
            "what": "single-process loader throughput, batch 2, files in page cache; "
                    "samples_per_s = best pass after the first, median_samples_per_s = median",
            "sample_shape": [args.height, args.width, 16],
            "samples": args.samples,
            "sample_mb_float32": sample_mb,
            "synth_seconds": synth_s,
            "host": {
                "cpus": os.cpu_count(),
                "load_average_at_start": load_at_start,
                "load_average_at_end": os.getloadavg(),
                "note": "2-core VM shared with other jobs: expect noise of +-30%",
                "python": platform.python_version(),
                "torch": torch.__version__,
                "numpy": np.__version__,
                "h5py": h5py.__version__,
                "hdf5": h5py.version.hdf5_version,
            },
            "results": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print("| form | loader | readers | samples/s best (median) | MB/s best | first epoch s "
              "| disk MB/sample |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['form']} | {r['loader']} | {r['readers']} ({r['kind']}) | "
                  f"{r['samples_per_s']:.2f} ({r['median_samples_per_s']:.2f}) | "
                  f"{r['mb_per_s']:.0f} | {r['first_epoch_s']:.2f} | "
                  f"{r['disk_mb_per_sample']:.1f} |")
        print(f"\nwrote {args.out} (load average at end: {os.getloadavg()})")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
