"""Content Credentials (C2PA) on results, and reading back what a file says about itself.

`sign_jpeg` adds a C2PA manifest to a JPEG the engine made, in memory (BytesIO in, BytesIO out;
no temporary file), with c2pa-python (c2pa-rs inside). The manifest says what the picture is and
how it was made, and nothing else:

- one `c2pa.created` action with the IPTC digital source type of the label (a restyled photo is
  compositeWithTrainedAlgorithmicMedia), Darkroom as the software agent, the style's name;
- the style and the models behind it, with their licences (`org.darkroom.models`);
- Darkroom's version (the claim generator).

It holds no thumbnail (switched off: c2pa-rs would otherwise embed a small copy of the result),
no ingredient (the input as an ingredient would embed a thumbnail of the person's photo), nothing
about the person, and no time: no timestamp authority is asked (that would be a network call),
and the signing certificate's validity starts at midnight (see bot/storage/credentials.py).

`describe` reads a file's Content Credentials (against the operator's root as a trust anchor,
when given) and its XMP labels (the IPTC digital source type and the GB 45438 TC260:AIGC label);
`darkroom verify` prints it.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from xml.etree import ElementTree

from defusedxml.ElementTree import fromstring as parse_xml
from PIL import Image

from .imageio import TC260_NS, AILabel
from .version import __version__

C2PA_FORMAT = "image/jpeg"
IPTC_EXT_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
MODELS_ASSERTION = "org.darkroom.models"
# c2pa-rs: no claim thumbnail, and never a network call while signing or reading (no remote
# manifests, no OCSP; a timestamp authority is only asked when given a URL, and none is).
_OFFLINE = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
_SIGN_SETTINGS = {**_OFFLINE, "builder": {"thumbnail": {"enabled": False}}}


@dataclass(frozen=True)
class SigningIdentity:
    """The operator's ES256 signing certificate chain (leaf first, PEM) and its private key (PEM,
    unsealed, in memory only). ``anchor`` is the chain's root, trusted when reading back."""

    chain_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def anchor(self) -> bytes:
        certificates = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", self.chain_pem, re.DOTALL)
        return certificates[-1] if certificates else b""


@dataclass(frozen=True)
class ModelCredit:
    """A model a result was made with, as the manifest names it."""

    name: str
    licence: str


def manifest(label: AILabel, models: tuple[ModelCredit, ...]) -> dict:
    """The manifest definition for a result with ``label``, made with ``models``."""
    action = {
        "action": "c2pa.created",
        "digitalSourceType": label.digital_source_type,
        "softwareAgent": {"name": "Darkroom", "version": __version__},
        "parameters": {"style": label.style_name},
    }
    return {
        "claim_generator_info": [{"name": "Darkroom", "version": __version__}],
        "format": C2PA_FORMAT,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [action]}},
            {
                "label": MODELS_ASSERTION,
                "data": {"style": label.style_name, "models": [{"name": m.name, "licence": m.licence} for m in models]},
            },
        ],
    }


class Signer:
    """Signs results with one identity. Thread-safe: each call builds its own c2pa objects (a
    c2pa Builder signs once), sharing only the immutable settings."""

    def __init__(self, identity: SigningIdentity) -> None:
        import c2pa

        self._c2pa = c2pa
        self._info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, identity.chain_pem, identity.key_pem, None)
        self._settings = json.dumps(_SIGN_SETTINGS)

    def sign(self, jpeg: bytes, label: AILabel, models: tuple[ModelCredit, ...]) -> bytes:
        c2pa = self._c2pa
        context = c2pa.Context(c2pa.Settings.from_json(self._settings))
        builder = c2pa.Builder.from_json(manifest(label, models), context)
        out = io.BytesIO()
        with c2pa.Signer.from_info(self._info) as signer:
            builder.sign(signer, C2PA_FORMAT, io.BytesIO(jpeg), out)
        return out.getvalue()


@dataclass(frozen=True)
class Credentials:
    """What a file's Content Credentials say."""

    state: str  # "Trusted", "Valid", "Invalid", or "" (none)
    manifest: dict  # the active manifest, as c2pa-rs reports it
    problems: tuple[str, ...] = ()  # failure codes of the validation, if any

    @property
    def assertions(self) -> dict[str, dict]:
        return {a.get("label", ""): a.get("data", {}) for a in self.manifest.get("assertions", [])}


def read_credentials(data: bytes, anchor: bytes = b"") -> Credentials:
    """The Content Credentials in ``data`` (a JPEG), validated; with ``anchor`` (PEM) trusted."""
    import c2pa

    settings: dict = {"verify": {**_OFFLINE["verify"], "verify_trust": bool(anchor)}}
    if anchor:
        settings["trust"] = {"user_anchors": anchor.decode("ascii")}
    try:
        reader = c2pa.Reader(C2PA_FORMAT, io.BytesIO(data), context=c2pa.Context(c2pa.Settings.from_dict(settings)))
    except c2pa.C2paError:
        return Credentials("", {})
    with reader:
        report = json.loads(reader.json())
        state = reader.get_validation_state() or ""
    active = report.get("manifests", {}).get(report.get("active_manifest", ""), {})
    failures = report.get("validation_results", {}).get("activeManifest", {}).get("failure", [])
    return Credentials(state, active, tuple(f.get("code", "") for f in failures))


@dataclass(frozen=True)
class Labels:
    """The labels in a file's XMP."""

    digital_source_type: str = ""
    aigc: dict[str, str] | None = None  # GB 45438 TC260:AIGC, parsed; None when absent
    aigc_raw: str = ""


def read_labels(data: bytes) -> Labels:
    """The IPTC digital source type and the GB 45438 label in ``data``'s XMP, if any."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            xmp = image.info.get("xmp", b"")
    except Exception:
        return Labels()
    if not xmp:
        return Labels()
    try:
        root = parse_xml(xmp)
    except (ElementTree.ParseError, ValueError):
        return Labels()
    source, raw = "", ""
    for description in root.iter("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description"):
        source = source or description.get(f"{{{IPTC_EXT_NS}}}DigitalSourceType", "")
        element = description.find(f"{{{TC260_NS}}}AIGC")
        if element is not None and not raw:
            raw = element.text or ""
    aigc = None
    if raw:
        try:
            parsed = json.loads(raw)
            aigc = {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else None
        except ValueError:
            aigc = None
    return Labels(source, aigc, raw)
