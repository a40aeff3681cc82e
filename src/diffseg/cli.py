"""``diffseg <stage>``: one subcommand per ``dvc.yaml`` stage, plus ``info``.

Every subcommand loads ``params.yaml`` through the typed schema first, so a bad configuration stops
the run before any work, naming the key. DVC runs these from the repository root::

    diffseg source            # data/source
    diffseg twins             # models/twins
    diffseg propose t1        # data/turns/t1/plan
    diffseg edit t1           # data/turns/t1/edit
    diffseg filter t1         # data/turns/t1/state
    diffseg assemble          # data/dataset, metrics/dataset.json
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

    twins.run(p.seed, p.twins.families, Path(p.twins.out))


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


def _info(p: params_mod.Params, args) -> None:
    print(json.dumps({"turns": p.turn_names, "classes": p.classes, "source": p.source.kind,
                      "generators": {g.name: g.model for g in p.edit.generators}}, indent=2))


COMMANDS = {"source": _source, "twins": _twins, "propose": _propose, "edit": _edit, "filter": _filter,
            "assemble": _assemble, "info": _info}
PER_TURN = {"propose", "edit", "filter"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diffseg", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        cmd = sub.add_parser(name)
        if name in PER_TURN:
            cmd.add_argument("turn", help="turn name from params 'turns' (t1, t2, ...)")
    args = parser.parse_args(argv)
    try:
        p = params_mod.load(args.params)
        if args.command in PER_TURN and args.turn not in p.turns:
            raise params_mod.ParamsError(f"turn '{args.turn}' is not in params 'turns' ({', '.join(p.turns)})")
        COMMANDS[args.command](p, args)
    except UserError as err:
        print(f"diffseg {args.command}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
