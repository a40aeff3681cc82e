"""``diffseg <stage>``: one subcommand per ``dvc.yaml`` stage, plus ``info``.

Every subcommand loads ``params.yaml`` through the typed schema first, so a bad configuration stops
the run before any work, naming the key. DVC runs these from the repository root::

    diffseg source            # data/source
    diffseg twins             # models/twins
    diffseg synthesize synthetic  # data/synthetic: data/source with a share of text-to-image base images
    diffseg propose t1        # data/turns/t1/plan, metrics/annotation_quality/t1.json
    diffseg annotation_quality  # metrics/annotation_quality.json and .md (every turn's summary)
    diffseg edit t1           # data/turns/t1/edit
    diffseg filter t1         # data/turns/t1/state
    diffseg assemble          # data/dataset, metrics/dataset.json, metrics/dataset_plots
    diffseg train segformer   # models/detectors/segformer, metrics/train/segformer
    diffseg evaluate segformer
    diffseg robustness segformer
    diffseg crossgen sd2      # metrics/crossgen/sd2.json
    diffseg baseline cnnspot  # models/baselines/cnnspot, metrics/baselines/cnnspot.json (also: univfd)
    diffseg predict a.jpg shots/  # predictions/: a trained detector's overlays and scores.json
    diffseg official          # the official release (official.path) into detect.dataset
    diffseg official --inspect  # the values of the release's first 200 masks, and a mapping to start from

Tools that need no ``params.yaml`` (they work on the repository and its outputs)::

    diffseg check-metrics     # the reproduced metrics against the committed ones (exit 1 on a difference)
    diffseg profile paper     # params.yaml <- configs/paper.yaml (or offline); no name: show the current one
    diffseg pin --write       # every hub id of params.yaml pinned to its current commit (--params PATH)
    diffseg export            # data/dataset as a Hugging Face datasets folder in data/export
    diffseg browse            # data/dataset as a static site in data/browse (open data/browse/index.html)
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
    from diffseg.twins import stage

    stage.run(p.seed, p.twins.families, Path(p.twins.out), clip=p.twins.clip, vlm=p.twins.vlm,
              loras=p.twins.loras)


def _synthesize(p: params_mod.Params, args) -> None:
    from diffseg.synthesize import stage

    if args.key not in p.synthesize:
        raise UserError(f"synthesize: params 'synthesize' has no entry {args.key!r} (it has {sorted(p.synthesize)})")
    stage.run(p, args.key, Path("data") / args.key)


def _propose(p: params_mod.Params, args) -> None:
    from diffseg.propose import stage

    stage.run(p, args.turn, records.turn_dir(args.turn, "plan"),
              Path("metrics/annotation_quality") / f"{args.turn}.json")


def _annotation_quality(p: params_mod.Params, args) -> None:
    from diffseg.propose import annotation_quality

    annotation_quality.run(p, Path("metrics/annotation_quality"), Path("metrics/annotation_quality.json"),
                           Path("metrics/annotation_quality.md"))


def _edit(p: params_mod.Params, args) -> None:
    from diffseg.edit import stage

    stage.run(p, args.turn, records.turn_dir(args.turn, "edit"))


def _filter(p: params_mod.Params, args) -> None:
    from diffseg.filter import stage

    stage.run(p, args.turn, records.turn_dir(args.turn, "state"))


def _assemble(p: params_mod.Params, args) -> None:
    from diffseg.dataset import assemble

    assemble.run(p, records.DATASET_DIR, Path("metrics/dataset.json"), Path("metrics/dataset_plots"))


def _train(p: params_mod.Params, args) -> None:
    from diffseg.detect import distributed, train

    if p.detect.nproc > 1 and not distributed.launched():
        distributed.relaunch(p.detect.nproc, ["--params", args.params, "train", args.name])
        return
    train.run(p, args.name, Path("models/detectors") / args.name, Path("metrics/train") / args.name)


def _evaluate(p: params_mod.Params, args) -> None:
    from diffseg.detect import evaluate

    evaluate.run(p, args.name, Path("metrics/eval") / f"{args.name}.json",
                 Path("metrics/confusion") / f"{args.name}.json", Path("data/predictions") / args.name)


def _robustness(p: params_mod.Params, args) -> None:
    from diffseg.detect import robustness

    robustness.run(p, args.name, Path("metrics/robustness") / f"{args.name}.json",
                   Path("metrics/robustness_curves") / args.name)


def _crossgen(p: params_mod.Params, args) -> None:
    from diffseg.detect import crossgen

    crossgen.run(p, args.name, Path("metrics/crossgen") / f"{args.name}.json")


def _report(p: params_mod.Params, args) -> None:
    from diffseg.report import stage

    stage.run(p, Path("metrics/report.md"), Path("metrics/figures"), Path("metrics/ranking.json"))


def _baseline(p: params_mod.Params, args) -> None:
    from diffseg.detect import baselines

    baselines.run(p, args.name, Path("models/baselines") / args.name, Path("metrics/baselines") / f"{args.name}.json")


def _check_baseline(name: str) -> None:
    # The registry imports torch, so it is read only when a baseline is asked for, not to build the parser.
    from diffseg.detect.baselines import BASELINES

    if name not in BASELINES:
        raise UserError(f"unknown baseline '{name}' (known: {', '.join(BASELINES)})")


def _predict(p: params_mod.Params, args) -> None:
    from diffseg.detect import predict

    predict.run(p, args.inputs, args.detector, Path(args.out) if args.out else None, args.format, args.batch_size,
                Path(args.model) if args.model else None)


def _official(p: params_mod.Params, args) -> None:
    if args.inspect:
        from diffseg.dataset.official import inspect_masks

        inspect_masks.run(p, inspect_masks.DEFAULT_SAMPLE if args.sample is None else args.sample)
        return
    if args.sample is not None:
        raise UserError("--sample goes with --inspect")
    from diffseg.dataset.official import convert

    convert.run(p)


def _info(p: params_mod.Params, args) -> None:
    print(json.dumps({"turns": p.turn_names, "classes": p.classes, "source": p.source.kind,
                      "generators": {g.name: g.model for g in p.edit.generators}}, indent=2))


COMMANDS = {"source": _source, "twins": _twins, "synthesize": _synthesize, "propose": _propose,
            "annotation_quality": _annotation_quality, "edit": _edit, "filter": _filter,
            "assemble": _assemble, "train": _train, "evaluate": _evaluate, "robustness": _robustness,
            "crossgen": _crossgen, "baseline": _baseline, "predict": _predict, "official": _official,
            "report": _report, "info": _info}


def _check_metrics(args) -> int:
    from diffseg import repro_check

    return repro_check.main(Path(args.repo), args.rev, Path(args.reference) if args.reference else None)


def _profile(args) -> int:
    from diffseg import profile

    if args.save and args.name:
        raise UserError("profile: give a profile to switch to, or --save NAME, not both")
    return profile.main(args.name, args.force, args.save)


def _pin(args) -> int:
    from diffseg import pin

    return pin.main(Path(args.pin_params or args.params), args.write)


def _export(args) -> int:
    from diffseg.dataset import export

    export.run(Path(args.dataset), Path(args.out))
    return 0


def _browse(args) -> int:
    from diffseg.dataset.browse import site

    site.run(Path(args.dataset), Path(args.out), Path(args.turns) if args.turns else None, Path(args.source))
    return 0


# Tools: no params.yaml needed; each returns the exit status.
TOOLS = {"check-metrics": _check_metrics, "profile": _profile, "pin": _pin, "export": _export, "browse": _browse}
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
        if name == "synthesize":
            cmd.add_argument("key", help="the entry of params 'synthesize' (synthetic)")
        if name == "crossgen":
            cmd.add_argument("name", help="held-out generator from params 'crossgen.held_out'")
        if name == "baseline":
            cmd.add_argument("name", help="image-level baseline from the registry in diffseg.detect.baselines")
        if name == "predict":
            cmd.add_argument("inputs", nargs="+", help="image files, folders (read recursively) and quoted globs")
            cmd.add_argument("--detector", help="trained detector (default: the first of 'detect.detectors')")
            cmd.add_argument("--model", help="a saved detector folder (config.json, model.safetensors) instead")
            cmd.add_argument("--out", help="folder for the overlays and the scores file (default: ./predictions)")
            cmd.add_argument("--format", default="json", choices=["json", "csv"], help="scores file format")
            cmd.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: 8)")
        if name == "official":
            cmd.add_argument("--inspect", action="store_true",
                             help="count the values of a sample of masks and suggest official.mask_values; "
                                  "writes nothing")
            cmd.add_argument("--sample", type=int, help="masks --inspect reads, the first in key order (default: 200)")
    _add_tools(sub)
    args = parser.parse_args(argv)
    try:
        if args.command in TOOLS:
            return TOOLS[args.command](args)
        p = params_mod.load(args.params)
        if args.command in PER_TURN and args.turn not in p.turns:
            raise params_mod.ParamsError(f"turn '{args.turn}' is not in params 'turns' ({', '.join(p.turns)})")
        if args.command in PER_DETECTOR and args.name not in p.detect.detectors:
            raise params_mod.ParamsError(f"detector '{args.name}' is not in params 'detect.detectors' "
                                         f"({', '.join(p.detect.detectors)})")
        if args.command == "crossgen" and args.name not in p.crossgen.held_out:
            raise params_mod.ParamsError(f"generator '{args.name}' is not in params 'crossgen.held_out'")
        if args.command == "baseline":
            _check_baseline(args.name)
        if args.command in PER_TURN:
            # Imported here: a refusal writes nothing, so pin.py must not join every stage's import closure.
            from diffseg import pin

            pin.require_pinned(p, args.command)
        COMMANDS[args.command](p, args)
    except UserError as err:
        print(f"diffseg {args.command}: {err}", file=sys.stderr)
        return 2
    return 0


def _add_tools(sub) -> None:
    check = sub.add_parser("check-metrics", help="compare the reproduced metrics with the committed ones")
    check.add_argument("--rev", default="HEAD", help="commit holding the expected metrics (default: HEAD)")
    check.add_argument("--reference", help="compare with this folder (laid out like the repository) instead")
    check.add_argument("--repo", default=".", help="repository root (default: .)")
    prof = sub.add_parser("profile", help="switch params.yaml to configs/<name>.yaml")
    prof.add_argument("name", nargs="?", help="profile: a file name in configs/ without .yaml (none: show)")
    prof.add_argument("--force", action="store_true", help="overwrite a params.yaml that matches no profile")
    prof.add_argument("--save", metavar="NAME", help="save params.yaml as configs/NAME.yaml instead")
    pin = sub.add_parser("pin", help="resolve every hub checkpoint of the params to its current commit")
    # Its own dest: a subcommand's default would overwrite the global --params given before it.
    pin.add_argument("--params", dest="pin_params", metavar="PATH", help="the params file (default: the global "
                     "--params, params.yaml)")
    pin.add_argument("--write", action="store_true", help="write the commits into the file's revision fields")
    exp = sub.add_parser("export", help="the dataset as a Hugging Face datasets folder")
    exp.add_argument("--dataset", default=str(records.DATASET_DIR), help="assembled dataset (default: %(default)s)")
    exp.add_argument("--out", default="data/export", help="output folder (default: %(default)s)")
    browse = sub.add_parser("browse", help="the dataset as a static site: a filterable grid and a page per image")
    browse.add_argument("--dataset", default=str(records.DATASET_DIR), help="assembled dataset (default: %(default)s)")
    browse.add_argument("--out", default="data/browse", help="output folder, replaced whole (default: %(default)s)")
    browse.add_argument("--turns", help="the pipeline's per-turn states (data/turns): the turn strip shows the state "
                        "after each turn instead of the final image")
    browse.add_argument("--source", default=str(records.SOURCE_DIR),
                        help="with --turns, the state before the first turn (default: %(default)s)")


if __name__ == "__main__":
    sys.exit(main())
