"""The wire protocols as objects: one small interface, implemented once for each protocol.

The runtime reads a request through ``decode`` and ``parse``; the HTTP layer shapes the answer
through ``answer`` and the errors through ``error`` and ``failure``. Which protocol a route speaks
is chosen once, in the route table of ``app.py``. The parsing and shaping themselves live in
``protocols.py``; nothing here knows HTTP requests or the server library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .protocols import (
    BINARY_HEADER,
    PROBABILITIES,
    Inputs,
    dumps,
    mlflow_answer,
    mlflow_document,
    mlflow_error,
    mlflow_parse,
    parse_json,
    predict_answer,
    predict_error,
    predict_inputs,
    v2_answer,
    v2_binary_answer,
    v2_document,
    v2_error,
    v2_inputs,
    v2_probabilities,
)
from .signature import Signature

JSON = "application/json"
MLFLOW_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    413: "RESOURCE_LIMIT_EXCEEDED",
    415: "BAD_REQUEST",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class Reply:
    """An answer as bytes, before it is an HTTP response."""

    status: int
    content: bytes
    media_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answered:
    """What a successful prediction gives a protocol to answer with."""

    model: str
    version: int
    variant: str
    predictions: list[Any]
    inputs: Inputs
    signature: Signature | None
    request_headers: Mapping[str, str]
    probabilities: list[list[float]] | None = None  # when the request named the output "probabilities"
    classes: list[Any] | None = None  # the class of each probability column (the model's classes_)


class WireProtocol:
    """One wire protocol: read a request's body into columns, shape the answer and the errors."""

    name = ""

    def decode(self, body: bytes, headers: Mapping[str, str], *, max_bytes: int) -> Any:
        """The request's document, read without any signature."""
        raise NotImplementedError

    def parse(self, document: Any, signature: Signature | None) -> Inputs:
        """Columns from the document, as ``signature`` names and types them (positional payloads, CSV, matrices)."""
        raise NotImplementedError

    def answer(self, answered: Answered, headers: dict[str, str]) -> Reply:
        raise NotImplementedError

    def error(self, status: int, problems: list[str], *, signature_refused: bool = False) -> dict[str, Any]:
        """The JSON body of an error in this protocol's shape."""
        raise NotImplementedError

    def failure(
        self,
        status: int,
        problems: list[str],
        headers: dict[str, str],
        *,
        error_id: str | None = None,
        signature_refused: bool = False,
    ) -> Reply:
        """A prediction request that was not answered: the error body, with its id when the server failed."""
        body = self.error(status, problems, signature_refused=signature_refused)
        if error_id:
            body["error_id"] = error_id
        return Reply(status, dumps(body), headers=headers)


class OwnProtocol(WireProtocol):
    """``POST /predict``: records or columns; the answer names the model, version and variant."""

    name = "own"

    def decode(self, body: bytes, headers: Mapping[str, str], *, max_bytes: int) -> Any:
        return parse_json(body)

    def parse(self, document: Any, signature: Signature | None) -> Inputs:
        return predict_inputs(document)

    def answer(self, answered: Answered, headers: dict[str, str]) -> Reply:
        a = answered
        body = predict_answer(a.model, a.version, a.variant, a.predictions, a.request_headers.get("x-request-id"))
        return Reply(200, dumps(_with_probabilities(body, a)), headers=headers)

    def error(self, status: int, problems: list[str], *, signature_refused: bool = False) -> dict[str, Any]:
        return predict_error(problems)


class MLflowProtocol(WireProtocol):
    """MLflow's scoring protocol: ``POST /invocations``, errors with MLflow's error codes."""

    name = "mlflow"

    def decode(self, body: bytes, headers: Mapping[str, str], *, max_bytes: int) -> Any:
        return mlflow_document(body, headers.get("content-type"), max_bytes=max_bytes)

    def parse(self, document: Any, signature: Signature | None) -> Inputs:
        return mlflow_parse(document, signature)

    def answer(self, answered: Answered, headers: dict[str, str]) -> Reply:
        return Reply(200, dumps(_with_probabilities(mlflow_answer(answered.predictions), answered)), headers=headers)

    def error(self, status: int, problems: list[str], *, signature_refused: bool = False) -> dict[str, Any]:
        # MLflow answers input its signature refuses with INVALID_PARAMETER_VALUE, unreadable input with BAD_REQUEST
        code = "INVALID_PARAMETER_VALUE" if signature_refused else MLFLOW_CODES.get(status, "INTERNAL_ERROR")
        return mlflow_error(problems, code=code)

    def failure(
        self,
        status: int,
        problems: list[str],
        headers: dict[str, str],
        *,
        error_id: str | None = None,
        signature_refused: bool = False,
    ) -> Reply:
        if status == 415:  # as MLflow's scoring server: plain text
            return Reply(415, "; ".join(problems).encode("utf-8"), "text/plain", headers)
        return super().failure(status, problems, headers, error_id=error_id, signature_refused=signature_refused)


class V2Protocol(WireProtocol):
    """Open Inference Protocol V2: tensors in, an output tensor out (JSON, or binary when asked for)."""

    name = "v2"

    def decode(self, body: bytes, headers: Mapping[str, str], *, max_bytes: int) -> Any:
        return v2_document(body, headers.get(BINARY_HEADER))

    def parse(self, document: Any, signature: Signature | None) -> Inputs:
        return v2_inputs(document, signature)

    def answer(self, answered: Answered, headers: dict[str, str]) -> Reply:
        a = answered
        name = a.signature.output_name if a.signature else "predict"
        body = v2_answer(a.model, a.version, a.variant, a.predictions, a.inputs.request_id, name)
        if a.probabilities is not None:
            tensors = {name: body["outputs"][0], PROBABILITIES: v2_probabilities(a.probabilities, a.classes)}
            body["outputs"] = [tensors[n] for n in a.inputs.outputs if n in tensors]  # the order asked for
        if not a.inputs.binary_output:
            return Reply(200, dumps(body), headers=headers)
        content, length = v2_binary_answer(body)
        headers["Inference-Header-Content-Length"] = str(length)
        return Reply(200, content, "application/octet-stream", headers)

    def error(self, status: int, problems: list[str], *, signature_refused: bool = False) -> dict[str, Any]:
        return v2_error(problems)


def _with_probabilities(body: dict[str, Any], answered: Answered) -> dict[str, Any]:
    if answered.probabilities is not None:
        body["probabilities"] = answered.probabilities
        body["classes"] = answered.classes
    return body


OWN, MLFLOW, V2 = OwnProtocol(), MLflowProtocol(), V2Protocol()
