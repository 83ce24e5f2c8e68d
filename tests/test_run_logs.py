from bert4rec.run_logs import read_history


def test_history_joins_resumed_logs_and_the_later_file_wins(tmp_path):
    (tmp_path / "resume-1").mkdir()
    (tmp_path / "metrics.csv").write_text(
        "epoch,step,elapsed_s,val_ndcg@10,train_loss_epoch\n"
        "0,10,1.0,0.1,\n0,10,,,5.0\n1,20,2.0,0.2,\n1,20,,,4.0\n"
    )
    # the resumed run repeats epoch 1 (the interrupted one) and adds epoch 2
    (tmp_path / "resume-1" / "metrics.csv").write_text(
        "epoch,step,elapsed_s,val_ndcg@10,train_loss_epoch\n1,20,2.5,0.25,\n1,20,,,3.5\n2,30,3.0,0.3,\n"
    )
    rows = read_history(tmp_path)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert [r["val_ndcg@10"] for r in rows] == [0.1, 0.25, 0.3]
    assert rows[0]["train_loss_epoch"] == 5.0 and rows[1]["train_loss_epoch"] == 3.5
    assert rows[2]["train_loss_epoch"] is None


def test_no_logs_give_no_history(tmp_path):
    assert read_history(tmp_path) == []
