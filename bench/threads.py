"""How OpenMP threads should wait on a CPU: the tiny and mid DNAChunker training step at 8 kbp
under each wait setting, alone and with one core kept busy by another process.

    python -m bench.threads [--sizes tiny mid] [--steps 6] [--rounds 2]

Each point is a fresh process (OpenMP reads its settings when torch loads) timing `steps` training
steps after a warm-up; the median step is kept, the fastest of `rounds` round-robin repeats. The
load is a second Python process spinning on one core, as a data-loader worker, another job or a
laptop's other work would. Ratios are against libgomp's default (GOMP_SPINCOUNT=300000) in the
same run; dnachunker.threads.SPINCOUNT is what every entry point sets unless the user chose.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from dnachunker.cli import parser
from dnachunker.fileio import markdown_table
from dnachunker.threads import SPINCOUNT

SETTINGS = {"default (GOMP_SPINCOUNT=300000)": {"GOMP_SPINCOUNT": "300000"},
            "GOMP_SPINCOUNT=30000": {"GOMP_SPINCOUNT": "30000"},
            "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
            "GOMP_SPINCOUNT=3000": {"GOMP_SPINCOUNT": "3000"},
            "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"}}


def child(size: str, steps: int) -> None:
    """Time `steps` training steps of `size` at 8 kbp in this process; print the median (s)."""
    from .common import timed
    from .model import _setup, real_window
    step, _ = _setup("dnachunker", size, real_window(8192), "cpu")
    print(json.dumps({"step_s": timed(step, repeats=steps)}))


def measure(size: str, env: dict, steps: int, loaded: bool) -> float:
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if loaded else None
    try:
        r = subprocess.run([sys.executable, "-m", "bench.threads", "--child", size, "--steps", str(steps)],
                           env={**base, **env}, capture_output=True, text=True, check=True)
    finally:
        if hog:
            hog.kill()
            hog.wait()
    return json.loads(r.stdout.strip().splitlines()[-1])["step_s"]


def main(argv=None, prog: str | None = None):
    ap = parser(prog or f"python -m {__spec__.name}", __doc__)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "mid"], help="model sizes (bench.model.SIZES)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per point")
    ap.add_argument("--rounds", type=int, default=2, help="round-robin repeats; the fastest is kept")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return child(a.child, a.steps)
    best: dict[tuple, float] = {}
    for _ in range(a.rounds):
        for size in a.sizes:
            for name, env in SETTINGS.items():
                for loaded in (False, True):
                    t = measure(size, env, a.steps, loaded)
                    key = (size, name, loaded)
                    best[key] = min(best.get(key, t), t)
                    print(f"{size} {name} {'loaded' if loaded else 'alone'}: {t:.3f} s", file=sys.stderr, flush=True)
    rows = []
    for size in a.sizes:
        ref = {loaded: best[(size, next(iter(SETTINGS)), loaded)] for loaded in (False, True)}
        passive = best[(size, "OMP_WAIT_POLICY=PASSIVE", True)]
        for name in SETTINGS:
            alone, loaded = best[(size, name, False)], best[(size, name, True)]
            rows.append({"size": size, "setting": name + (" (the default set)" if name.endswith(f"={SPINCOUNT}") else ""),
                         "alone_s": alone, "loaded_s": loaded, "alone_vs_default": alone / ref[False],
                         "loaded_vs_passive": loaded / passive})
    print(markdown_table(rows, ["size", "setting", "alone_s", "loaded_s", "alone_vs_default", "loaded_vs_passive"]))


if __name__ == "__main__":
    main()
