"""Images uploaded as ``multipart/form-data``, parsed in memory with python-multipart as the body arrives: the
request size and the number of images are checked on the way, and nothing is written to disk (Starlette's own form
parser spools uploads over 1 MB to temporary files)."""

from __future__ import annotations

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from fashionzoo.photos.convert import ImageBytes
from fashionzoo.server.limits import RequestRefused, ServerLimits

FIELD = "files"
"""The form field of the images (one part per image, repeated)."""


class _Parts:
    """python-multipart's callbacks, collecting each part's headers and bytes."""

    def __init__(self, max_files: int) -> None:
        self.max_files = max_files
        self.images: list[ImageBytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._data = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_part_data": lambda data, start, end: self._data.extend(data[start:end]),
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._headers = {}
        self._data = bytearray()

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _end(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        field = options.get(b"name", b"").decode("utf-8", "replace")
        if field != FIELD:
            raise RequestRefused(
                400,
                f"form field {field!r} is not {FIELD!r}: send each image as a {FIELD!r} part, and options in the "
                "query string (?top_k=3)",
            )
        if len(self.images) == self.max_files:
            raise RequestRefused(413, f"more than {self.max_files} images in one request; send them in several")
        name = options.get(b"filename", b"").decode("utf-8", "surrogateescape") or f"upload-{len(self.images) + 1}"
        self.images.append(ImageBytes(name, bytes(self._data)))


async def read_images(request: Request, limits: ServerLimits) -> list[ImageBytes]:
    """The images of a ``multipart/form-data`` request, in the order sent; a request over ``limits`` (bytes or
    images), not multipart, malformed or without an image is refused in one line."""
    too_big = RequestRefused(
        413, f"the request is over the {limits.max_request_bytes:,}-byte limit; send fewer or smaller images"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise too_big
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise RequestRefused(
            415, f"send the images as multipart/form-data, one {FIELD!r} part each (curl -F {FIELD}=@photo.jpg)"
        )
    parts = _Parts(limits.max_files)
    received = 0
    try:  # the parser too: it refuses a boundary over 256 bytes
        parser = MultipartParser(options[b"boundary"], parts.callbacks())  # type: ignore[arg-type]
        async for chunk in request.stream():
            received += len(chunk)
            if received > limits.max_request_bytes:
                raise too_big
            parser.write(chunk)
        parser.finalize()
    except FormParserError as error:  # a malformed body, or a boundary the parser refuses
        reason = " ".join(str(error).split()) or type(error).__name__
        raise RequestRefused(400, f"the multipart body is malformed ({reason}); send it as a form upload") from None
    except ClientDisconnect:
        raise RequestRefused(400, "the client went away before the request was whole") from None
    if not parts.images:
        raise RequestRefused(400, f"no image in the request: send each as a {FIELD!r} file part")
    return parts.images
