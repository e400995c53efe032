"""Study throughput in runs per minute: the local executor with 1 and 2 workers, Ray with 1 and 2 CPUs.

    python -m bench.scaling --preset quickstart --epochs 10 --seeds 3

Each configuration runs the same study from scratch into a temporary directory (CPU). Ray is started
on this machine with `--cpus` CPUs (one per run, so that many runs at once) before the clock starts;
its start-up is printed separately. Ray's worker processes start (and import torch) inside the timed
part, as they do in a real study.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

from bench import stored
from reglab.study import LocalExecutor, load_spec, run_study


def runs_per_minute(spec, executor) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as out:
        result = run_study(spec, out, executor=executor, progress=False)
    return len(result.executed), 60 * len(result.executed) / result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quickstart")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cpus", type=int, nargs="+", default=[1, 2], help="local workers / Ray CPUs to try")
    args = parser.parse_args()
    spec = load_spec(args.preset, seeds=args.seeds, epochs=args.epochs).override({"train.device": "cpu"})
    print(f"{spec.name}: {len(spec.arms)} arms x {len(spec.seed_list)} seeds, {args.epochs} epochs")
    for n in args.cpus:
        runs, rate = runs_per_minute(spec, LocalExecutor(workers=n))
        print(f"local  workers={n}: {runs} runs, {rate:6.1f} runs/min", flush=True)
    import ray

    from reglab.study.ray_executor import RayExecutor

    for n in args.cpus:
        start = time.perf_counter()
        ray.init(address="local", num_cpus=n, include_dashboard=False, logging_level=logging.WARNING)
        started = time.perf_counter() - start
        try:
            runs, rate = runs_per_minute(spec, RayExecutor())
        finally:
            ray.shutdown()
        print(f"ray    cpus={n}:    {runs} runs, {rate:6.1f} runs/min (Ray start-up {started:.1f} s, not counted)",
              flush=True)


if __name__ == "__main__":
    stored(main, "scaling")
