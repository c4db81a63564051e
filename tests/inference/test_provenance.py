"""Content Credentials and the GB 45438 label on results: signed in memory, read back valid with
the operator's root, and saying nothing about the person (no thumbnail, no ingredient, no time,
no byte of the input)."""

from __future__ import annotations

import copy
import io
import json
import re
import struct
import time
from dataclasses import replace
from xml.etree import ElementTree

import numpy as np
import pytest
from cryptography import x509
from PIL import Image

from bot.storage import credentials
from inference import StyleRequest
from inference.imageio import AIGC_FIELDS, SOURCE_FILTER, TC260_NS, AILabel, draw_mark, encode_jpeg
from inference.provenance import MODELS_ASSERTION, Signer, SigningIdentity, read_credentials, read_labels
from tests.privacy_scan import make_canary

SECRET = b"0123456789abcdef" * 4
PROVIDER = "Example Studio 示例"


def identity(organisation: str = "Darkroom test") -> SigningIdentity:
    chain, key = credentials.make_identity(organisation)
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return SigningIdentity(chain, pem)


@pytest.fixture(scope="module")
def operator() -> SigningIdentity:
    return identity()


@pytest.fixture(scope="module")
def signing_engine(engine, operator):
    """The session's engine, signing with the operator's identity (models shared, not reloaded)."""
    signed = copy.copy(engine)
    signed.config = replace(engine.config, provider=PROVIDER, signing=operator)
    signed.signer = Signer(operator)
    return signed


@pytest.fixture(scope="module")
def canary(grace_rgb):
    return make_canary(grace_rgb, side=320)


@pytest.fixture(scope="module")
def signed_result(signing_engine, canary) -> bytes:
    return signing_engine.stylize(canary.jpeg, StyleRequest("ink")).jpeg


def test_a_signed_result_reads_back_trusted_with_the_operators_root(signed_result, operator):
    assert read_credentials(signed_result, operator.anchor).state == "Trusted"
    assert read_credentials(signed_result).state == "Valid"  # signed and intact, root not given
    stranger = identity("Someone else")
    assert read_credentials(signed_result, stranger.anchor).state == "Valid"  # not trusted by another root


def test_a_changed_byte_breaks_the_credentials(signed_result, operator):
    tampered = bytearray(signed_result)
    tampered[-200] ^= 0xFF  # inside the picture's scan, after the manifest
    found = read_credentials(bytes(tampered), operator.anchor)
    assert found.state == "Invalid" and found.problems


def test_the_manifest_says_what_was_made_and_how(signed_result, operator):
    found = read_credentials(signed_result, operator.anchor)
    (action,) = found.assertions["c2pa.actions.v2"]["actions"]
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"].endswith("/compositeWithTrainedAlgorithmicMedia")
    assert action["softwareAgent"]["name"] == "Darkroom"
    models = found.assertions[MODELS_ASSERTION]
    assert models["style"] == "Ink wash"
    assert models["models"] and all(m["licence"] for m in models["models"])
    assert found.manifest["claim_generator_info"][0]["name"] == "Darkroom"


def test_the_manifest_holds_no_thumbnail_no_ingredient_and_no_time(signed_result, operator):
    found = read_credentials(signed_result, operator.anchor)
    assert "thumbnail" not in found.manifest
    assert found.manifest.get("ingredients", []) == []
    # One picture in the file: a claim or ingredient thumbnail would be a second JPEG inside it.
    assert signed_result.count(b"\xff\xd8\xff") == 1
    # No time in the manifest: no key that names one, no timestamp of any kind in its values.
    text = json.dumps(found.manifest)
    assert not re.search(r'"(when|time|date|timestamp|signing_time)"', text, re.IGNORECASE)
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text)
    # Nor in the raw bytes: no CBOR epoch second from the last hour, no ISO or ASN.1 time but midnight.
    now = int(time.time())
    assert not any(struct.pack(">I", t) in signed_result for t in range(now - 3600, now + 5))
    assert not re.search(rb"20\d\d-\d\d-\d\dT\d\d:\d\d", signed_result)
    assert all(t.endswith(b"000000Z") for t in re.findall(rb"\d{12}Z", signed_result))
    # The certificates it carries tell the day, not the time.
    for certificate in x509.load_pem_x509_certificates(operator.chain_pem):
        start = certificate.not_valid_before_utc
        assert (start.hour, start.minute, start.second) == (0, 0, 0)


def test_no_byte_of_the_input_is_in_the_signed_result(signed_result, canary):
    for needle in canary.needles:
        assert needle not in signed_result


def test_the_gb45438_label_is_present_and_well_formed(signed_result, signing_engine, canary):
    labels = read_labels(signed_result)  # after signing: c2pa keeps the XMP, and its hash covers it
    assert labels.digital_source_type.endswith("/compositeWithTrainedAlgorithmicMedia")
    assert labels.aigc is not None
    assert list(json.loads(labels.aigc_raw)) == list(AIGC_FIELDS)  # every field, in the standard's order
    assert labels.aigc["Label"] == "1"
    assert labels.aigc["ContentProducer"] == PROVIDER
    assert re.fullmatch(r"[0-9a-f]{32}", labels.aigc["ProduceID"])
    assert all(labels.aigc[name] == "" for name in ("ReservedCode1", "ContentPropagator", "PropagateID", "ReservedCode2"))
    # The property is TC260:AIGC in the standard's namespace, in well-formed XMP.
    xmp = Image.open(io.BytesIO(signed_result)).info["xmp"]
    root = ElementTree.fromstring(xmp)
    assert [e.text for e in root.iter(f"{{{TC260_NS}}}AIGC")] == [labels.aigc_raw]
    # A content number names one result only.
    again = read_labels(signing_engine.stylize(canary.jpeg, StyleRequest("ink")).jpeg)
    assert again.aigc is not None and again.aigc["ProduceID"] != labels.aigc["ProduceID"]


def test_a_hand_written_filter_is_not_labelled_ai_generated():
    out = encode_jpeg(np.full((64, 64, 3), 128, np.uint8), AILabel(SOURCE_FILTER, "Pencil", "Darkroom", "Studio", "ab" * 16))
    labels = read_labels(out)
    assert labels.digital_source_type.endswith("/algorithmicallyEnhanced")
    assert labels.aigc is None


def test_without_an_identity_results_are_labelled_but_not_signed(engine, canary):
    out = engine.stylize(canary.jpeg, StyleRequest("ink")).jpeg
    assert read_credentials(out).state == ""
    assert read_labels(out).aigc is not None


# -- the explicit mark ------------------------------------------------------------------------------


def mark_box(marked: bytes, plain: bytes) -> tuple[int, int, int, int]:
    """Where two encodings of the same result differ: the mark (x0, y0, x1, y1)."""
    a = np.asarray(Image.open(io.BytesIO(marked)).convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(plain)).convert("RGB"), dtype=np.int16)
    ys, xs = np.nonzero(np.abs(a - b).max(axis=2) > 40)
    assert len(xs), "no mark"
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def overlaps(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_the_mark_is_drawn_small_and_in_the_corner_away_from_faces():
    rgb = np.full((480, 640, 3), 160, np.uint8)
    plain = Image.fromarray(rgb)
    first = draw_mark(plain.copy())  # bottom right when nothing is in the way
    assert first[2] > 600 and first[3] > 440
    face = (first[0] - 10, first[1] - 10, 640, 480)  # a face in that corner
    moved = draw_mark(plain.copy(), (face,))
    assert not overlaps(moved, face)
    # A face in every corner: the corner with the least of one (a sliver, top right).
    corners = ((0, 0, 200, 200), (0, 280, 200, 480), (440, 280, 640, 480), (630, 0, 640, 10))
    least = draw_mark(plain.copy(), corners)
    assert least[1] < 240 and least[0] > 320  # top right, where only a sliver of face is
    assert (first[2] - first[0]) * (first[3] - first[1]) < 0.03 * 640 * 480  # small


def test_the_engine_puts_the_mark_away_from_detected_faces(engine, two_faces):
    request = StyleRequest("ink")
    picture = engine.load(two_faces)
    assert picture.face_count >= 1
    rgb = engine.render_rgb(picture, request)
    marked = engine.encode(rgb, replace(request, mark=True), picture.faces)
    plain = engine.encode(rgb, request, picture.faces)
    box = mark_box(marked, plain)
    height, width = rgb.shape[:2]
    assert (box[2] - box[0]) * (box[3] - box[1]) < 0.03 * width * height  # small
    for face in picture.faces:
        assert not overlaps(box, (face.x, face.y, face.x + face.width, face.y + face.height)), (box, face)
    # and the mark does move for a face: put one where it would go
    from inference.faces import Face

    corner = Face(box[0] - 5, box[1] - 5, width - box[0], height - box[1])
    moved = mark_box(engine.encode(rgb, replace(request, mark=True), (corner,)), plain)
    assert not overlaps(moved, (corner.x, corner.y, corner.x + corner.width, corner.y + corner.height))
