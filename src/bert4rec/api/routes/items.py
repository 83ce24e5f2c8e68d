"""Items: search (GET /items?query=), metadata (GET /items/{item_id}), and catalogue updates without
retraining: PUT /items/{item_id} adds (or updates an added) item from its text and metadata,
DELETE /items/{item_id} retires an item so it is never recommended again.

Update errors: 404 unknown (or already retired) item; 409 the id is a trained item, or the model
has no item text vectors; 422 malformed item (`{"detail": [{"loc", "msg", "type"}]}` naming the
field); 503 the catalogue could not be saved. Every error leaves the catalogue unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response

from bert4rec.api.deps import RecommenderDep
from bert4rec.api.schemas import (
    CatalogInfo,
    ErrorResponse,
    ItemChangeResponse,
    ItemResponse,
    ItemSearchResponse,
    ItemUpsertRequest,
)
from bert4rec.errors import (
    ArtifactError,
    CatalogConflictError,
    CatalogError,
    CatalogWriteError,
    ContentUnavailableError,
    UnknownIdError,
)

router = APIRouter(prefix="/items", tags=["items"])

ItemIdPath = Annotated[str, Path(min_length=1, max_length=256, description="The item's id.")]


@router.get("")
def search_items(
    rec: RecommenderDep,
    query: Annotated[str, Query(max_length=200, description="Part of a title or an item id.")] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ItemSearchResponse:
    """Items whose title or id contains `query`, case-insensitively (popular items first; retired
    items are left out)."""
    return ItemSearchResponse(
        query=query, items=[ItemResponse(**item) for item in rec.search_items(query, limit)]
    )


@router.get("/{item_id:path}", responses={404: {"model": ErrorResponse, "description": "Unknown item id."}})
def get_item(item_id: str, rec: RecommenderDep) -> ItemResponse:
    """Title and metadata of an item (trained or added)."""
    return ItemResponse(**rec.item_summary(item_id))


def _update_error(err: Exception) -> HTTPException:
    """A catalogue update error as the API's error contract (see the module docstring)."""
    if isinstance(err, UnknownIdError):
        return HTTPException(404, str(err))
    if isinstance(err, CatalogConflictError):
        return HTTPException(409, str(err))
    if isinstance(err, CatalogError):
        loc = ["path", "item_id"] if err.field == "item_id" else ["body", *err.field.split(".", 1)]
        return HTTPException(422, [{"loc": loc, "msg": str(err), "type": "catalog_item"}])
    return HTTPException(503, str(err))  # could not save or read the catalogue, or no text encoder


_UPDATE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown or already retired item id."},
    409: {"model": ErrorResponse, "description": "A trained item's id, or a model without text vectors."},
    503: {"model": ErrorResponse, "description": "The catalogue could not be saved (nothing changed)."},
}


@router.put(
    "/{item_id:path}", status_code=201, responses={200: {"model": ItemChangeResponse}, **_UPDATE_ERRORS}
)
def put_item(
    item_id: ItemIdPath, body: ItemUpsertRequest, rec: RecommenderDep, response: Response
) -> ItemChangeResponse:
    """Add an item after training (201), or update an item added before (200): its vector comes from
    its text through the trained content fusion, so it can be recommended by every query type and
    used as a query item at once. Saved beside the model; survives a restart."""
    try:
        rec.refresh_catalog()  # another worker may have added it: 200, not 201
        existed = rec.vocab.has_item(item_id)
        info = rec.add_item(item_id, text=body.text, metadata=body.metadata)
    except (CatalogError, CatalogWriteError, ContentUnavailableError, ArtifactError) as err:
        raise _update_error(err) from err
    if existed:
        response.status_code = 200
    found = rec.vocab.item_ids[rec.vocab.item_idx(item_id) - 1]
    return ItemChangeResponse(
        item_id=found, status="updated" if existed else "added", catalog=CatalogInfo(**info)
    )


@router.delete("/{item_id:path}", responses=_UPDATE_ERRORS)
def delete_item(item_id: ItemIdPath, rec: RecommenderDep) -> ItemChangeResponse:
    """Retire an item (trained or added): it is never recommended again; histories that hold it still
    read. Saved beside the model; survives a restart."""
    try:
        rec.refresh_catalog()  # another worker may have added or retired it
        found = rec.catalog.check_retire(item_id)
        info = rec.retire_items([item_id])
    except (UnknownIdError, CatalogError, CatalogWriteError, ArtifactError) as err:
        raise _update_error(err) from err
    return ItemChangeResponse(item_id=found, status="retired", catalog=CatalogInfo(**info))
