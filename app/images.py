"""Uploaded images: check what they are, then store a resized WebP."""
from io import BytesIO

from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import DomainError

ACCEPTED_FORMATS = {"JPEG", "PNG", "GIF", "WEBP"}
# A small file can still unpack into a huge bitmap; refuse before decoding.
MAX_PIXELS = 40_000_000


def resize_image(data: bytes, *, max_bytes: int, size: tuple[int, int]) -> bytes:
    """Validate an upload and crop it to `size` as WebP. Raises DomainError (4xx)."""
    if not data:
        raise DomainError("Choose an image to upload.", 422)
    if len(data) > max_bytes:
        raise DomainError(f"That image is too large ({max_bytes // (1024 * 1024)} MB at most).", 413)
    try:
        with Image.open(BytesIO(data)) as probe:
            if probe.format not in ACCEPTED_FORMATS:
                raise DomainError("Upload a JPEG, PNG, GIF or WebP image.", 415)
            if probe.width * probe.height > MAX_PIXELS:
                raise DomainError("That image has too many pixels.", 413)
            probe.verify()
        with Image.open(BytesIO(data)) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            fitted = ImageOps.fit(image, size, Image.Resampling.LANCZOS)
            out = BytesIO()
            fitted.save(out, "WEBP", quality=85)
            return out.getvalue()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        raise DomainError("That file is not an image we can read.", 415) from None
