"""FastAPI dependencies: the one Recommender the app was built with."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bert4rec.inference.recommender import Recommender


def get_recommender(request: Request) -> Recommender:
    """The app's Recommender (set by `create_app`)."""
    recommender: Recommender = request.app.state.recommender
    return recommender


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
