"""``fashionzoo serve``: the zoo behind HTTP (FastAPI on uvicorn, ONNX Runtime, no TensorFlow): the JSON API
(:mod:`.app`), uploads read into memory (:mod:`.uploads`), the bounds on work (:mod:`.limits`), the response schemas
(:mod:`.schemas`), the page for people (``page.html``) and running it (:mod:`.run`).

>>> from fashionzoo.server import create_app  # an ASGI app, for any ASGI server
>>> app = create_app()
"""

from fashionzoo.server.app import create_app
from fashionzoo.server.limits import ServerLimits

__all__ = ["ServerLimits", "create_app"]
