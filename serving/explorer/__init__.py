"""``sae explore``: a page in the browser that steers a served model set's variables (Leeb et al., 2023: hybrid
sampling from the bank, with some variables kept and the others re-drawn).

A small ASGI app (starlette, run by uvicorn; the ``explore`` extra) serves one static page and JSON endpoints.
It reaches Triton only through the torch-free client (:class:`sae.clients.triton_client.SAEClient`), so every
request the page makes is checked, split and refused by the same rules as ``sae sample``:

* ``sets.py``: the sets a server serves and what the page needs to know of each (version, draw modes, prior,
  the variable of each latent dimension);
* ``calls.py``: the model calls (hybrid and prior samples, encode, decode, traversals) as JSON-ready dicts;
* ``uploads.py``: the checks on an uploaded image (size cap, PNG/JPEG only, decoded and resized with Pillow);
* ``app.py``: the routes, the error replies and ``serve``;
* ``static/``: the page (HTML, CSS, JavaScript; no framework).
"""
