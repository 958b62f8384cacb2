"""Start-up cost of `fashionzoo predict one.png` against `python -c "import tensorflow"`, measured side by side.

Usage: python benchmarks/startup.py [--repeats N] [IMAGE]   (prints one JSON object; median wall times in seconds)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "fashionzoo_predict": [sys.executable, "-m", "fashionzoo", "predict"],
    "import_tensorflow": [sys.executable, "-c", "import tensorflow"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", default=str(ROOT / "examples" / "images" / "ankle-boot-photo.png"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):  # alternate, so both see the same machine state
        for name, command in COMMANDS.items():
            started = time.perf_counter()
            extra = [args.image] if name == "fashionzoo_predict" else []
            subprocess.run(command + extra, check=True, capture_output=True)
            times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["import_tensorflow"] / medians["fashionzoo_predict"]
    print(json.dumps({"median_s": medians, "tensorflow_import_over_predict": ratio, "repeats": args.repeats}))


if __name__ == "__main__":
    main()
