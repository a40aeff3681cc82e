"""``diffseg <stage>``: one subcommand per ``dvc.yaml`` stage, plus ``info``.

Every subcommand loads ``params.yaml`` through the typed schema first, so a bad configuration stops
the run before any work, naming the key. DVC runs these from the repository root::

    diffseg source            # data/source
    diffseg twins             # models/twins
    diffseg propose t1        # data/turns/t1/plan
    diffseg edit t1           # data/turns/t1/edit
    diffseg filter t1         # data/turns/t1/state
    diffseg assemble          # data/dataset, metrics/dataset.json
    diffseg train segformer   # models/detectors/segformer, metrics/train/segformer
    diffseg evaluate segformer
    diffseg robustness segformer
    diffseg crossgen sd2      # metrics/crossgen/sd2.json
    diffseg baseline cnnspot  # models/baselines/cnnspot, metrics/baselines/cnnspot.json (also: univfd)
    diffseg predict photo.jpg # ./photo_pred.png: a trained detector's overlay on any image
    diffseg official          # the official release (official.path) into detect.dataset
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffseg import params as params_mod
from diffseg import records
from diffseg.errors import UserError


def _source(p: params_mod.Params, args) -> None:
    from diffseg.source import stage

    stage.run(p, records.SOURCE_DIR)


def _twins(p: params_mod.Params, args) -> None:
    from diffseg.edit import twins

    twins.run(p.seed, p.twins.families, Path(p.twins.out), clip=p.twins.clip)


def _propose(p: params_mod.Params, args) -> None:
    from diffseg.propose import stage

    stage.run(p, args.turn, records.turn_dir(args.turn, "plan"))


def _edit(p: params_mod.Params, args) -> None:
    from diffseg.edit import stage

    stage.run(p, args.turn, records.turn_dir(args.turn, "edit"))


def _filter(p: params_mod.Params, args) -> None:
    from diffseg.filter import stage

    stage.run(p, args.turn, records.turn_dir(args.turn, "state"))


def _assemble(p: params_mod.Params, args) -> None:
    from diffseg.dataset import assemble

    assemble.run(p, records.DATASET_DIR, Path("metrics/dataset.json"))


def _train(p: params_mod.Params, args) -> None:
    from diffseg.detect import train

    train.run(p, args.name, Path("models/detectors") / args.name, Path("metrics/train") / args.name)


def _evaluate(p: params_mod.Params, args) -> None:
    from diffseg.detect import evaluate

    evaluate.run(p, args.name, Path("metrics/eval") / f"{args.name}.json",
                 Path("metrics/confusion") / f"{args.name}.json")


def _robustness(p: params_mod.Params, args) -> None:
    from diffseg.detect import robustness

    robustness.run(p, args.name, Path("metrics/robustness") / f"{args.name}.json",
                   Path("metrics/robustness_curves") / args.name)


def _crossgen(p: params_mod.Params, args) -> None:
    from diffseg.detect import crossgen

    crossgen.run(p, args.name, Path("metrics/crossgen") / f"{args.name}.json")


def _report(p: params_mod.Params, args) -> None:
    from diffseg.report import stage

    stage.run(p, Path("metrics/report.md"), Path("metrics/figures"))


def _baseline(p: params_mod.Params, args) -> None:
    from diffseg.detect import baselines

    baselines.run(p, args.name, Path("models/baselines") / args.name, Path("metrics/baselines") / f"{args.name}.json")


def _predict(p: params_mod.Params, args) -> None:
    from diffseg.detect import predict

    predict.run(p, Path(args.image), args.detector, Path(args.out) if args.out else None)


def _official(p: params_mod.Params, args) -> None:
    from diffseg.dataset import official

    official.run(p)


def _info(p: params_mod.Params, args) -> None:
    print(json.dumps({"turns": p.turn_names, "classes": p.classes, "source": p.source.kind,
                      "generators": {g.name: g.model for g in p.edit.generators}}, indent=2))


COMMANDS = {"source": _source, "twins": _twins, "propose": _propose, "edit": _edit, "filter": _filter,
            "assemble": _assemble, "train": _train, "evaluate": _evaluate, "robustness": _robustness,
            "crossgen": _crossgen, "baseline": _baseline, "predict": _predict, "official": _official,
            "report": _report, "info": _info}
PER_TURN = {"propose", "edit", "filter"}
PER_DETECTOR = {"train", "evaluate", "robustness"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diffseg", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        cmd = sub.add_parser(name)
        if name in PER_TURN:
            cmd.add_argument("turn", help="turn name from params 'turns' (t1, t2, ...)")
        if name in PER_DETECTOR:
            cmd.add_argument("name", help="detector name from params 'detect.detectors'")
        if name == "crossgen":
            cmd.add_argument("name", help="held-out generator from params 'crossgen.held_out'")
        if name == "baseline":
            cmd.add_argument("name", choices=["cnnspot", "univfd"], help="image-level baseline")
        if name == "predict":
            cmd.add_argument("image", help="any image file")
            cmd.add_argument("--detector", help="trained detector (default: the first of 'detect.detectors')")
            cmd.add_argument("--out", help="overlay PNG (default: ./<image stem>_pred.png)")
    args = parser.parse_args(argv)
    try:
        p = params_mod.load(args.params)
        if args.command in PER_TURN and args.turn not in p.turns:
            raise params_mod.ParamsError(f"turn '{args.turn}' is not in params 'turns' ({', '.join(p.turns)})")
        if args.command in PER_DETECTOR and args.name not in p.detect.detectors:
            raise params_mod.ParamsError(f"detector '{args.name}' is not in params 'detect.detectors' "
                                         f"({', '.join(p.detect.detectors)})")
        if args.command == "crossgen" and args.name not in p.crossgen.held_out:
            raise params_mod.ParamsError(f"generator '{args.name}' is not in params 'crossgen.held_out'")
        COMMANDS[args.command](p, args)
    except UserError as err:
        print(f"diffseg {args.command}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
