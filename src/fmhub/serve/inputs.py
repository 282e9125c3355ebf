"""Request bodies to the raw inputs ``model.predict`` takes (texts, images, audio)."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from ..errors import InputError

__all__ = ["decode_item", "decode_items", "from_multipart"]

#: Leading bytes of encoded audio files (WAV, FLAC, Ogg, MP3): passed to the plugin as bytes.
_AUDIO_MAGIC = (b"RIFF", b"fLaC", b"OggS", b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"{where} must be a base64 string, got {type(value).__name__}.")
    if value.startswith("data:"):  # data URL: data:image/png;base64,....
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{where} is not valid base64.") from None


def _image(data: bytes, where: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(
            f"{where} is not an image fmhub can decode ({exc}); send PNG, JPEG, WebP, ... bytes."
        ) from None
    return img


def _rate(value: Any, where: str) -> int:
    try:
        rate = int(value)
    except (TypeError, ValueError):
        rate = 0
    if rate <= 0 or (isinstance(value, float) and not float(value).is_integer()):
        raise InputError(f"{where}: sample_rate must be a positive integer (Hz), got {value!r}.")
    return rate


def _audio(data: bytes, rate: Any, where: str) -> Any:
    """An encoded audio file stays bytes (the plugin decodes it); raw PCM needs its rate."""
    if data.startswith(_AUDIO_MAGIC) or rate is None:
        return data  # an encoded file: the plugin decodes it, or names what it could not read
    import numpy as np

    if len(data) % 4:
        raise InputError(
            f"{where}: raw audio must be little-endian float32 samples "
            f"(a multiple of 4 bytes), got {len(data)} bytes."
        )
    return np.frombuffer(data, dtype="<f4").astype(np.float32), _rate(rate, where)


def decode_item(item: Any, index: int) -> Any:
    """One JSON input to a raw input.

    * a string: text; a list of numbers: passed as it is (vector models);
    * ``{"text": s}``;
    * ``{"image": base64}`` (an encoded image file, or a ``data:`` URL) to a PIL image;
    * ``{"audio": base64}`` an encoded audio file (WAV, FLAC, ...), or raw little-endian float32
      samples with ``"sample_rate"``; ``{"array": [...], "sample_rate": hz}`` samples as numbers.
    """
    where = f"input {index}"
    if isinstance(item, (str, int, float, list)) or item is None:
        return item
    if not isinstance(item, dict):
        raise InputError(
            f"{where} is a {type(item).__name__}; send text, numbers or an object "
            "with 'text', 'image' or 'audio'."
        )
    if "text" in item:
        return item["text"]
    if "image" in item:
        return _image(_b64(item["image"], f"{where} 'image'"), where)
    if "audio" in item:
        return _audio(_b64(item["audio"], f"{where} 'audio'"), item.get("sample_rate"), where)
    if "array" in item:
        import numpy as np

        rate = _rate(item.get("sample_rate"), where)
        try:
            arr = np.asarray(item["array"], dtype=np.float32)
        except (TypeError, ValueError):
            raise InputError(f"{where}: 'array' must be a list of numbers.") from None
        return arr, rate
    raise InputError(
        f"{where} has keys {sorted(item)}; an object input takes 'text', 'image' "
        "(base64), 'audio' (base64, with 'sample_rate' for raw float32 samples) or "
        "'array' with 'sample_rate'."
    )


def decode_items(body: Any) -> tuple[list[Any], dict[str, Any]]:
    """``{"inputs": [...], "options": {...}}`` (or ``"input"`` for one) to raw inputs and options."""
    if not isinstance(body, dict):
        raise InputError('The body must be a JSON object such as {"inputs": ["some text"]}.')
    if "inputs" in body:
        items = body["inputs"]
        if not isinstance(items, list):
            raise InputError("'inputs' must be a list; for one input send {\"input\": x}.")
    elif "input" in body:
        items = [body["input"]]
    else:
        raise InputError("The body has no 'inputs': send {\"inputs\": [x, ...]}.")
    if not items:
        raise InputError("'inputs' is empty; send at least one input.")
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise InputError("'options' must be an object of per-call options.")
    return [decode_item(x, i) for i, x in enumerate(items)], options


async def from_multipart(form: Any) -> list[Any]:
    """A multipart form to raw inputs, in the order of its parts.

    File parts: ``image/*`` become PIL images; any other file is audio (an encoded file, or raw
    float32 samples when the form has a ``sample_rate`` field). Plain fields named ``text`` or
    ``inputs`` are texts.
    """
    rate = form.get("sample_rate")
    out: list[Any] = []
    for name, value in form.multi_items():
        if name == "sample_rate":
            continue
        where = f"input {len(out)} ({name!r})"
        if hasattr(value, "read"):
            data = await value.read()
            ctype = (getattr(value, "content_type", None) or "").lower()
            if ctype.startswith("image/"):
                out.append(_image(data, where))
            elif ctype.startswith("text/"):
                out.append(data.decode("utf-8", errors="replace"))
            else:
                out.append(_audio(data, rate, where))
        elif name in ("text", "inputs", "input"):
            out.append(str(value))
    if not out:
        raise InputError("The form has no inputs: send files, or fields named 'text'.")
    return out
