"""The ``Idempotency-Key`` request header on the API's writes (booking/services/idempotency.py).

A write view opts in with :class:`IdempotentWrite` and names how a service's
result becomes its answer (``answer_body``). With the header, the key is
claimed first (or the first answer replayed, with ``Idempotent-Replayed:
true``); the service keeps a 2xx answer in its own transaction; a 4xx answer
is kept afterwards; a 429, 503 or 5xx answer is not kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.http import HttpResponse
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..errors import IdempotencyClaimLost, InvalidRequest
from ..services import idempotency
from .exceptions import describe_error
from .renderers import dumps

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")


def _kept(status_code: int) -> bool:
    """Whether an answer is kept for a retry to replay: 429, 503 and 5xx are not (a retry runs)."""
    return status_code < 500 and status_code != 429


class IdempotentWrite(APIView):
    """A POST write whose requests may carry an ``Idempotency-Key``."""

    def answer_body(self, result: Any) -> dict:
        """The answer's body for a service's result (what the view's 200 carries)."""
        raise NotImplementedError

    def run_idempotently(self, request: Request, write: Callable[[], Response]) -> HttpResponse:
        key = request.headers.get(HEADER)
        if key is None:
            return write()
        if not _KEY.match(key):
            raise InvalidRequest(f"{HEADER} must be 1 to 255 printable ASCII characters.")
        claimed = idempotency.idempotency_claim(
            user=request.user, path=request.path, key=key, body=request._request.body
        )
        if isinstance(claimed, idempotency.Replay):
            replay = HttpResponse(claimed.body, status=claimed.status_code, content_type="application/json")
            replay[REPLAYED] = "true"
            return replay

        def keep(result: Any) -> None:  # inside the service's transaction
            body = dumps(self.answer_body(result)).decode()
            idempotency.finish_in_transaction(claimed, status_code=200, body=body)
            kept.append(True)

        kept: list[bool] = []
        try:
            with idempotency.answers_kept_by(keep):
                response = write()
        except IdempotencyClaimLost:
            raise  # the key is another attempt's now: nothing of this one's is kept
        except Exception as exc:
            error = describe_error(exc)
            if error is not None and _kept(error.status):
                idempotency.idempotency_finish(claimed, status_code=error.status, body=dumps(error.body).decode())
            else:
                idempotency.idempotency_release(claimed)
            raise
        if not kept:  # a 2xx that no service transaction kept (it changed nothing)
            if _kept(response.status_code):
                idempotency.idempotency_finish(
                    claimed, status_code=response.status_code, body=dumps(response.data).decode()
                )
            else:
                idempotency.idempotency_release(claimed)
        return response
