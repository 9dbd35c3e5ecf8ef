"""Runs trials in batches, each batch in a worker subprocess under an address-space and a
time limit; a crash or hang ends the batch at that trial and a fresh worker goes on."""

from __future__ import annotations

import json
import os
import random
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import mobilenetv3

from .mutate import Files, mutate
from .targets import OUTCOMES

WORKER = Path(__file__).with_name("worker.py")
START_SECONDS = 120.0  # a worker imports torch and the package before its first trial


@dataclass
class Trial:
    id: int
    format: str
    mutations: list[str]
    files: Files
    outcome: str = ""
    detail: str = ""


def make_trials(seeds: dict[str, list[Files]], per_format: int, seed: int,
                formats: tuple[str, ...] | None = None) -> list[Trial]:  # fmt: skip
    """`per_format` mutated files of each format, the same for the same `seed`."""
    trials = []
    for fmt in formats or tuple(seeds):
        for i in range(per_format):
            rng = random.Random(f"{seed}:{fmt}:{i}")
            files, names = mutate(rng.choice(seeds[fmt]), fmt, rng)
            trials.append(Trial(len(trials), fmt, names, files))
    return trials


def _write(trial: Trial, folder: Path) -> str:
    """The trial's files on disk; the path its loader takes (a checkpoint: the prefix)."""
    stem = folder / f"t{trial.id}"
    for suffix, data in trial.files.items():
        Path(f"{stem}{suffix}").write_bytes(data)
    if trial.format == "checkpoint":
        return str(stem)
    return f"{stem}{next(iter(trial.files))}"


def _limits(memory: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run_batch(batch: list[Trial], folder: Path, timeout: float, memory: int) -> int:
    """Run trials until one crashes or hangs (or all ran); returns how many got an outcome."""
    jobs = [{"id": t.id, "format": t.format, "path": _write(t, folder)} for t in batch]
    (folder / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(Path(mobilenetv3.__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    by_id = {t.id: t for t in batch}
    proc = subprocess.Popen([sys.executable, str(WORKER), str(folder / "jobs.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            preexec_fn=lambda: _limits(memory))  # fmt: skip
    try:
        return _collect(proc, by_id, timeout)
    finally:
        proc.kill()
        proc.wait()


def _collect(proc: subprocess.Popen, by_id: dict[int, Trial], timeout: float) -> int:
    """Read the worker's lines (unbuffered: a line left in a buffer would look like a hang)
    and give each trial its outcome; stops at the first crash or hang."""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    current, done, pending = None, 0, b""
    deadline = time.monotonic() + START_SECONDS + timeout
    while done < len(by_id):
        if not selector.select(max(0.0, deadline - time.monotonic())):
            if current is None:
                raise RuntimeError("fuzz worker did not start")
            by_id[current].outcome, by_id[current].detail = "hang", f"over {timeout:.0f} s"
            return done + 1
        chunk = os.read(proc.stdout.fileno(), 1 << 16)
        if not chunk:  # the worker died during `current`
            code = proc.wait()
            if current is None:
                raise RuntimeError(f"fuzz worker failed to start (exit {code})")
            name = signal.Signals(-code).name if code < 0 else f"exit {code}"
            by_id[current].outcome, by_id[current].detail = "crash", name
            return done + 1
        *lines, pending = (pending + chunk).split(b"\n")
        for message in map(json.loads, lines):
            if "start" in message:
                current, deadline = message["start"], time.monotonic() + timeout
                continue
            by_id[message["id"]].outcome = message["outcome"]
            by_id[message["id"]].detail = message["detail"]
            current, done = None, done + 1
    return done


def run(trials: list[Trial], batch: int = 50, timeout: float = 30.0,
        memory: int = 3 << 30) -> list[Trial]:  # fmt: skip
    """Give every trial an outcome (see targets.OUTCOMES)."""
    pending = list(trials)
    with tempfile.TemporaryDirectory(prefix="mobilenetv3-fuzz-") as tmp:
        while pending:
            folder = Path(tempfile.mkdtemp(dir=tmp))
            ran = _run_batch(pending[:batch], folder, timeout, memory)
            shutil.rmtree(folder)
            pending = pending[ran:]
    return trials


def table(trials: list[Trial]) -> dict[str, dict[str, int]]:
    """Counts by format x outcome."""
    counts = Counter((t.format, t.outcome) for t in trials)
    formats = sorted({t.format for t in trials})
    return {f: {o: counts[(f, o)] for o in OUTCOMES} for f in formats}


def report(trials: list[Trial]) -> list[dict]:
    """The trials as JSON-able records (without their file bytes)."""
    return [{k: v for k, v in asdict(t).items() if k != "files"} for t in trials]
