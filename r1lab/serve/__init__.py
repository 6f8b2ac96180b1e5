"""Serving models over an OpenAI-compatible chat API: the app (:mod:`~r1lab.serve.app`), its
backends, the oracle judge and model folders (:mod:`~r1lab.serve.backends`), a uvicorn server
to run it in the background or foreground (:mod:`~r1lab.serve.server`) and the ``r1lab
serve`` stage (:mod:`~r1lab.serve.stage`)."""
