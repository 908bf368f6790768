"""Share of a worker's time per dataflow step, from a py-spy raw profile of `bytewax.run`.

    py-spy record -r 100 --format raw -o drain.raw -- python -m bytewax.run "flows.feeds:get_flow()"
    python -m scripts.profile_steps drain.raw [--top 12]

(`python -m scripts.ab_drain --py-spy DIR …` records one such profile per run.) Each sample is
charged to the step whose code it is in: a stateful logic by its class and what Bytewax called
(`UserLogic.timer` for the users step's timers, `UserLogic.eof` for its end-of-input sweep,
`UserLogic.batch` for its batches and what they run), a sink by its class, a `flows/feeds.py`
lambda by the step id on its line, Bytewax's own Python shims around a step's function to
"bytewax shims", and a sample with no Python frame below Bytewax's entry point (`run.py`) to
"bytewax runtime" — the Rust side: routing, exchange, timer scans, Kafka reads, waiting for the
GIL. A process of a cluster (`-i/-a`) runs its worker on a thread of its own, without `run.py`:
stacks that start in `flows/` or Bytewax's operators count as the worker's, and the main
thread's native samples as "bytewax runtime". Start-up (imports, building the flow) is reported apart. Inclusive = every sample under the
step; the table also splits each step's samples by the package of the innermost frame (self).
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*):(?P<line>\d+)\)$")
FEEDS = Path(__file__).resolve().parent.parent / "flows" / "feeds.py"
STEP_CALL = re.compile(r"""op\.\w+\(\s*["'](?P<step>[\w-]+)["']""")
# a logic's methods that run on its timer (`on_eof`: the end-of-input sweep; the rest: batches)
TIMER_METHODS = {"on_notify", "_fire", "_run", "_evict_if_idle"}


def step_of_line() -> dict[int, str]:
    """flows/feeds.py line → the step id its lambda belongs to: the innermost `op.*("step", …)`
    call open where the line's `lambda` starts, or, on a line without one (a lambda's
    continuation), the innermost call open at the line's start."""
    steps: dict[int, str] = {}
    open_calls: list[tuple[int, str]] = []  # (paren depth at the call, step id)
    depth = 0
    for number, line in enumerate(FEEDS.read_text().splitlines(), 1):
        line = line.split("  #")[0]  # comments hold unbalanced parentheses
        calls = {m.start(): m.group("step") for m in STEP_CALL.finditer(line)}
        lambda_at = line.find("lambda")
        owner = open_calls[-1][1] if open_calls else None
        for col, ch in enumerate(line):
            if col in calls:
                open_calls.append((depth, calls[col]))
            if col == lambda_at and open_calls:
                owner = open_calls[-1][1]
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                while open_calls and open_calls[-1][0] >= depth:
                    open_calls.pop()
        steps[number] = owner or next(iter(calls.values()), "?")
    return steps


def parse(path: str):
    """(frames, count) per line of a py-spy raw file; frames outermost first as (func, file, line)."""
    for raw in Path(path).read_text().splitlines():
        stack, _, count = raw.rpartition(" ")
        if not count.isdigit():
            continue
        frames = []
        for text in stack.split(";") if stack else []:
            m = FRAME.match(text)
            frames.append((m["func"], m["file"], int(m["line"])) if m else (text, "", 0))
        yield frames, int(count)


def classify(frames, feeds_steps) -> str:
    """The step a sample is charged to (see the module doc)."""
    entry = next((i for i, f in enumerate(frames) if f[1] == "run.py"), None)
    if entry is not None:
        below = frames[entry + 1:]
    elif frames and frames[0][1].startswith(("flows/", "operators/__init__")):
        below = frames  # a cluster worker (`-i/-a`) runs the dataflow on a thread of its own
    else:
        return "other threads"
    if not below:
        return "bytewax runtime"
    if any(f[0] in ("build_flow", "get_flow", "_find_and_load") for f in below[:3]) or \
            below[0][0] in ("_find_and_load", "<module>"):
        return "start-up"
    owner, called = None, None  # called: "timer" | "eof" | "batch", by the outermost logic frame
    for func, file, line in below:
        if file.endswith("flows/feeds.py"):
            if owner is None:  # a lambda by its step, a helper function by its name
                owner = feeds_steps.get(line, "?") if "<lambda>" in func else func
            continue
        if file.endswith("flows/adapters.py") and "." in func:
            cls, _, method = func.partition(".")
            method = method.split(".")[0]
            if called is None:
                called = "eof" if method == "on_eof" else "timer" if method in TIMER_METHODS \
                    else "batch"
            if not cls.startswith("_") or cls in ("_RedisPartition",):
                name = {"_RedisPartition": "RedisSink"}.get(cls, cls)
                return f"{name}.{called}" if cls.endswith("Logic") else name
            if cls.endswith("Partition"):
                return cls.strip("_").replace("Partition", "Sink")
    if owner is not None:
        return owner
    if all("bytewax" in f[1] or f[1].startswith("operators/__init__") or f[1] == "run.py"
           for f in below):
        return "bytewax shims"
    return below[0][0]


def package_of(frame) -> str:
    func, file, _ = frame
    if file == "run.py":
        return "bytewax runtime"
    if file.startswith("operators/__init__") or "bytewax" in file:
        return "bytewax shims"
    if file.startswith(("flows/", "operators/", "schemas/", "config/")):
        return file.split("/")[0]
    if "redis" in file or "hiredis" in file:
        return "redis-py"
    return "python/other"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", nargs="+", help="py-spy --format raw files (summed)")
    parser.add_argument("--top", type=int, default=25, help="rows of the table")
    args = parser.parse_args(argv)
    feeds_steps = step_of_line()
    steps: collections.Counter = collections.Counter()
    selves: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for path in args.raw:
        for frames, count in parse(path):
            step = classify(frames, feeds_steps)
            steps[step] += count
            if frames:
                selves[step][package_of(frames[-1])] += count
    total = sum(steps.values())
    startup = steps.pop("start-up", 0) + steps.pop("other threads", 0)
    work = total - startup
    print(f"{total:,} samples; start-up and other threads {startup:,}; the drain {work:,} = 100%")
    print(f"{'step':<34} {'share':>6}  self by package")
    for step, count in steps.most_common(args.top):
        split = ", ".join(f"{p} {c / count:.0%}" for p, c in selves[step].most_common(3))
        print(f"{step:<34} {count / work:>6.1%}  {split}")
    rest = sum(c for _, c in steps.most_common()[args.top:])
    if rest:
        print(f"{'(others)':<34} {rest / work:>6.1%}")


if __name__ == "__main__":
    main()
