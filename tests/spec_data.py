"""A generated catalogue shaped like the product spec's examples: string ids ("item_1024",
"user_777") and item metadata columns brand / category / in_stock (bool) / title / description."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from bert4rec.config import ExperimentConfig, build_config

CATEGORIES = {"Electronics": ["Samsung", "Apple", "Sony"], "Books": ["Penguin"], "Home": ["Ikea", "Samsung"]}
SPEC_ITEMS = (1024, 89, 300)  # the item ids the spec's payloads name
SPEC_USER = "user_777"


def write_spec_data(folder: Path, n_users: int = 160, n_items: int = 60, seed: int = 0) -> tuple[Path, Path]:
    """interactions.csv (user_id, item_id, timestamp) and items.parquet; every user browses mostly
    one category in catalogue order, so the sequences carry a next-item signal."""
    rng = np.random.default_rng(seed)
    numbers = (
        list(SPEC_ITEMS) + [n for n in range(1, 2000, 7) if n not in SPEC_ITEMS][: n_items - len(SPEC_ITEMS)]
    )
    names = list(CATEGORIES)
    category = [names[j % len(names)] for j in range(n_items)]
    category[0] = "Electronics"  # item_1024 is a Samsung phone, as in the spec's example
    brand = [CATEGORIES[c][(j // len(names)) % len(CATEGORIES[c])] for j, c in enumerate(category)]
    brand[0] = "Samsung"
    items = pl.DataFrame(
        {
            "item_id": [f"item_{n}" for n in numbers],
            "brand": brand,
            "category": category,
            "in_stock": [j % 4 != 3 for j in range(n_items)],
            "title": [
                f"{b} {c.lower()} product {n}" for b, c, n in zip(brand, category, numbers, strict=True)
            ],
            "description": [f"A {c.lower()} item made by {b}." for b, c in zip(brand, category, strict=True)],
        }
    )
    by_category = {c: [j for j in range(n_items) if category[j] == c] for c in names}
    users = [SPEC_USER] + [f"user_{u}" for u in range(1000, 1000 + n_users - 1)]
    rows: dict[str, list] = {"user_id": [], "item_id": [], "timestamp": []}
    for u, user in enumerate(users):
        pool = by_category[names[u % len(names)]]
        start = int(rng.integers(len(pool)))
        for t in range(int(rng.integers(8, 16))):
            j = pool[(start + t) % len(pool)] if rng.random() < 0.8 else int(rng.integers(n_items))
            rows["user_id"].append(user)
            rows["item_id"].append(f"item_{numbers[j]}")
            rows["timestamp"].append(1_700_000_000 + 60 * (u * 100 + t))
    interactions = folder / "interactions.csv"
    pl.DataFrame(rows).write_csv(interactions)
    items_path = folder / "items.parquet"
    items.write_parquet(items_path)
    return interactions, items_path


def spec_config(interactions: Path, items_path: Path, **train: object) -> ExperimentConfig:
    """A tiny BERT4Rec over the spec-shaped files (trains in seconds on a CPU)."""
    return build_config(
        "demo",
        {
            "data": {
                "dataset": "file",
                "path": str(interactions),
                "items_path": str(items_path),
                "metadata_cols": ["brand", "category", "in_stock", "title", "description"],
                "display_col": "title",
            },
            # ID-only: the contract is about payloads; text cold start is served from MiniLM anyway
            "model": {"max_len": 16, "hidden_size": 16, "content_fusion": False},
            "train": {"epochs": 2, "batch_size": 32, "num_threads": 1, **train},
        },
    )
