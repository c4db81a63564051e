"""Released means gone from memory: the real `darkroom run` process, read through
/proc/PID/mem after the reply and after /delete_my_data, holds no copy of the photo: not its
file bytes (three 48-byte slices and the marker in its EXIF and comment), not its decoded
pixels (two 32-pixel rows) and not the network's input made from them (a 32-pixel run of one
colour plane, as onnxruntime's float32 and as OpenVINO's uint8).

The same scan of a bot with a deliberate leak (a copy kept on release) finds both, so the scan
can fail.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys

import numpy as np
import pytest
from PIL import Image

from inference.sheet import tile_picture
from tests.conftest import SECRET, TOKEN
from tests.fakes.telegram_api import User
from tests.memory_scan import scan_process
from tests.privacy_scan import make_canary

MIKA = User(555000222, "Mika", "mika_lens", "en")

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0,
    reason="reading another process's memory needs root (the bot makes itself non-dumpable); CI runs as root",
)

RUN = "import sys\nfrom bot.cli import main\nsys.exit(main(['run']))\n"

# The bug the proof must catch: a copy of the downloaded photo and of its decoded pixels that
# outlives the release.
LEAKY_RUN = """
import handlers.memory, inference.engine, numpy
kept = []
release = handlers.memory.InputBuffer.release
def leaky_release(self):
    if self._data is not None:
        kept.append(bytes(self._data))
    release(self)
handlers.memory.InputBuffer.release = leaky_release
load = inference.engine.Engine.load
def leaky_load(self, *args, **kwargs):
    picture = load(self, *args, **kwargs)
    kept.append(picture.rgb.copy())
    kept.append(numpy.ascontiguousarray(picture.rgb.transpose(2, 0, 1), dtype=numpy.float32))
    kept.append(numpy.ascontiguousarray(picture.rgb.transpose(2, 0, 1)))
    return picture
inference.engine.Engine.load = leaky_load
tile_picture = inference.engine.tile_picture
def leaky_tile_picture(*args, **kwargs):
    small, faces = tile_picture(*args, **kwargs)
    kept.append(small.copy())
    return small, faces
inference.engine.tile_picture = leaky_tile_picture
""" + RUN

FILE_NEEDLES = range(0, 4)  # the marker and three slices of the file (tests/privacy_scan.py)
PIXEL_NEEDLES = range(4, 8)  # two rows of decoded pixels; one plane's run as the network's input
TILE_NEEDLE = 8  # a row of the preview sheet's tile: the face's square, made small


def needles(canary, engine=None) -> list[bytes]:
    decoded = np.array(Image.open(io.BytesIO(canary.jpeg)).convert("RGB"))
    plane_run = np.ascontiguousarray(decoded[decoded.shape[0] // 3, 40:72, 0])
    # as multistyle's input holds it: float32 for onnxruntime, uint8 for OpenVINO
    found = [*canary.needles, plane_run.astype(np.float32).tobytes(), plane_run.tobytes()]
    if engine is not None:  # the sheet's tile, cut and resized as the bot's engine does it
        picture = engine.load(canary.jpeg)
        small, _ = tile_picture(picture.rgb, picture.faces)
        found.append(np.ascontiguousarray(small[small.shape[0] // 2, 60:92]).tobytes())
    return found


async def start(fake, tmp_path, program: str, backend: str = "") -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_", "DARKROOM_"))}
    env.update(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=fake.url,
        DARKROOM_DATA_DIR=str(tmp_path / "data"),
        DARKROOM_SECRET=SECRET,
        DARKROOM_LOG_LEVEL="DEBUG",
        DARKROOM_ENGINE=backend,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", program, cwd=tmp_path, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    await fake.wait_for("deleteWebhook", timeout=60)  # polling has started
    return process


async def style_then_erase(fake, tmp_path, grace_rgb, program: str, backend: str = "", engine=None):
    """Consent, one photo styled and answered, /delete_my_data: the scans after the reply and
    after the erasure. With ``engine``: the photo goes without a caption, so the preview sheet
    comes first and the style is chosen on it (the sheet's tile is looked for too)."""
    canary = make_canary(grace_rgb, side=1024)
    wanted = needles(canary, engine)
    assert len(wanted) == len(FILE_NEEDLES) + len(PIXEL_NEEDLES) + (engine is not None)
    bot = await start(fake, tmp_path, program, backend)
    log = asyncio.create_task(bot.stderr.read())  # drained, so the DEBUG log never blocks the bot
    try:
        await fake.consent(MIKA)
        if engine is None:
            await fake.send_photo_from(MIKA, canary.jpeg, caption="oil")
        else:
            await fake.send_photo_from(MIKA, canary.jpeg)
            await fake.wait_for("sendPhoto", chat_id=MIKA.id, timeout=120)  # the sheet
            await fake.press(MIKA, "pick:oil")
            await fake.wait_for("deleteMessage", chat_id=MIKA.id, timeout=30)  # the sheet went
        await fake.wait_for("sendPhoto", count=1 if engine is None else 2, chat_id=MIKA.id, timeout=120)
        await fake.wait_for_edit("Done", chat_id=MIKA.id)
        await asyncio.sleep(0.5)
        after_reply = scan_process(bot.pid, wanted)
        await fake.send_text_from(MIKA, "/delete_my_data")
        await fake.wait_for_text("Receipt", chat_id=MIKA.id)
        await asyncio.sleep(0.5)
        after_erasure = scan_process(bot.pid, wanted)
    finally:
        bot.send_signal(signal.SIGTERM)
        await asyncio.wait_for(bot.wait(), timeout=30)
        await log
    return after_reply, after_erasure


# Each backend keeps its own buffers: OpenVINO's request, for one, holds on to its last input.
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
async def test_nothing_of_the_photo_is_in_the_bot_process_after_the_reply_and_after_erasure(fake_telegram, tmp_path, grace_rgb, backend):
    after_reply, after_erasure = await style_then_erase(fake_telegram, tmp_path, grace_rgb, RUN, backend)
    assert [str(hit) for hit in after_reply] == [], "the photo is still in the process after the reply"
    assert [str(hit) for hit in after_erasure] == [], "the photo is still in the process after /delete_my_data"


async def test_nothing_of_the_photo_or_its_preview_sheet_is_left_after_the_reply_and_after_erasure(
    fake_telegram, tmp_path, grace_rgb, engine
):
    after_reply, after_erasure = await style_then_erase(fake_telegram, tmp_path, grace_rgb, RUN, engine=engine)
    assert [str(hit) for hit in after_reply] == [], "the photo or its sheet is still in the process after the reply"
    assert [str(hit) for hit in after_erasure] == [], "the photo or its sheet is still in the process after /delete_my_data"


async def test_the_scan_finds_a_copy_kept_on_purpose(fake_telegram, tmp_path, grace_rgb, engine):
    after_reply, after_erasure = await style_then_erase(fake_telegram, tmp_path, grace_rgb, LEAKY_RUN, engine=engine)
    for hits in (after_reply, after_erasure):
        found = {hit.needle for hit in hits}
        assert set(FILE_NEEDLES) <= found, f"a kept copy of the file was not found: {found}"
        assert set(PIXEL_NEEDLES) <= found, f"kept decoded pixels were not found: {found}"
        assert TILE_NEEDLE in found, f"a kept copy of the sheet's tile was not found: {found}"
