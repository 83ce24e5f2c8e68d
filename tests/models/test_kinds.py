"""One object per model type: the registry matches the one list of names, and each kind owns its
training windows, training batches and inference input."""

import numpy as np
import pytest
from helpers import tiny_config

from bert4rec.config import BASELINE_TYPES, MODEL_TYPES, TRANSFORMER_TYPES, ExperimentConfig
from bert4rec.data.collate import BertCollator, NextItemCollator
from bert4rec.data.kinds import CLOZE, NEXT_ITEM, SEQUENCE_KINDS, sequence_kind
from bert4rec.errors import ConfigError
from bert4rec.models import TRANSFORMERS, build_transformer
from bert4rec.models.baselines import BASELINES
from bert4rec.training.fit import make_train_loader, train_windows


def test_registries_cover_exactly_the_model_names():
    assert tuple(TRANSFORMERS) == tuple(SEQUENCE_KINDS) == TRANSFORMER_TYPES == ("bert4rec", "sasrec")
    for name, cls in TRANSFORMERS.items():
        assert cls.model_type == name
    assert tuple(BASELINES) == BASELINE_TYPES
    assert (*TRANSFORMER_TYPES, *BASELINE_TYPES) == MODEL_TYPES
    for name in MODEL_TYPES:  # config validation accepts each name
        assert ExperimentConfig(model_type=name).model_type == name
    for name, cls in BASELINES.items():
        assert cls().name == name


def test_lookup_by_model_type_and_unknown_names():
    assert sequence_kind("bert4rec") is CLOZE and sequence_kind("sasrec") is NEXT_ITEM
    cfg = tiny_config().model
    sasrec, bert = (build_transformer(name, cfg, n_items=10) for name in ("sasrec", "bert4rec"))
    assert sequence_kind(sasrec.model_type) is NEXT_ITEM and sasrec.causal
    assert sequence_kind(bert.model_type) is CLOZE and not bert.causal
    with pytest.raises(ConfigError, match="not a Transformer model type: 'mf'"):
        sequence_kind("mf")


def test_each_kind_owns_its_window_collator_and_inference_input():
    train = tiny_config().train
    assert CLOZE.train_window(16) == 16 and NEXT_ITEM.train_window(16) == 17
    assert isinstance(CLOZE.train_collator(30, train), BertCollator)
    assert isinstance(NEXT_ITEM.train_collator(30, train), NextItemCollator)
    assert CLOZE.max_history(4) == 3 and NEXT_ITEM.max_history(4) == 4
    hist = [np.array([1, 2, 3, 4, 5]), np.array([7])]
    # BERT4Rec: the last max_len - 1 items and a [MASK] (n_items + 1); SASRec: the last max_len items
    assert CLOZE.inference_batch(hist, 4, n_items=30).tolist() == [[3, 4, 5, 31], [0, 0, 7, 31]]
    assert NEXT_ITEM.inference_batch(hist, 4, n_items=30).tolist() == [[2, 3, 4, 5], [0, 0, 0, 7]]


def test_inference_chunks_group_similar_lengths_and_cover_every_history():
    rng = np.random.default_rng(0)
    hist = [rng.integers(1, 10, size=n) for n in (5, 1, 3, 2, 4)]
    chunks = list(NEXT_ITEM.inference_chunks(hist, 8, n_items=9, chunk_size=2))
    assert [idx.tolist() for idx, _ in chunks] == [[1, 3], [2, 4], [0]]
    assert [seq.shape[1] for _, seq in chunks] == [2, 4, 5]  # each chunk padded to its own longest


def test_training_reads_window_and_collator_from_the_kind(tiny_prepared):
    split = tiny_prepared.split
    for name, window in (("bert4rec", 16), ("sasrec", 17)):
        cfg = tiny_config().for_model(name)
        assert train_windows(split, cfg).window == window
        collate = make_train_loader(split, cfg).collate_fn
        assert type(collate) is type(sequence_kind(name).train_collator(split.n_items, cfg.train))
