"""`darkroom credentials ...` (the signing identity) and `darkroom verify FILE` (what a file's
Content Credentials and labels say). Both work offline and hold no photo of anyone."""

from __future__ import annotations

import argparse
import getpass
import sys
from dataclasses import replace
from pathlib import Path

from bot.safeguards.pseudonym import load_or_create_secret
from bot.settings import Settings, SettingsError, StartupError, from_environment
from bot.storage import credentials
from inference.imageio import AIGC_FIELDS
from inference.provenance import MODELS_ASSERTION, read_credentials, read_labels

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parsers(sub) -> None:
    creds = sub.add_parser("credentials", help="the signing identity for Content Credentials (C2PA) in the data dir")
    actions = creds.add_subparsers(dest="action", required=True)
    init = actions.add_parser("init", help="make a local root and an ES256 signing certificate")
    init.add_argument("--organisation", "--organization", metavar="NAME", help="default: DARKROOM_PROVIDER_NAME, else Darkroom")
    init.add_argument("--force", action="store_true", help="replace an existing identity")
    bring = actions.add_parser("import", help="use your own certificate chain (signing certificate first) and ES256 key")
    bring.add_argument("chain", type=Path, metavar="CHAIN_PEM")
    bring.add_argument("key", type=Path, metavar="KEY_PEM")
    actions.add_parser("show", help="the identity's certificates")
    for parser in (init, bring, actions.choices["show"]):
        parser.add_argument("--data-dir", type=Path, help="default: DARKROOM_DATA_DIR or ./data")

    verify = sub.add_parser("verify", help="what a file's Content Credentials and labels say")
    verify.add_argument("file", type=Path, metavar="FILE")
    verify.add_argument("--anchor", type=Path, metavar="ROOT_PEM", help="trust this root (default: the data dir's own root)")
    verify.add_argument("--data-dir", type=Path, help="default: DARKROOM_DATA_DIR or ./data")


def run(args: argparse.Namespace) -> int:
    try:
        settings = from_environment()
    except SettingsError as exc:
        return _error(str(exc), EXIT_USAGE)
    data_dir = args.data_dir or settings.data_dir
    try:
        if args.command == "verify":
            return verify(args.file, data_dir, args.anchor)
        if args.action == "show":
            return show(data_dir)
        secret = _secret(settings, data_dir)
        if args.action == "init":
            organisation = args.organisation or settings.provider_name or "Darkroom"
            path = credentials.init(data_dir, secret, organisation, force=args.force)
        else:
            password = None  # an encrypted key is asked for (never taken from the command line)
            key_pem = args.key.read_bytes()
            if b"ENCRYPTED" in key_pem:
                password = getpass.getpass("Key password: ").encode()
            path = credentials.import_identity(data_dir, secret, args.chain.read_bytes(), key_pem, password)
    except (credentials.CredentialsError, StartupError) as exc:
        return _error(str(exc), EXIT_FAILED)
    except OSError as exc:
        return _error(f"{exc.filename}: {exc.strerror}", EXIT_FAILED)
    print(f"Signing identity written to {path} and {data_dir / credentials.KEY} (sealed, mode 600).")
    for line in credentials.describe(path.read_bytes()):
        print(f"  {line}")
    print("Every result is signed from the next start. Give readers the root (the chain's last certificate) to trust it.")
    return EXIT_OK


def _secret(settings: Settings, data_dir: Path) -> bytes:
    """The instance secret that seals the key: the one the bot uses (created with the data dir
    if this is its first use, exactly as `darkroom run` would)."""
    if settings.secret:
        return settings.secret
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return load_or_create_secret(replace(settings, data_dir=data_dir).secret_file)


def show(data_dir: Path) -> int:
    if not credentials.exists(data_dir):
        print(f"No signing identity in {data_dir}: results are not signed. `darkroom credentials init` makes one.")
        return EXIT_FAILED
    for line in credentials.describe((data_dir / credentials.CHAIN).read_bytes()):
        print(line)
    return EXIT_OK


def verify(path: Path, data_dir: Path, anchor_path: Path | None = None) -> int:
    """Print what ``path`` says about itself; exit 0 when it carries valid Content Credentials."""
    try:
        data = path.read_bytes()
        anchor = anchor_path.read_bytes() if anchor_path else b""
    except OSError as exc:
        return _error(f"{exc.filename}: {exc.strerror}", EXIT_USAGE)
    if not anchor and credentials.exists(data_dir):
        chain = (data_dir / credentials.CHAIN).read_bytes()
        anchor = chain[chain.rfind(b"-----BEGIN CERTIFICATE-----") :]
    print(f"{path}")
    found = read_credentials(data, anchor)
    if not found.state:
        print("  Content Credentials: none")
    else:
        print(f"  Content Credentials: {found.state}" + ("" if anchor else " (no trust anchor given)"))
        signature = found.manifest.get("signature_info", {})
        print(f"    signed by: {signature.get('common_name', '?')} (issuer {signature.get('issuer', '?')}, {signature.get('alg', '?')})")
        for generator in found.manifest.get("claim_generator_info", []):
            print(f"    made with: {generator.get('name', '?')} {generator.get('version', '')}")
        for action in found.assertions.get("c2pa.actions.v2", {}).get("actions", []):
            print(f"    action: {action.get('action')}, source type: {action.get('digitalSourceType', '-').rsplit('/', 1)[-1]}")
        models = found.assertions.get(MODELS_ASSERTION, {})
        if models:
            print(f"    style: {models.get('style', '?')}")
            for model in models.get("models", []):
                print(f"    model: {model.get('name')} ({model.get('licence')})")
        print(f"    ingredients: {len(found.manifest.get('ingredients', []))}, thumbnail: {'yes' if 'thumbnail' in found.manifest else 'no'}")
        for problem in found.problems:
            print(f"    problem: {problem}")
    labels = read_labels(data)
    print(f"  XMP digital source type: {labels.digital_source_type.rsplit('/', 1)[-1] or 'none'}")
    if labels.aigc is None:
        print("  GB 45438 implicit label (TC260:AIGC): " + ("not valid JSON" if labels.aigc_raw else "none"))
    else:
        print("  GB 45438 implicit label (TC260:AIGC):")
        for name in AIGC_FIELDS:
            print(f"    {name}: {labels.aigc.get(name, '(missing)')}")
    return EXIT_OK if found.state in ("Valid", "Trusted") else EXIT_FAILED


def _error(message: str, code: int) -> int:
    print(f"darkroom: {message}", file=sys.stderr)
    return code
