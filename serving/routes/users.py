"""``DELETE /v1/users/{user_id}``: forget a user everywhere (admin token)."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Path, Request

from serving.dependencies import ServingError, State, Writer
from serving.schemas import ID_PATTERN, Error, UserForgotten
from serving.state import StateHolder, log


def build_router() -> APIRouter:
    router = APIRouter(tags=["users"], responses={code: {"model": Error} for code in (401, 403, 422, 503)})

    @router.delete("/v1/users/{user_id}", response_model=UserForgotten, dependencies=[Writer])
    async def forget_user(
        request: Request,
        state: State,
        user_id: Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN)],
    ) -> UserForgotten:
        """Remove the user from the online store and its event log, rewrite retained runs without
        them, and record a tombstone so no later run brings them back. Needs the admin token."""
        from feature_store.online import STORE_UNAVAILABLE
        from recsys.privacy import PrivacyError, forget_users

        failed: tuple[type[Exception], ...] = (*STORE_UNAVAILABLE, PrivacyError)
        holder: StateHolder = request.app.state.holder
        runs_dir = holder.settings.runs(holder.config)
        try:
            done = await anyio.to_thread.run_sync(forget_users, holder.config, runs_dir, [user_id])
        except failed as error:
            log.error("forgetting a user failed: %s", type(error).__name__)
            raise ServingError(503, "forget_failed", f"forgetting failed, retry: {error}") from None
        state.histories.pop(user_id, None)  # this worker's copy of the run; others drop it on reload
        return UserForgotten(
            user_id=user_id,
            tombstoned=done.tombstones > 0,
            store_entries_removed=done.store_entries,
            run_files_rewritten=len(done.files),
        )

    return router
