import numpy as np

from bert4rec.data.sequences import SequenceSplit
from bert4rec.data.vocab import Vocab
from bert4rec.evaluation.negatives import draw_negatives


def _split() -> SequenceSplit:
    # 3 users over 12 items; user 2 has seen items 1-9, so only 10-12 are left for it
    train = [np.array([1, 2, 3]), np.array([4, 5, 6]), np.arange(1, 8)]
    vocab = Vocab([f"i{j}" for j in range(1, 13)], ["u0", "u1", "u2"])
    return SequenceSplit(vocab, train, np.array([4, 7, 8]), np.array([5, 8, 9]), {})


def test_popularity_weights_decide_which_items_can_be_drawn():
    split = _split()
    popularity = np.zeros(13)
    popularity[[6, 10, 11, 12]] = [5.0, 1.0, 1.0, 1.0]  # only these items may be drawn
    negs, short = draw_negatives(
        split, "test", "sampled_popularity", n_negatives=3, seed=0, popularity=popularity
    )
    assert negs.shape == (3, 3)
    assert set(negs.ravel().tolist()) <= {6, 10, 11, 12}
    assert 6 not in negs[1].tolist()  # user 1 has seen item 6
    assert short == 0


def test_users_short_of_negatives_get_all_allowed_items_then_pad():
    split = _split()
    negs, short = draw_negatives(
        split, "val", "sampled_uniform", n_negatives=5, seed=1, popularity=np.ones(13)
    )
    assert sorted(negs[2].tolist()) == [0, 0, 10, 11, 12]  # items 1-9 are user 2's, PAD fills the rest
    assert short == 1
    again, _ = draw_negatives(split, "val", "sampled_uniform", n_negatives=5, seed=1, popularity=np.ones(13))
    np.testing.assert_array_equal(negs, again)
