"""The ``mnist-pipeline`` console script: one sub-command per stage (``pipeline.stages``).

    mnist-pipeline run      [-c conf/cluster.yaml ...] [section.key=value ...]   # every stage, in order
    mnist-pipeline retrain  [-c ...] [section.key=value ...]   # the same, for schedulers
    mnist-pipeline ingest | train | evaluate | infer  [-c ...] [section.key=value ...]
    mnist-pipeline tune     [-c ...] [tune.trials=20 ...]   # Optuna search; writes <tune.output>/<study>-best.yaml
    mnist-pipeline lr-find  [-c ...] [lr_find.steps=100 ...]   # learning-rate range test; prints a suggested rate
    mnist-pipeline config [-c ...] [section.key=value ...]   # print the effective config

The console shows the pipeline's progress and its report; everything else goes to a log file under
``log.dir`` whose path is printed first. ``--verbose`` (or ``log.verbose=true``) shows everything.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.stages import ALIASES, STAGES, run_stage

log = logging.getLogger("pipeline")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--conf", action="append", default=[], metavar="FILE",
        help="YAML config applied over the defaults (conf/base.yaml shows them); repeatable, later wins",
    )
    common.add_argument("-v", "--verbose", action="store_true", default=None,
                        help="show every library's output on the console (default: only the pipeline's; the rest "
                             "goes to the log file)")
    common.add_argument("overrides", nargs="*", metavar="section.key=value", help="override any config key")
    parser = argparse.ArgumentParser(prog="mnist-pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, stage in STAGES.items():
        sub.add_parser(name, parents=[common], help=stage.help)
    for alias, name in ALIASES.items():
        sub.add_parser(alias, parents=[common], help=f"the same as {name}")
    sub.add_parser("config", parents=[common], help="print the effective config as YAML")
    return parser


def main(argv: list[str] | None = None, verbose_default: bool = False) -> int:
    """Runs one command; returns the exit status (0 done, 1 failed, with the reason printed).

    ``verbose_default``: the spark-submit jobs pass True, since a cluster manager collects the driver's
    output as its log.
    """
    from pipeline.io.console import Console

    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.conf, args.overrides)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command == "config":
        print(cfg.to_yaml(), end="")
        return 0
    verbose = args.verbose if args.verbose is not None else (cfg.log.verbose or verbose_default)
    with Console(args.command, cfg.log.dir, verbose) as console:
        try:
            console.out.write(run_stage(args.command, cfg) + "\n")
            return 0
        except PipelineError as exc:
            log.debug("failed", exc_info=True)
            where = f"\n(full log: {console.log_path})" if console.log_path else ""
            console.err.write(f"error: {exc}{where}\n")
            return 1
        except Exception as exc:
            logging.getLogger(__name__).exception("unexpected failure")
            if console.log_path is None:
                raise
            console.err.write(f"error: unexpected {type(exc).__name__}: {exc}\n"
                              f"(the traceback is in {console.log_path})\n")
            return 1


if __name__ == "__main__":
    sys.exit(main())
