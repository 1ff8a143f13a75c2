"""Loads polyhead's TensorBoard logs with TensorBoard's own reader and
compares every epoch scalar with the run's history.json.

    python scripts/tensorboard/check_logs.py LOG_DIR HISTORY_JSON

LOG_DIR is the folder given to `polyhead::TensorBoard::new` (with `train/`
and `validation/` inside); HISTORY_JSON is `History::save_json`'s file of
the same run. Needs `pip install tensorboard` (tested with 2.21.0). Exits 1
on any difference. Not run by CI (TensorBoard is a Python package).
"""

import json
import math
import struct
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def as_float32(value):
    """The float32 that polyhead wrote for `value`, as a Python float."""
    return struct.unpack("<f", struct.pack("<f", value))[0]


def main(log_dir, history_path):
    with open(history_path) as f:
        history = json.load(f)
    runs = {}
    for run in ("train", "validation"):
        accumulator = EventAccumulator(f"{log_dir}/{run}", size_guidance={"scalars": 0})
        accumulator.Reload()
        runs[run] = accumulator
    failures = 0
    compared = 0
    for name, values in history.items():
        run, base = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
        tag = f"epoch_{base}"
        if tag not in runs[run].Tags()["scalars"]:
            print(f"missing: {run}/{tag}")
            failures += 1
            continue
        events = runs[run].Scalars(tag)
        got = [(e.step, e.value) for e in events]
        want = [(i, as_float32(v)) for i, v in enumerate(values) if v is not None]
        same = len(got) == len(want) and all(
            gs == ws and (gv == wv or (math.isnan(gv) and math.isnan(wv)))
            for (gs, gv), (ws, wv) in zip(got, want)
        )
        compared += len(want)
        if not same:
            print(f"differs: {run}/{tag}: {got} vs {want}")
            failures += 1
    histograms = runs["train"].Tags().get("histograms", [])
    print(f"{compared} epoch values compared in {len(history)} series, "
          f"{failures} differing; {len(histograms)} histogram tags")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
