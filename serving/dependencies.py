"""What routes share: the state being served, the write guard, and errors as JSON naming the problem."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serving.schemas import FieldError
from serving.settings import ServingSettings
from serving.state import ServingState


class ServingError(Exception):
    """An answer other than 2xx: HTTP status, a short code and a message (and the fields at fault)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields or []
        self.headers = headers


def invalid(field: str, location: str, message: str) -> ServingError:
    """A 422 naming the parameter or body field at fault."""
    return ServingError(
        422,
        "invalid_request",
        f"{field}: {message}",
        [FieldError(field=field, location=location, message=message)],
    )


def current_state(request: Request) -> ServingState:
    """The state this request uses to its end (a reload swaps the reference, never this object)."""
    state: ServingState | None = request.app.state.holder.current
    if state is None:
        raise ServingError(503, "not_ready", "no run is loaded yet")
    return state


bearer = HTTPBearer(auto_error=False, description="The service's RECSYS_API_TOKEN")


def require_writer(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """Writes and admin need ``Authorization: Bearer <RECSYS_API_TOKEN>``; with no token configured they
    are refused, never open."""
    settings: ServingSettings = request.app.state.settings
    if settings.api_token is None:
        raise ServingError(
            403,
            "writes_disabled",
            "this service has no API token configured (set RECSYS_API_TOKEN): "
            "write and admin routes are refused",
        )
    expected = settings.api_token.get_secret_value().encode()
    if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected):
        raise ServingError(
            401, "unauthorized", "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


State = Annotated[ServingState, Depends(current_state)]
Writer = Depends(require_writer)
