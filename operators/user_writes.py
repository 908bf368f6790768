"""What the users step writes after ranking a user: the feed, the profile (for the inspector) and
the user features (`…:ufeat:{user}`, for search re-ranking), one function so the streaming flow
(`flows.adapters.UserLogic`) and a replay (`operators.backfill.final_writes`) write the same."""

from __future__ import annotations

from operators.context import Context
from operators.suggestions.snapshot import encode_user
from operators.user_state import UserState
from schemas import Feed
from schemas.outputs import encode_profile


def ranked_writes(state: UserState, feed: Feed, ctx: Context) -> list[tuple]:
    """("feed", …), ("profile", …), ("user_features", …) of `state` just ranked into `feed`."""
    at = state.profile_ts()
    return [("feed", state.user_id, feed.encode()),
            ("profile", state.user_id, encode_profile(state.user_id, at, state.affinities(ctx, at))),
            ("user_features", state.user_id, encode_user(state))]
