"""Where a photo's CPU time goes, stage by stage, in this tree and (``--against``) another.

    python bench/stages.py [--against /work/wt-base] [--photos 12] [--rounds 3]

Each tree runs in a process of its own (``PYTHONPATH=<tree>``, this venv's libraries), builds
the engine as the bot does, and styles the load benchmark's 1280x960 portrait (bench/load.py)
``--photos`` times, one at a time, through the engine's own steps (`Engine.load`, then
`Engine.render`). The tree's functions are wrapped by name and charged the process CPU time
(every thread) they used, the decode child's CPU included (RUSAGE_CHILDREN):

* decode child: the child process's start-up, its limits and the report, i.e. the decode's CPU
  in every process (this one, a decode server and the child) minus what decoding the same bytes
  in this process costs (`decode_here`);
* decode: libjpeg's share of `decode_here` (everything in it but the resize);
* resize: `imageio._fit`;
* faces: `FaceDetector.detect`;
* network: `MultiStyleNetwork.run` (its input and output layout included);
* blend + keep colours: `engine.blend` and `engine.keep_colours`;
* encode: `encode_jpeg`;
* collection: the full garbage collection that ends each job (`forget_freed_copies`);
* other: the rest of the engine's steps.
Rounds alternate between the trees (the machine is shared; compare the ratios). HTTP and the
queue are not in here: bench/load.py prints the bot's CPU per photo, whose excess over this
table's total is theirs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("decode child", "decode", "resize", "faces", "network", "blend + keep colours", "encode", "collection", "other")


def _cpu() -> float:
    """CPU seconds of this process (all threads), of its reaped children, and of its live children
    with theirs (a decode server and the decode children it forked and reaped)."""
    own = time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own + children.ru_utime + children.ru_stime + live_children_cpu(os.getpid())


def live_children_cpu(pid: int) -> float:
    """utime + stime + cutime + cstime of each live child of ``pid`` (found through each of its
    threads' children lists: cheap enough not to blur the small stages)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for task in tasks:
        try:
            kids = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            try:
                fields = Path(f"/proc/{kid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(v) for v in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def profile(photos: int) -> dict:
    """Run in the tree on sys.path[0], the portrait's bytes on stdin: per-stage CPU seconds per
    photo."""
    import inference.engine as engine_module
    import inference.imageio as imageio
    import inference.networks as networks
    from handlers.memory import forget_freed_copies
    from inference import Engine, EngineConfig, StyleRequest

    spent = {stage: 0.0 for stage in STAGES}
    depth = [0]

    def charge(stage, fn):
        def timed(*args, **kwargs):
            if depth[0]:  # already inside a timed stage: it is charged there
                return fn(*args, **kwargs)
            depth[0] += 1
            begun = _cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                if stage == "decode child":
                    time.sleep(0.05)  # a decode server reaps its child (and counts its CPU) just after
                spent[stage] += _cpu() - begun
                depth[0] -= 1

        return timed

    try:
        from bot.safeguards import heap
    except ImportError:  # a tree from before bot/ had rooms (--against d7854f8)
        from bot import heap  # type: ignore[no-redef]

    heap.wipe_freed_memory()  # as `darkroom run` does
    engine = Engine(EngineConfig())
    engine.verify()
    jpeg = sys.stdin.buffer.read()
    request = StyleRequest(engine.catalogue.default.key)
    # decode_here alone, in this process: what the child's decoding itself costs
    limits = engine.config.limits
    resize_alone = [0.0]
    real_fit = imageio._fit

    def fit(*args):
        begun = _cpu()
        try:
            return real_fit(*args)
        finally:
            resize_alone[0] += _cpu() - begun

    imageio._fit = fit
    imageio.decode_here(jpeg, limits)  # warm
    resize_alone[0] = 0.0
    begun = _cpu()
    for _ in range(photos):
        imageio.decode_here(jpeg, limits)
    here = (_cpu() - begun) / photos
    resize = resize_alone[0] / photos
    imageio._fit = real_fit

    engine_module.decode = charge("decode child", engine_module.decode)
    engine.faces.detect = charge("faces", engine.faces.detect)
    networks.MultiStyleNetwork.run = charge("network", networks.MultiStyleNetwork.run)
    engine_module.blend = charge("blend + keep colours", engine_module.blend)
    engine_module.keep_colours = charge("blend + keep colours", engine_module.keep_colours)
    engine_module.encode_jpeg = charge("encode", engine_module.encode_jpeg)

    picture = engine.load(jpeg)  # warm: shapes compiled, buffers allocated
    engine.render(picture, request)
    picture.rgb.fill(0)
    del picture
    heap.freeze_start_up_objects()  # as the bot does before the first photo
    spent = {stage: 0.0 for stage in STAGES}
    total_cpu = 0.0
    started = time.perf_counter()
    for _ in range(photos):
        begun = _cpu()
        picture = engine.load(jpeg)
        engine.render(picture, request)
        picture.rgb.fill(0)
        del picture
        collected = _cpu()
        forget_freed_copies()
        spent["collection"] += _cpu() - collected
        total_cpu += _cpu() - begun
    wall = (time.perf_counter() - started) / photos
    per_photo = {stage: seconds / photos for stage, seconds in spent.items()}
    decoding = per_photo["decode child"]
    per_photo["decode child"] = decoding - here
    per_photo["decode"] = here - resize
    per_photo["resize"] = resize
    per_photo["other"] = total_cpu / photos - sum(v for k, v in per_photo.items() if k != "other")
    return {"stages": per_photo, "cpu": total_cpu / photos, "wall": wall, "choice": engine.choice.line() if engine.choice else "",
            "from": str(Path(engine_module.__file__).parent.parent)}


def run_tree(tree: Path, photos: int, jpeg: bytes) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}
    env["PYTHONPATH"] = str(tree)
    # this file, loaded by its path: bench/ on sys.path would shadow the tree's `inference`
    code = (
        "import importlib.util, json; "
        f"spec = importlib.util.spec_from_file_location('stages', {__file__!r}); "
        "stages = importlib.util.module_from_spec(spec); spec.loader.exec_module(stages); "
        f"print(json.dumps(stages.profile({photos})))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, input=jpeg, capture_output=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr.decode(errors="replace"))
        raise SystemExit(f"profiling {tree} failed")
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout (e.g. the base commit's worktree)")
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = {"this": ROOT}
    if args.against:
        trees = {"base": args.against.resolve(), "this": ROOT}
    sys.path.insert(0, str(ROOT))
    from bench.load import portrait_jpeg

    jpeg = portrait_jpeg()
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            runs[name].append(run_tree(tree, args.photos, jpeg))

    def median(name: str, pick) -> float:
        return statistics.median(pick(r) for r in runs[name])

    print(f"CPU time per photo, ms (1280x960 portrait, default style, median of {args.rounds} interleaved "
          f"round(s) of {args.photos} photos, {os.cpu_count()} cores)")
    for name in trees:
        print(f"  {name}: {runs[name][-1]['from']}: {runs[name][-1]['choice']}")
    names = list(trees)
    header = "| stage | " + " | ".join(names) + (" | ratio |" if len(names) == 2 else " |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for stage in (*STAGES, "total CPU", "wall"):
        if stage == "total CPU":
            values = [median(n, lambda r: r["cpu"]) for n in names]
        elif stage == "wall":
            values = [median(n, lambda r: r["wall"]) for n in names]
        else:
            values = [median(n, lambda r, s=stage: r["stages"][s]) for n in names]
        cells = " | ".join(f"{1000 * v:.1f}" for v in values)
        ratio = f" | {values[0] / values[1]:.2f}x |" if len(values) == 2 and values[1] > 0.0005 else (" | |" if len(values) == 2 else " |")
        print(f"| {stage} | {cells}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
