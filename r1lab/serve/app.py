"""An OpenAI-compatible chat API over any backend: ``POST /v1/chat/completions``, ``GET
/v1/models``.

Judges and rewriters are reached through the ``openai`` client (DeepSeek-V3's role in the
report), so serving a checkpoint or the oracle behind the same API lets the pipeline, and
anyone's tooling, use one client for all of them. Only the subset of OpenAI's request schema
that a judge needs is implemented; anything else a client may send is ignored, except what
would change the reply's shape (``n`` > 1, ``stream``), which is refused. Bad input is a 400
with OpenAI's error body, never a 500: a 500 (same body, traceback in the server's log) means
a bug here or in the backend.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Literal, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Backend", "ChatRequest", "create_app"]

_log = logging.getLogger("r1lab.serve")

# When a request sets no limit: enough for any judge reply and most responses.
DEFAULT_MAX_TOKENS = 512


class Backend(Protocol):
    """What answers a chat: text, finish reason (``stop`` / ``length``) and token counts.

    ``complete`` may raise ValueError for a request it cannot serve (a prompt too long, a
    non-protocol request to the oracle); the client gets a 400 with the message.
    """

    def complete(
        self,
        messages: list[dict[str, str]],
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None,
        stop: list[str],
    ) -> tuple[str, str, int, int]: ...


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(BaseModel):
    """The part of OpenAI's chat-completions request that is honoured."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    n: int = 1
    stop: str | list[str] | None = None
    stream: bool = False

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status)


def create_app(backend: Backend, model_name: str) -> FastAPI:
    """The API serving ``backend`` under the model name ``model_name``."""
    app = FastAPI(title=f"r1lab serve: {model_name}", docs_url=None, redoc_url=None)
    created = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(400, f"{where or 'request'}: {first.get('msg', 'invalid request')}")

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        card = {"id": model_name, "object": "model", "created": created, "owned_by": "r1lab"}
        return {"object": "list", "data": [card]}

    # A plain function: FastAPI runs it in a worker thread, so generating does not block
    # the event loop (the backend serialises generation itself where it must).
    @app.post("/v1/chat/completions", response_model=None)
    def chat(request: ChatRequest) -> dict[str, Any] | JSONResponse:
        if request.model != model_name:
            return _error(404, f"model '{request.model}' is not served here (served: "
                          f"'{model_name}')", "not_found_error")  # fmt: skip
        if request.n != 1:
            return _error(400, "n: only n=1 is supported")
        if request.stream:
            return _error(400, "stream: streaming is not supported")
        # OpenAI's newer clients send the system prompt as "developer"; backends know "system"
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in request.messages
        ]
        max_tokens = request.max_completion_tokens or request.max_tokens or DEFAULT_MAX_TOKENS
        try:
            text, finish, prompt_tokens, completion_tokens = backend.complete(
                messages, request.temperature, request.top_p, max_tokens, request.seed,
                request.stops(),
            )  # fmt: skip
        except ValueError as e:
            return _error(400, str(e))
        except Exception as e:  # a bug in the backend: logged, and answered like OpenAI does
            # (left to Starlette, the 500 would also drop the connection under a client that
            # is about to retry on it)
            _log.exception("the backend failed on a request")
            return _error(500, f"the backend failed: {type(e).__name__}: {e}", "server_error")
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    return app
