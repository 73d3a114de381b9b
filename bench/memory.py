"""Where a training step's memory goes: the peak of live tensor bytes and what holds it.

    python -m bench.memory [--size mid] [--length 8192] [--models dnachunker transformer] [--top 12]
                           [--by line|part]

One step (forward + backward + AdamW, as in bench.model) is run under `torch.profiler` with
`profile_memory=True`; replaying its allocation events gives the peak of live tensor bytes (the
quantity `torch.cuda.max_memory_allocated` reports on a GPU, without the CPU allocator's slack
that peak RSS includes) and, for the tensors alive at that moment, the code that allocated them:
forward (F, saved for backward) or backward (B, transient), by source line and op. The first
table compares the models' peaks side by side (the first model's peak over each one's); then
one table per model of its biggest holders. CPU only: on a GPU, `bench.model --device cuda`
reports `max_memory_allocated` directly (and `torch.cuda.memory._record_memory_history` shows
the holders).
"""
from __future__ import annotations

import re
from collections import Counter

from dnachunker.cli import parser
from dnachunker.fileio import markdown_table

from .common import in_fresh_process
from .model import SIZES, _setup, real_window

# a profiler frame "<path relative to sys.path, or absolute>(line): function" in our code
_OUR_FRAME = re.compile(r"(?:^|/)((?:dnachunker|bench)/.*)")


def _holder(event, by: str) -> str:
    """Who allocated a block: 'F|B <frames> :: op'. by='line': the three innermost frames of our
    code; by='part': the function the model's forward called (frames are named by the line of
    their `def`), e.g. ChunkingStage.down (encoders, routers), MainNetwork.forward, .up (dechunk,
    decoders) of DNAChunker."""
    from torch._C._profiler import _EventType
    frames, backward, e = [], False, event.parent
    while e is not None:
        if "autograd::engine" in e.name:
            backward = True
        ours = _OUR_FRAME.search(e.name) if e.typed[0] == _EventType.PyCall else None
        if ours:
            frames.append(ours.group(1))
        e = e.parent
    kind = "B" if backward else "F"
    if by == "part":
        ours = [f for f in frames if f.startswith("dnachunker/")]
        return f"{kind} {ours[-2] if len(ours) > 1 else ours[0] if ours else 'outside the model (optimizer, gradients)'}"
    op = event.parent.name if event.parent is not None else "?"
    return f"{kind} {' < '.join(frames[:3])} :: {op}"


def replay_peak(step, stacks: bool = True) -> tuple[int, dict]:
    """step() run once under the profiler -> (peak bytes of live CPU tensors it allocated, the
    blocks alive at that moment: {ptr: (bytes, allocation event)}). stacks=False records no call
    stacks or shapes (no holders to name; far less memory for the profiler itself)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import OpTree
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=stacks, with_stack=stacks) as prof:
        step()
    allocations = sorted((e for e in OpTree(prof.profiler.kineto_results).dfs()
                          if e.typed[0] == _EventType.Allocation and e.typed[1].device.type == "cpu"),
                         key=lambda e: e.start_time_ns)
    live, now, peak, at_peak = {}, 0, 0, {}
    for e in allocations:
        a = e.typed[1]
        if a.alloc_size > 0:
            live[a.ptr] = (a.alloc_size, e)
            now += a.alloc_size
            if now > peak:
                peak, at_peak = now, dict(live)
        elif a.ptr in live:  # frees of blocks allocated before the step are not counted
            now -= live.pop(a.ptr)[0]
    return peak, at_peak


def _profile(model_name: str, size: str, seq: str, top: int, by: str):
    step, _ = _setup(model_name, size, seq, "cpu")
    step()  # optimizer state and gradients exist before the measured step, as in training
    peak, at_peak = replay_peak(step)
    holders = Counter()
    for nbytes, e in at_peak.values():
        holders[_holder(e, by)] += nbytes
    return {"peak_MB": peak / 2**20, "holders": [(k, v / 2**20) for k, v in holders.most_common(top)]}


def main(argv=None, prog: str | None = None):
    ap = parser(prog or f"python -m {__spec__.name}", __doc__)
    ap.add_argument("--size", default="mid", choices=list(SIZES), help="model size")
    ap.add_argument("--length", type=int, default=8192, help="sequence length (bp)")
    ap.add_argument("--models", nargs="+", default=["dnachunker", "transformer"], help="models compared")
    ap.add_argument("--top", type=int, default=12, help="holders listed per model")
    ap.add_argument("--by", default="line", choices=["line", "part"],
                    help="group holders by source line and op, or by the part of the model")
    a = ap.parse_args(argv)
    seq = real_window(a.length)
    results = {}
    for name in a.models:
        print(f"profiling {a.size} {name} at {a.length} bp ...", flush=True)
        r = in_fresh_process(_profile, name, a.size, seq, a.top, a.by)
        if "error" in r:
            raise SystemExit(f"{name}: {r['error']}")
        results[name] = r
    first = a.models[0]
    ratio = f"{first}_over_this"  # e.g. DNAChunker's peak as a multiple of the Transformer's
    print(markdown_table([{"size": a.size, "model": n, "length": a.length, "tensor_peak_MB": r["peak_MB"],
                           ratio: results[first]["peak_MB"] / r["peak_MB"]} for n, r in results.items()],
                         ["size", "model", "length", "tensor_peak_MB", ratio]))
    for name, r in results.items():
        print(f"\n{name}: largest holders at the peak (F: allocated in forward, kept; B: backward)")
        print(markdown_table([{"MB": mb, "allocated by": where} for where, mb in r["holders"]], ["MB", "allocated by"]))


if __name__ == "__main__":
    main()
