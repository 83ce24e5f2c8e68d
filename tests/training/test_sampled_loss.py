"""train.loss='sampled' wiring: the sampler comes from the training data; training runs end to end."""

import pytest
import torch
from helpers import tiny_config

from bert4rec.config import build_config
from bert4rec.errors import ConfigError
from bert4rec.models import SASRec
from bert4rec.training.fit import fit_transformer, make_negative_sampler, make_train_loader
from bert4rec.training.losses import plain_full_loss
from bert4rec.training.module import SequenceModule


def test_sampled_loss_config_is_validated():
    cfg = build_config(overrides={"train": {"loss": "sampled", "n_negatives_train": 64}})
    assert cfg.train.loss == "sampled" and cfg.train.negative_sampling == "popularity"
    assert build_config().train.loss == "full"
    with pytest.raises(ConfigError, match="train.loss"):
        build_config(overrides={"train": {"loss": "nce"}})
    with pytest.raises(ConfigError, match="train.n_negatives_train"):
        build_config(overrides={"train": {"n_negatives_train": 0}})


def test_sampler_follows_training_popularity_or_is_uniform(tiny_prepared):
    split = tiny_prepared.split
    assert make_negative_sampler(split, tiny_config()) is None  # loss='full'
    popular = make_negative_sampler(split, tiny_config(loss="sampled", n_negatives_train=32))
    assert popular is not None and popular.n_negatives == 32
    counts = torch.from_numpy(split.item_popularity()).double()
    torch.testing.assert_close(popular.probs, counts / counts.sum())
    uniform = make_negative_sampler(split, tiny_config(loss="sampled", negative_sampling="uniform"))
    assert uniform is not None and uniform.probs[0] == 0
    assert torch.allclose(
        uniform.probs[1:], torch.full((split.n_items,), 1 / split.n_items, dtype=torch.float64)
    )


def test_full_loss_step_is_unchanged_without_a_sampler(tiny_prepared):
    cfg = tiny_config().model_copy(update={"model_type": "sasrec"})
    model = SASRec(cfg.model, tiny_prepared.split.n_items).eval()  # no dropout: two calls compare
    batch = next(iter(make_train_loader(tiny_prepared.split, cfg)))
    loss = SequenceModule(model, cfg.train, total_steps=10).training_step(batch, 0)
    reference = plain_full_loss(model, batch["input_ids"], batch["labels"])  # builds the logits
    torch.testing.assert_close(loss, reference)


@pytest.mark.parametrize("model_type", ["bert4rec", "sasrec"])
def test_fit_with_sampled_loss(tmp_path, tiny_prepared, model_type):
    cfg = tiny_config(epochs=1, loss="sampled", n_negatives_train=16)
    cfg = cfg.model_copy(update={"model_type": model_type})
    result = fit_transformer(tiny_prepared.split, cfg, tmp_path, progress=False)
    assert result.best_val_ndcg10 is not None and 0.0 <= result.best_val_ndcg10 <= 1.0
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss_epoch"]))
