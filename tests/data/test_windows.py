import numpy as np
import pytest

from bert4rec.data.windows import WindowDataset, sliding_windows


def test_sliding_windows_cover_recent_and_old_history():
    users, ends = sliding_windows(np.array([3, 10, 25, 1]), window=10, step=5)
    pairs = list(zip(users.tolist(), ends.tolist(), strict=True))
    # short sequences: one window; long ones: the most recent window first, then older ones
    assert pairs == [
        (0, 3),
        (1, 10),
        (2, 25),
        (2, 20),
        (2, 15),
        (2, 10),
    ]  # user 3 (1 item) has nothing to learn


@pytest.mark.parametrize(("max_per_user", "user2_ends"), [(1, [25]), (2, [25, 20]), (9, [25, 20, 15, 10])])
def test_sliding_windows_keep_only_the_most_recent_per_user(max_per_user, user2_ends):
    users, ends = sliding_windows(np.array([3, 10, 25, 1]), window=10, step=5, max_per_user=max_per_user)
    assert ends[users == 2].tolist() == user2_ends
    assert ends[users != 2].tolist() == [3, 10]  # users with one window keep it


def test_sliding_windows_cover_start_adds_the_oldest_items():
    lengths = np.array([3, 10, 24, 25])
    users, ends = sliding_windows(lengths, window=10, step=10)
    assert list(zip(users.tolist(), ends.tolist(), strict=True)) == [
        (0, 3),
        (1, 10),
        (2, 24),
        (2, 14),
        (3, 25),
        (3, 15),
    ]
    users, ends = sliding_windows(lengths, window=10, step=10, cover_start=True)
    # items 0-3 of user 2 and 0-4 of user 3 were in no window; now a window over items 0-9 holds them
    assert list(zip(users.tolist(), ends.tolist(), strict=True)) == [
        (0, 3),
        (1, 10),
        (2, 24),
        (2, 14),
        (2, 10),
        (3, 25),
        (3, 15),
        (3, 10),
    ]
    for u, n in enumerate(lengths):
        covered = set().union(*(range(max(0, e - 10), e) for e in ends[users == u].tolist()))
        assert covered == set(range(n))
    # the cap on recent windows wins
    _, ends = sliding_windows(lengths, window=10, step=10, max_per_user=2, cover_start=True)
    assert ends.tolist() == [3, 10, 24, 14, 25, 15]


def test_window_dataset_slices_at_most_window_items():
    seqs = [np.arange(1, 26)]
    ds = WindowDataset(seqs, window=10, step=5)
    assert [ds[i][1].tolist()[-1] for i in range(len(ds))] == [25, 20, 15, 10]
    assert all(len(ds[i][1]) == 10 for i in range(len(ds)))
