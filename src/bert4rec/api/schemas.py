"""Request and response bodies of the HTTP API (pydantic; the OpenAPI schema is generated from these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

MAX_TOP_K = 1000
MAX_SESSION_ITEMS = 10_000  # longer sessions are refused outright; up to this they are truncated
FILTER_PREFIX = "meta."

Id = Annotated[
    StrictInt | Annotated[StrictStr, Field(min_length=1, max_length=256)],
    Field(
        description="An id as in the training data. JSON numbers and strings are both accepted and mapped "
        'onto the vocabulary ("2571" finds item 2571 when the ids are integers, and vice versa); a string '
        'finds an integer id only in canonical decimal form ("2571", not "+2571", " 2571" or "2_571").',
        examples=[2571, "2571"],
    ),
]
FilterScalar = StrictBool | StrictInt | StrictFloat | Annotated[StrictStr, Field(max_length=256)]
FilterValue = FilterScalar | Annotated[list[FilterScalar], Field(min_length=1, max_length=100)]


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: StrictInt = Field(
        default=10, ge=1, le=MAX_TOP_K, description=f"How many items to return, 1..{MAX_TOP_K}."
    )
    filters: dict[str, FilterValue] = Field(
        default_factory=dict,
        max_length=20,
        description="Item metadata filters, keys `meta.<field>`. Text fields match the whole value or one "
        'of its `|`-separated parts, case-insensitively (`{"meta.genres": "Comedy"}` matches '
        '"Action|Comedy"); numbers and booleans match by equality; a list means any of its values. '
        "All fields must match. `GET /health` lists the fields.",
        examples=[{"meta.genres": "Comedy"}],
    )
    exclude_seen: StrictBool = Field(
        default=True, description="Leave out items already in the history (the query item for item_to_item)."
    )
    return_vector: StrictBool = Field(
        default=False,
        description="Also return the query's intent vector `[h, 1]` (model path: user_to_item for a known "
        "user, contextual, sequential). Its inner product with an item's exported vector "
        "(`bert4rec export-vectors`) is the model's score of that item.",
    )

    @field_validator("filters")
    @classmethod
    def _prefixed(cls, filters: dict[str, Any]) -> dict[str, Any]:
        for key in filters:
            if not key.startswith(FILTER_PREFIX) or key == FILTER_PREFIX:
                raise ValueError(
                    f"filter keys must look like '{FILTER_PREFIX}<field>' (e.g. 'meta.genres'), got {key!r}"
                )
        return filters

    def metadata_filters(self) -> dict[str, Any]:
        """The filters with the `meta.` prefix removed, as the Recommender takes them."""
        return {key[len(FILTER_PREFIX) :]: value for key, value in self.filters.items()}


class ItemToItemQuery(_Query):
    """Items similar to `item_id`; for an item the model does not know, `item_text` (a title or
    description) is matched against item titles and metadata instead (if the server has it enabled)."""

    # documents "item_id, item_text or both" in the OpenAPI schema; the validator below enforces it
    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["item_id"]}, {"required": ["item_text"]}]}
    )

    query_type: Literal["item_to_item"]
    item_id: Id | None = None
    item_text: Annotated[str, Field(min_length=1, max_length=2000)] | None = Field(
        default=None, description="Free text for an item outside the vocabulary (text cold start)."
    )

    @model_validator(mode="after")
    def _something_to_search(self) -> ItemToItemQuery:
        if self.item_id is None and self.item_text is None:
            raise ValueError("item_to_item needs an item_id, an item_text, or both")
        return self


class UserToItemQuery(_Query):
    """Next items for a user from their stored history; an unknown user gets the most popular items."""

    query_type: Literal["user_to_item"]
    user_id: Id


class ContextualQuery(_Query):
    """Next items for a known user who is looking at `item_id` now (history + that item)."""

    query_type: Literal["contextual"]
    user_id: Id
    item_id: Id


SESSION_ALIAS = "item_ids"  # the name `session_items` had before the spec's; still accepted


def _document_session_alias(schema: dict[str, Any]) -> None:
    """OpenAPI: pydantic lists only the first name of AliasChoices; add the alias as a deprecated
    property with the same shape, and say that one of the two names is required (the validator
    below refuses both)."""
    properties = schema.setdefault("properties", {})
    properties[SESSION_ALIAS] = {
        **properties["session_items"],
        "title": "Item Ids",
        "deprecated": True,
        "description": "Alias of `session_items` (give one of the two).",
    }
    schema["required"] = [name for name in schema.get("required", []) if name != "session_items"]
    schema["oneOf"] = [{"required": ["session_items"]}, {"required": [SESSION_ALIAS]}]


class SequentialQuery(_Query):
    """Next items after a session of item ids, oldest first, the last being the current interaction
    (guests). Sessions longer than the model's window keep their most recent items and the response
    says `truncated: true`. `item_ids` is accepted as an alias of `session_items`."""

    model_config = ConfigDict(json_schema_extra=_document_session_alias)

    query_type: Literal["sequential"]
    session_items: list[Id] = Field(
        min_length=1,
        max_length=MAX_SESSION_ITEMS,
        validation_alias=AliasChoices("session_items", SESSION_ALIAS),
        description="The session's item ids, oldest first; the last is the current interaction. "
        f"`{SESSION_ALIAS}` is accepted as an alias.",
        examples=[["item_1024", "item_89", "item_300"]],
    )

    @model_validator(mode="before")
    @classmethod
    def _one_session_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "session_items" in data and SESSION_ALIAS in data:
            raise ValueError(f"give the session as session_items or as its alias {SESSION_ALIAS}, not both")
        return data


RecommendRequest = Annotated[
    ItemToItemQuery | UserToItemQuery | ContextualQuery | SequentialQuery, Field(discriminator="query_type")
]


class RecommendedItem(BaseModel):
    rank: int = Field(description="1 = best.")
    item_id: int | str
    title: str | None = Field(description="Display title, when the data had one.")
    score: float = Field(
        description="Model score (logit), cosine similarity, or popularity count: see `path`."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)


class RecommendResponse(BaseModel):
    query_type: str
    path: Literal["model", "popularity", "item_vectors", "content"] = Field(
        description="How the list was made: the sequence model, global popularity (unknown user), "
        "nearest item vectors (item_to_item), or text similarity (item_to_item with item_text)."
    )
    items: list[RecommendedItem]
    history_length: int = Field(description="Items in the query's history.")
    used_length: int = Field(description="History items the model saw (the most recent ones).")
    truncated: bool = Field(description="True when the history was longer than `max_history` and cut.")
    max_history: int
    intent_vector: list[float] | None = Field(
        default=None,
        description="With `return_vector`: the intent vector (hidden size + 1 floats) the items were "
        "searched with; null for the popularity and item_to_item paths.",
    )


class ItemResponse(BaseModel):
    item_id: int | str
    title: str | None
    metadata: dict[str, Any]


class ItemSearchResponse(BaseModel):
    query: str
    items: list[ItemResponse] = Field(
        description="Matches: exact id first, then titles starting with the query, then the others "
        "containing it, each group by training popularity; an empty query lists popular items."
    )


class UserResponse(BaseModel):
    user_id: int | str
    history_length: int = Field(description="Items the user interacted with (train, validation and test).")
    items: list[ItemResponse] = Field(description="The most recent items of the history, oldest first.")


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    model_type: str
    n_items: int
    n_users: int
    max_history: int = Field(description="Longest history the model reads; longer ones are truncated.")
    fingerprint: str = Field(description="Short sha256 of the served weights.")
    data_fingerprint: str | None = Field(description="Fingerprint of the training data split.")
    filter_fields: list[str] = Field(description="Item metadata usable as `meta.<field>` filters.")
    text_cold_start: bool = Field(description="Whether item_to_item accepts `item_text` for unknown items.")


class ErrorResponse(BaseModel):
    detail: str = Field(examples=["unknown item id 99999 (not in the 3416 trained items)"])


# ------------------------------------------------------------------ catalogue updates


class ItemUpsertRequest(BaseModel):
    """An item to add after training (or an added item to update): a free-text description and/or
    metadata fields of the model's item table (title, genres, ...). Its vector is made from this
    text (title, then `field: value` pairs, then the description) by the trained content fusion."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[StrictStr, Field(min_length=1, max_length=2000)] | None = Field(
        default=None,
        description="A description (1..2000 characters); optional when the metadata has a title.",
        examples=["A heist thriller set in Lisbon; sequel to The Vault"],
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        max_length=50,
        description="Fields of the model's item table (`GET /health` lists them as filter_fields), with "
        "values of the column's type; filters (`meta.<field>`) see them.",
        examples=[{"title": "The Vault 2 (2026)", "genres": "Crime|Thriller"}],
    )


class CatalogInfo(BaseModel):
    version: int = Field(description="Catalogue version: 0 as trained, +1 per update.")
    trained: int = Field(description="Items the model was trained on.")
    added: int = Field(description="Items added after training (retired ones included).")
    retired: int = Field(description="Items never recommended again.")
    active: int = Field(description="Items that can be recommended.")


class ItemChangeResponse(BaseModel):
    item_id: int | str
    status: Literal["added", "updated", "retired"]
    catalog: CatalogInfo


class CatalogHealthResponse(HealthResponse):
    catalog: CatalogInfo = Field(description="The served item catalogue: version and counts.")
    accepts_new_items: bool = Field(
        description="Whether items can be added (PUT /items/{item_id}): the model has item text vectors."
    )
