"""The `darkroom` command: run the bot, or use the styling engine offline (no bot, no network)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
import time
import unicodedata
from dataclasses import replace
from pathlib import Path

from bot import provenance
from bot.engine_config import engine_config
from bot.safeguards import (
    core_dumps,  # called through the module: tests replace harden_process there
    heap,
    logs,
)
from bot.safeguards.pseudonym import load_or_create_secret
from bot.scale.audit import main as broker_audit_main
from bot.settings import SettingsError, StartupError, from_environment
from bot.storage.audit import main as audit_main
from handlers.context import where
from inference import PICTURE_STYLE, Engine, ImageRejected, ModelIntegrityError, StyleRequest, UnknownStyle, load_catalogue
from inference.backends import cpu_capabilities

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PHOTO_COMMANDS = ("run", "stylize", "sheet")  # the commands that hold photos in memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="darkroom", description="Darkroom: a private AI-photo bot.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="start the bot (settings from the environment or .env); with no platform configured, just the on-device page")
    sub.add_parser("worker", help="style photos for the bot on a Celery broker (DARKROOM_BROKER_URL)")

    styles = sub.add_parser("styles", help="the style catalogue with licences and sources")
    styles.add_argument("--zh", action="store_true", help="names and descriptions in Chinese")
    styles.add_argument("--engine", action="store_true", help="also time the backends here and show which one styles")

    stylize = sub.add_parser("stylize", help="style photos offline")
    stylize.add_argument("inputs", nargs="+", type=Path, metavar="IN")
    stylize.add_argument("-o", "--output", type=Path, required=True, metavar="OUT_DIR")
    stylize.add_argument("--style", metavar="NAME", help="default: DARKROOM_DEFAULT_STYLE, else the first style")
    stylize.add_argument("--strength", type=float, default=1.0, metavar="S", help="0..1 (default 1)")
    stylize.add_argument("--keep-colours", "--keep-colors", action="store_true", help="keep the photo's own colours")
    stylize.add_argument("--no-face-awareness", action="store_true", help="style faces at full strength too")
    stylize.add_argument("--style-image", type=Path, metavar="PICTURE", help="use a picture as the style (--style picture)")

    sheet = sub.add_parser("sheet", help="every style on one photo, labelled")
    sheet.add_argument("input", type=Path, metavar="IN")
    sheet.add_argument("-o", "--output", type=Path, required=True)

    audit = sub.add_parser("audit", help="check what the data directory holds")
    audit.add_argument("--data-dir", type=Path, help="default: DARKROOM_DATA_DIR or ./data")
    audit.add_argument("--broker", action="store_true", help="also check Redis (automatic when DARKROOM_BROKER_URL is set)")
    provenance.add_parsers(sub)  # credentials, verify

    args = parser.parse_args(argv)
    if args.command in PHOTO_COMMANDS:
        try:
            core_dumps.harden_process()  # before any photo is read: a crash must not dump one to disk
        except core_dumps.HardeningError as exc:
            _error(str(exc))
            return EXIT_FAILED
    try:
        if args.command == "run":
            return _run()
        if args.command == "worker":
            return _worker()
        if args.command == "styles":
            return _styles(args)
        if args.command == "stylize":
            return _stylize(args)
        if args.command == "sheet":
            return _sheet(args)
        if args.command == "audit":
            return max(audit_main(args.data_dir), broker_audit_main(required=args.broker))
        if args.command in ("credentials", "verify"):
            return provenance.run(args)
    except KeyboardInterrupt:
        return EXIT_FAILED
    return EXIT_USAGE


def _error(message: str) -> None:
    print(f"darkroom: {message}", file=sys.stderr)


def _engine(settings=None):
    try:
        settings = settings or from_environment()
        config = engine_config(settings)
    except (SettingsError, StartupError) as exc:  # StartupError: a signing key that does not open
        _error(str(exc))
        return None
    try:
        engine = Engine(config)
        engine.verify()
    except ModelIntegrityError as exc:
        _error(str(exc))
        return None
    return engine


def _run() -> int:
    from bot.app import Darkroom

    try:
        settings = from_environment()
    except SettingsError as exc:
        _error(str(exc))
        return EXIT_USAGE
    logs.configure(settings.log_level, settings.secrets())
    heap.wipe_freed_memory()
    # With no chat platform configured, `run` serves just the on-device page on this machine, so
    # anyone can try Darkroom in a minute without a bot token (the address is printed once it listens).
    try:
        asyncio.run(Darkroom(settings).run_forever())
    except (ModelIntegrityError, StartupError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except Exception as exc:  # one line for the operator even for what was not foreseen; no message (it may carry data)
        _error(f"stopped by an unexpected error: {type(exc).__name__} at {where(exc)}; please report it")
        return EXIT_FAILED
    return EXIT_OK


def _worker() -> int:
    try:
        settings = from_environment()
    except SettingsError as exc:
        _error(str(exc))
        return EXIT_USAGE
    if not settings.broker_url:
        _error("no broker configured: set DARKROOM_BROKER_URL (e.g. redis://127.0.0.1:6379/0); see README \"Scaling out\"")
        return EXIT_USAGE
    if not settings.secret:
        if not settings.secret_file.exists():
            _error("set DARKROOM_SECRET to the front's secret (workers open only what it sealed)")
            return EXIT_USAGE
        settings = replace(settings, secret=load_or_create_secret(settings.secret_file))
    logs.configure(settings.log_level, settings.secrets())
    from bot.scale.worker import main as worker_main

    try:
        return worker_main(settings)
    except (ModelIntegrityError, StartupError) as exc:
        _error(str(exc))
        return EXIT_USAGE


def _styles(args) -> int:
    try:
        settings = from_environment()
        catalogue = load_catalogue(settings.custom_styles)
    except (ModelIntegrityError, SettingsError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    language = "zh" if args.zh else "en"
    rows = [("#", "key", "name", "名称", "recipe", "face", "licence", "sha256")]
    for i, s in enumerate(catalogue.styles, start=1):
        rows.append((str(i), s.key, s.name, s.name_zh, s.recipe, f"{s.face_strength:.2f}", s.licence.split(" (")[0], s.sha256[:12]))
    widths = [max(_width(r[c]) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(row, widths)).rstrip())
    print()
    for i, s in enumerate(catalogue.styles, start=1):
        print(f"{i}. {s.display_name(language)}: {s.display_description(language)}")
    print("\nModels (loaded from installed packages, verified by SHA-256, never downloaded):")
    for m in catalogue.models.values():
        print(f"- {m.key}: {m.path}")
        for label, value in (("sha256", m.sha256), ("licence", m.licence), ("source", m.source), ("trained on", m.trained_on)):
            print(textwrap.fill(value, width=100, initial_indent=f"    {label}: ", subsequent_indent=" " * 8))
    print("\nface: the share of the style kept over a face (face awareness).")
    if args.engine:
        engine = _engine(settings)
        if engine is None:
            return EXIT_USAGE
        print("\nEngine (timed on this machine now; DARKROOM_ENGINE and DARKROOM_PRECISION force it):")
        print(f"- {engine.choice.line()}")
        print(f"- CPU capabilities (OpenVINO): {', '.join(cpu_capabilities()) or 'OpenVINO not available'}")
    return EXIT_OK


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _stylize(args) -> int:
    if not 0.0 <= args.strength <= 1.0:
        _error("--strength must be between 0 and 1")
        return EXIT_USAGE
    try:
        settings = from_environment()
    except SettingsError as exc:
        _error(str(exc))
        return EXIT_USAGE
    engine = _engine(settings)
    if engine is None:
        return EXIT_USAGE
    style_name = args.style or settings.default_style or engine.catalogue.default.key
    style_key = style_name
    style_data = None
    if args.style_image is not None:
        style_key = PICTURE_STYLE
        try:
            style_data = args.style_image.read_bytes()
        except OSError as exc:
            _error(f"{args.style_image}: cannot read ({exc.strerror})")
            return EXIT_USAGE
    else:
        try:
            style_key = engine.catalogue.get(style_name).key
        except UnknownStyle:
            _error(f"unknown style {style_name!r}; `darkroom styles` lists them")
            return EXIT_USAGE
    request = StyleRequest(style_key, args.strength, args.keep_colours, not args.no_face_awareness)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _error(f"{args.output}: cannot create ({exc.strerror})")
        return EXIT_USAGE
    failures = 0
    for path in args.inputs:
        started = time.perf_counter()  # the time printed is the whole run: read, decode, style, write
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"{path}: cannot read ({exc.strerror or exc})", file=sys.stderr)
            failures += 1
            continue
        try:
            result = engine.stylize(data, request, style_data)
        except ImageRejected as exc:
            print(f"{path}: {_REASONS.get(exc.reason, 'not a usable picture')}", file=sys.stderr)
            failures += 1
            continue
        except Exception as exc:
            print(f"{path}: failed ({type(exc).__name__})", file=sys.stderr)
            failures += 1
            continue
        target = args.output / f"{path.stem}-{style_key}.jpg"
        target.write_bytes(result.jpeg)
        seconds = time.perf_counter() - started
        print(f"{path} -> {target} ({result.width}x{result.height}, {result.face_count} face(s), {seconds:.2f}s)")
    return EXIT_FAILED if failures else EXIT_OK


_REASONS = {
    "empty": "the file is empty",
    "too_many_bytes": "the file is too large",
    "too_many_pixels": "the picture has too many pixels (refused before decoding)",
    "unsupported_format": "not a JPEG, PNG, WebP, GIF, HEIC or AVIF picture",
    "corrupt": "the picture is damaged or truncated",
    "too_small": "the picture is too small or too narrow",
    "too_complex": "the picture would take too long to decode (refused, or stopped at the CPU limit)",
}


def _sheet(args) -> int:
    engine = _engine()
    if engine is None:
        return EXIT_USAGE
    try:
        data = args.input.read_bytes()
    except OSError as exc:
        _error(f"{args.input}: cannot read ({exc.strerror or exc})")
        return EXIT_FAILED
    try:
        picture = engine.load(data)
    except ImageRejected as exc:
        _error(f"{args.input}: {_REASONS.get(exc.reason, 'not a usable picture')}")
        return EXIT_FAILED
    try:
        sheet = engine.render_sheet(picture)  # labelled and signed like any result
    finally:
        picture.rgb.fill(0)
    args.output.write_bytes(sheet.jpeg)
    print(f"{args.input} -> {args.output} ({len(engine.catalogue.styles)} styles)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
