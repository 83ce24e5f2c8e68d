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

Mixed ensembles (members of several rows, e.g. two window lengths): give `--name` and `--seeds` once
per row and a `--label` for the results; ensemble i takes the i-th group of each row's seeds (as
many groups as `--seeds` of all rows make ensembles of `--members`), so the command below makes
42+43+44+45, 46+47+48+49 and 50+51+52+53 from two rows. The record names each member's differences
from the first (`evaluate_bundles(mixed=True)`).

    python benchmarks/ensemble.py --label ml-1m-30min-sasrec-mix-len100 --study ml-1m-records \
        --name ml-1m-30min-sasrec-mf-ls01-members --seeds 42,43,46,47,50,51 \
        --name ml-1m-30min-sasrec-mf-ls01-len100-members --seeds 44,45,48,49,52,53 --members 4
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


def ensemble_record(
    members: list[tuple[str, int]], folder: Path, runs: Path, model: str, combine: str
) -> dict:
    """The results record of the ensemble of the runs `<name>-seed<S>` for (name, S) in `members`;
    members of more than one name make a mixed ensemble (they may differ in more than the seed)."""
    records = []
    for name, seed in members:
        path = folder / f"{name}-seed{seed}_{model}.json"
        if not path.is_file():
            raise SystemExit(f"{path}: no record of seed {seed}; train it with seeds.py first")
        records.append(json.loads(path.read_text()))
    bundles = [runs / f"{name}-seed{seed}" / model / "model" for name, seed in members]
    mixed = len({name for name, _ in members}) > 1
    ev = evaluate_bundles(bundles, combine=combine, mixed=mixed)
    member_ndcg = [float(m["metrics"]["full"]["ndcg@10"]) for m in records]
    member_seconds = [float(m["train_seconds"]) for m in records]
    ensemble = {
        "members": len(members),
        "combine": combine,
        "member_seeds": ev.member_seeds,
        "member_ndcg@10": member_ndcg,
        "member_mean_ndcg@10": sum(member_ndcg) / len(member_ndcg),
        "member_train_seconds": member_seconds,
        "member_records": [f"{name}-seed{seed}_{model}.json" for name, seed in members],
    }
    if mixed:
        ensemble["member_differences"] = ev.member_differences
    return make_record(
        ev.model,
        ev.dataset,
        ev.metrics,
        round(sum(member_seconds), 2),
        ev.config,
        run=ev.run,
        eval_seconds=ev.eval_seconds,
        ensemble=ensemble,
    )


def groups(names: list[str], seed_lists: list[list[int]], members: int) -> list[list[tuple[str, int]]]:
    """The ensembles: as many as the seeds of all names make ensembles of `members`, ensemble i
    taking the i-th equal group of each name's seeds; ValueError when they do not split so."""
    total = sum(len(s) for s in seed_lists)
    if members < 1 or not total or total % members:
        raise ValueError(f"--seeds: {total} seeds do not split into ensembles of {members}")
    n = total // members
    if bad := [name for name, seeds in zip(names, seed_lists, strict=True) if len(seeds) % n]:
        raise ValueError(f"--seeds of {bad[0]}: {n} ensembles need a multiple of {n} seeds from each --name")
    out: list[list[tuple[str, int]]] = [[] for _ in range(n)]
    for name, seeds in zip(names, seed_lists, strict=True):
        size = len(seeds) // n
        for i in range(n):
            out[i] += [(name, seed) for seed in seeds[i * size : (i + 1) * size]]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--name",
        required=True,
        action="append",
        help="the seeds.py results name of the members; "
        "once per row of a mixed ensemble, each with its own --seeds",
    )
    p.add_argument("--study", default=None, help="folder under benchmarks/results (as compare_models)")
    p.add_argument("--model", default="sasrec")
    p.add_argument(
        "--seeds",
        required=True,
        action="append",
        help="member seeds, grouped in order --members at a time; with several --name, one --seeds per name",
    )
    p.add_argument("--members", type=int, default=4, help="models per ensemble")
    p.add_argument("--label", default=None, help="results name of the ensembles (default: the --name)")
    p.add_argument("--combine", choices=ENSEMBLE_COMBINES, default=ENSEMBLE_COMBINES[0])
    p.add_argument("--runs", type=Path, default=Path("runs/benchmarks"), help="compare_models --out")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if len(args.name) != len(args.seeds):
        p.error(f"give one --seeds per --name ({len(args.name)} names, {len(args.seeds)} --seeds)")
    if len(args.name) > 1 and not args.label:
        p.error("a mixed ensemble (several --name) needs a --label for its results")
    seed_lists = [[int(s) for s in seeds.split(",") if s.strip()] for seeds in args.seeds]
    try:
        ensembles = groups(args.name, seed_lists, args.members)
    except ValueError as err:
        p.error(str(err))
    folder = study_dir(f"{args.name[0]}-seed{seed_lists[0][0]}", args.study, RESULTS)
    label = f"{args.label or args.name[0]}-ens{args.members}-{args.combine}"
    for group in ensembles:
        seeds = [seed for _, seed in group]
        try:
            record = ensemble_record(group, folder, args.runs, args.model, args.combine)
        except Bert4RecError as err:
            raise SystemExit(f"ensemble of seeds {seeds}: {err}") from None
        write_records([record], folder, f"{label}-seed{seeds[0]}")
        ens = record["ensemble"]
        print(
            f"seeds {seeds}: ensemble ndcg@10 {record['metrics']['full']['ndcg@10']:.4f}, "
            f"members {', '.join(f'{v:.4f}' for v in ens['member_ndcg@10'])} "
            f"(mean {ens['member_mean_ndcg@10']:.4f})"
        )
    table = summarise(label, folder)
    print(table.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
