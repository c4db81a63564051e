"""The style catalogue: named styles, and the model files behind them with licence and origin.

The built-in catalogue is data (`catalogue.toml`, next to this file). An operator may add
styles from their own ONNX files in a TOML file of the same shape; those files are checked by
SHA-256 exactly like the built-in ones.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ModelIntegrityError, UnknownStyle
from .faithful import FILTERS
from .models import ModelFile, package_file
from .networks import NUM_STYLES

BUILTIN = Path(__file__).with_name("catalogue.toml")
OWN_CODE_LICENCE = "MIT (Darkroom's own code; no weights)"
OWN_CODE_SOURCE = "Written for Darkroom (inference/faithful.py)"
OWN_CODE_TRAINING = "Nothing: a hand-written filter, not trained on any data."


@dataclass(frozen=True)
class Style:
    key: str
    kind: str  # "network" (26-style net), "filter" (our own code), "custom" (operator ONNX)
    name: str
    name_zh: str
    description: str
    description_zh: str
    face_strength: float
    blend: str = ""
    filter: str = ""
    model: ModelFile | None = None
    input_range: float = 1.0  # custom models: 1.0 for 0..1 input/output, 255.0 for 0..255

    @property
    def neural(self) -> bool:
        return self.kind != "filter"

    @property
    def weights(self) -> np.ndarray:
        return parse_blend(self.blend)

    @property
    def licence(self) -> str:
        return self.model.licence if self.model else OWN_CODE_LICENCE

    @property
    def source(self) -> str:
        return self.model.source if self.model else OWN_CODE_SOURCE

    @property
    def trained_on(self) -> str:
        return self.model.trained_on if self.model else OWN_CODE_TRAINING

    @property
    def sha256(self) -> str:
        return self.model.sha256 if self.model else "-"

    @property
    def recipe(self) -> str:
        if self.kind == "network":
            return f"multistyle26[{self.blend}]"
        if self.kind == "filter":
            return f"filter:{self.filter}"
        return f"onnx:{self.model.key}" if self.model else "onnx"

    def display_name(self, language: str) -> str:
        return self.name_zh if language == "zh" else self.name

    def display_description(self, language: str) -> str:
        return self.description_zh if language == "zh" else self.description


@dataclass
class Catalogue:
    models: dict[str, ModelFile]
    styles: list[Style]
    _by_name: dict[str, Style] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for style in self.styles:
            for alias in (style.key, style.name, style.name_zh):
                self._by_name.setdefault(_fold(alias), style)

    def get(self, name: str) -> Style:
        """A style by key, English or Chinese name (case and spacing ignored)."""
        style = self._by_name.get(_fold(name))
        if style is None:
            raise UnknownStyle(name)
        return style

    def find(self, name: str) -> Style | None:
        return self._by_name.get(_fold(name))

    @property
    def default(self) -> Style:
        return self.styles[0]

    def model(self, key: str) -> ModelFile:
        try:
            return self.models[key]
        except KeyError:
            raise ModelIntegrityError(f"the catalogue has no model '{key}'") from None


def _fold(name: str) -> str:
    return "".join(name.lower().replace("-", "").replace("_", "").split())


def parse_blend(spec: str) -> np.ndarray:
    """"5" or "4:0.5,14:0.5" -> a normalised float32 vector of 26 style weights."""
    weights = np.zeros(NUM_STYLES, dtype=np.float32)
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        index, _, weight = part.partition(":")
        i = int(index)
        if not 0 <= i < NUM_STYLES:
            raise ValueError(f"style index {i} is outside 0..{NUM_STYLES - 1}")
        weights[i] += float(weight) if weight else 1.0
    if weights.sum() <= 0 or (weights < 0).any():
        raise ValueError(f"blend {spec!r} needs positive weights")
    return weights / weights.sum()


def load_catalogue(custom: Path | None = None) -> Catalogue:
    """The built-in catalogue, plus the operator's styles from ``custom`` when given."""
    data = tomllib.loads(BUILTIN.read_text(encoding="utf-8"))
    models = {key: _model(key, entry, base=None) for key, entry in data["models"].items()}
    styles = [_style(entry, models) for entry in data["styles"]]
    if custom is not None:
        try:
            extra = tomllib.loads(Path(custom).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ModelIntegrityError(f"cannot read custom styles file {custom}: {exc}") from None
        for key, entry in extra.get("models", {}).items():
            if key in models:
                raise ModelIntegrityError(f"custom model '{key}' would replace a built-in model")
            models[key] = _model(key, entry, base=Path(custom).parent)
        for entry in extra.get("styles", []):
            style = _style(entry, models)
            if style.kind != "custom":
                raise ModelIntegrityError(f"custom style '{style.key}' must have kind = \"custom\"")
            styles.append(style)
    keys = [s.key for s in styles]
    if len(set(keys)) != len(keys):
        raise ModelIntegrityError("two styles share a key")
    return Catalogue(models=models, styles=styles)


def _model(key: str, entry: dict, base: Path | None) -> ModelFile:
    for required in ("sha256", "licence", "source"):
        if not entry.get(required):
            raise ModelIntegrityError(f"model '{key}' needs '{required}' in the catalogue")
    if "package" in entry:
        path = package_file(entry["package"], entry["file"])
    elif "path" in entry:
        path = Path(entry["path"]).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
    else:
        raise ModelIntegrityError(f"model '{key}' needs either package+file or path")
    return ModelFile(
        key=key,
        path=path,
        sha256=str(entry["sha256"]).lower(),
        licence=entry["licence"],
        source=entry["source"],
        trained_on=entry.get("trained_on", "Not documented by its provider."),
    )


def _style(entry: dict, models: dict[str, ModelFile]) -> Style:
    kind = entry.get("kind", "network")
    key = entry["key"]
    model = None
    if kind == "network":
        model = models["multistyle26"]
        parse_blend(entry["blend"])  # fail at load, not at first use
    elif kind == "filter":
        if entry.get("filter") not in FILTERS:
            raise ModelIntegrityError(f"style '{key}' names an unknown filter {entry.get('filter')!r}")
    elif kind == "custom":
        if entry.get("model") not in models:
            raise ModelIntegrityError(f"style '{key}' names an unknown model {entry.get('model')!r}")
        model = models[entry["model"]]
    else:
        raise ModelIntegrityError(f"style '{key}' has unknown kind {kind!r}")
    face_strength = float(entry.get("face_strength", 0.6))
    if not 0.0 <= face_strength <= 1.0:
        raise ModelIntegrityError(f"style '{key}': face_strength must be within 0..1")
    return Style(
        key=key,
        kind=kind,
        name=entry.get("name", key),
        name_zh=entry.get("name_zh", entry.get("name", key)),
        description=entry.get("description", ""),
        description_zh=entry.get("description_zh", entry.get("description", "")),
        face_strength=face_strength,
        blend=entry.get("blend", ""),
        filter=entry.get("filter", ""),
        model=model,
        input_range=float(entry.get("input_range", 1.0)),
    )
