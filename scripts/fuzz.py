"""Fuzz sepfix for a while: mutate the sample models (bytes and graph level), run check and repair.

    python scripts/fuzz.py --minutes 10 [--jobs 2] [--seed 0] [--crashes fuzz-crashes]

The mutators and the oracle are tests/mutators.py, the same the hypothesis tests use: only
SepfixError may escape `sepfix.check` and `repair_file`, and a failed repair leaves nothing in
its output folder. Each input is replayable from its seed; a crashing input is written to the
crash folder (`<seed>-<sample>.onnx` and a `.txt` with the mutations and the traceback). Prints
inputs tried, outcomes and crashes; exit code 1 when anything crashed.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import random
import resource
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import mutators  # noqa: E402

PER_INPUT_SECONDS = 60  # longer is a hang, reported as a crash
MEMORY_LIMIT = 6 * 2**30  # an absurd allocation fails as MemoryError instead of killing the machine


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def mutant(seed: int, samples) -> tuple[str, str, bytes | None, list[str]]:
    """(level, sample name, bytes, mutations) for one seed: the same seed, the same mutant."""
    rnd = random.Random(seed)
    name, data, model = rnd.choice(samples)
    if rnd.random() < 0.5:
        mutated, done = mutators.mutate_bytes(data, rnd)
        return "bytes", name, mutated, done
    changed, done = mutators.mutate_graph(model, rnd)
    return "graph", name, mutators.serialize(changed), done


def worker(job: int, jobs: int, first_seed: int, deadline: float, crash_dir: str, queue) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    signal.signal(signal.SIGALRM, _alarm)
    samples = mutators.load_samples()
    workdir = mutators.scratch()
    counts: collections.Counter = collections.Counter()
    seed = first_seed + job
    while time.time() < deadline:
        level, name, data, done = mutant(seed, samples)
        if data is not None:
            signal.alarm(PER_INPUT_SECONDS)
            try:
                outcome = mutators.run_one(data, repair=level == "graph", workdir=workdir)
                counts[f"{level}:{outcome}"] += 1
            except (mutators.Crash, _Hang, MemoryError) as crash:
                counts["crash"] += 1
                stem = Path(crash_dir) / f"{seed}-{name[:-5]}-{level}"
                stem.with_suffix(".onnx").write_bytes(data)
                text = "hang" if isinstance(crash, _Hang) else "".join(traceback.format_exception(crash))
                stem.with_suffix(".txt").write_text(
                    f"seed {seed}, sample {name}, level {level}\nmutations: {done}\n\n{text}")
            finally:
                signal.alarm(0)
        else:
            counts["unserializable"] += 1
        counts["tried"] += 1
        seed += jobs
    shutil.rmtree(workdir, ignore_errors=True)
    queue.put(dict(counts))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=max(1, (multiprocessing.cpu_count() or 2)))
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: from the clock)")
    parser.add_argument("--crashes", default="fuzz-crashes", help="folder for crashing inputs")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time()) * 1000
    Path(args.crashes).mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.minutes * 60
    start = time.time()
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=worker, args=(j, args.jobs, seed, deadline, args.crashes, queue))
             for j in range(args.jobs)]
    for proc in procs:
        proc.start()
    total: collections.Counter = collections.Counter()
    for _ in procs:
        total.update(queue.get())
    for proc in procs:
        proc.join()
    elapsed = time.time() - start
    print(f"fuzz: {total['tried']} inputs in {elapsed:.0f} s ({args.jobs} jobs, seeds from {seed}), "
          f"{total['crash']} crashes" + (f" (written to {args.crashes})" if total["crash"] else ""))
    for key in sorted(k for k in total if ":" in k or k == "unserializable"):
        print(f"  {key}: {total[key]}")
    return 1 if total["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())
