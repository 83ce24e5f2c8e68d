"""Benchmark: seed ensembles of models that `seeds.py` trained; a results row as mean ± std over ensembles.

`seeds.py --name <name>` leaves one bundle per seed (`<out>/<name>-seed<S>/<model>/model`) and one
record (`benchmarks/results/<study>/<name>-seed<S>_<model>.json`). This script groups the seeds in
order, `--members` at a time (42-45, 46-49, ... for `--members 4`), evaluates each group on the test
split as one model (`bert4rec.pipeline.evaluate_bundles`: the members' softmax-normalised scores
averaged as `--combine` says), and writes per ensemble
`<name>-ens<M>-<combine>-seed<first>_<model>_ensemble.json` (train_seconds = the members' summed
training seconds; the members' seeds, NDCG@10 and seconds under "ensemble"), then
`<name>-ens<M>-<combine>.md` and `_mean.json` (mean ± std over the ensembles, as seeds.py).

    python benchmarks/seeds.py --name ml-1m-30min-sasrec-mf-ls01-members --study ml-1m-records --jobs 2 \
        --seeds 42,43,44,45,46,47,48,49,50,51,52,53 -- --preset ml-1m --data-dir ../shared/data/ml-1m \
        --models sasrec --minutes 30 --set train.num_threads=1 --set train.patience=20 \
        --set train.item_embedding_init=mf --set train.label_smoothing=0.1
    python benchmarks/ensemble.py --name ml-1m-30min-sasrec-mf-ls01-members --study ml-1m-records \
        --model sasrec --members 4 --seeds 42,43,44,45,46,47,48,49,50,51,52,53
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from compare_models import RESULTS, study_dir
from seeds import summarise

from bert4rec.errors import Bert4RecError
from bert4rec.evaluation.results import make_record, write_records
from bert4rec.evaluation.scoring import ENSEMBLE_COMBINES
from bert4rec.pipeline import evaluate_bundles


def ensemble_record(name: str, folder: Path, runs: Path, model: str, seeds: list[int], combine: str) -> dict:
    """The results record of the ensemble of `<name>-seed<S>` for S in `seeds`."""
    members = []
    for seed in seeds:
        path = folder / f"{name}-seed{seed}_{model}.json"
        if not path.is_file():
            raise SystemExit(f"{path}: no record of seed {seed}; train it with seeds.py first")
        members.append(json.loads(path.read_text()))
    bundles = [runs / f"{name}-seed{seed}" / model / "model" for seed in seeds]
    ev = evaluate_bundles(bundles, combine=combine)
    member_ndcg = [float(m["metrics"]["full"]["ndcg@10"]) for m in members]
    member_seconds = [float(m["train_seconds"]) for m in members]
    return make_record(
        ev.model,
        ev.dataset,
        ev.metrics,
        round(sum(member_seconds), 2),
        ev.config,
        run=ev.run,
        eval_seconds=ev.eval_seconds,
        ensemble={
            "members": len(seeds),
            "combine": combine,
            "member_seeds": ev.member_seeds,
            "member_ndcg@10": member_ndcg,
            "member_mean_ndcg@10": sum(member_ndcg) / len(member_ndcg),
            "member_train_seconds": member_seconds,
            "member_records": [f"{name}-seed{seed}_{model}.json" for seed in seeds],
        },
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="the seeds.py results name of the members")
    p.add_argument("--study", default=None, help="folder under benchmarks/results (as compare_models)")
    p.add_argument("--model", default="sasrec")
    p.add_argument("--seeds", required=True, help="member seeds, grouped in order --members at a time")
    p.add_argument("--members", type=int, default=4, help="models per ensemble")
    p.add_argument("--combine", choices=ENSEMBLE_COMBINES, default=ENSEMBLE_COMBINES[0])
    p.add_argument("--runs", type=Path, default=Path("runs/benchmarks"), help="compare_models --out")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.members < 1 or not seeds or len(seeds) % args.members:
        p.error(f"--seeds: {len(seeds)} seeds do not split into ensembles of {args.members}")
    folder = study_dir(f"{args.name}-seed{seeds[0]}", args.study, RESULTS)
    label = f"{args.name}-ens{args.members}-{args.combine}"
    for start in range(0, len(seeds), args.members):
        group = seeds[start : start + args.members]
        try:
            record = ensemble_record(args.name, folder, args.runs, args.model, group, args.combine)
        except Bert4RecError as err:
            raise SystemExit(f"ensemble of seeds {group}: {err}") from None
        write_records([record], folder, f"{label}-seed{group[0]}")
        ens = record["ensemble"]
        print(
            f"seeds {group}: ensemble ndcg@10 {record['metrics']['full']['ndcg@10']:.4f}, "
            f"members {', '.join(f'{v:.4f}' for v in ens['member_ndcg@10'])} "
            f"(mean {ens['member_mean_ndcg@10']:.4f})"
        )
    table = summarise(label, folder)
    print(table.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
