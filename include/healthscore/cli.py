"""`healthscore` command line: sandbox, warehouse, config and demo commands.

Heavy imports happen inside each command so `healthscore --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from healthscore.settings import Settings, SettingsError


def _add_world_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=42, help="portfolio seed (same seed, same data)")
    parser.add_argument("--accounts", type=int, default=500, help="number of customer accounts (up to 100000)")
    parser.add_argument("--start", type=date.fromisoformat, default=None,
                        help="first simulated day (default: the generator's, 2025-10-01)")
    parser.add_argument("--days", type=int, default=None, help="simulated days (default: through 2026-12-31)")


def _cmd_sandbox_serve(args: argparse.Namespace) -> int:
    from healthscore_sandbox.csm import CsmConfig
    from healthscore_sandbox.faults import FaultConfig
    from healthscore_sandbox.protocol import parse_instant
    from healthscore_sandbox.runner import SandboxOptions, build_state, serve

    faults = FaultConfig.model_validate_json(args.faults) if args.faults else FaultConfig()
    options = SandboxOptions(seed=args.seed, accounts=args.accounts, start=args.start, days=args.days,
                             now=parse_instant(args.now) if args.now else None,
                             rate_limit_scale=args.rate_limit_scale, faults=faults,
                             csm=CsmConfig.from_json(args.csm) if args.csm else CsmConfig())
    print(f"building portfolio: seed={args.seed} accounts={args.accounts} ...", flush=True)
    state = build_state(options)
    print(f"sandbox listening on http://{args.host}:{args.port} (clock: {args.now or 'wall time'})", flush=True)
    serve(state, host=args.host, port=args.port)
    return 0


def _cmd_sandbox_ground_truth(args: argparse.Namespace) -> int:
    from healthscore_sandbox.runner import SandboxOptions
    from healthscore_sandbox.world import build_world

    world = build_world(SandboxOptions(seed=args.seed, accounts=args.accounts, start=args.start,
                                       days=args.days).world_spec())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in world.ground_truth().items():
        path = out / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        print(f"{path}: {len(frame)} rows")
    return 0


def _cmd_config_validate(args: argparse.Namespace) -> int:
    from healthscore.config import ModelConfigError, load_model_config
    from healthscore.pipeline.signals import COMPUTED_SIGNALS

    try:
        model = load_model_config(Path(args.path) if args.path else None)
    except ModelConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    print(f"ok: model {model.version} config_hash={model.config_hash}")
    # A model recalibrated on a user's own table (healthscore recalibrate) scores that table's columns: valid,
    # but the daily pipeline computes other signals and refuses it at load. Say so instead of failing it.
    foreign = [s for s in model.all_signal_ids() if s not in COMPUTED_SIGNALS]
    if foreign:
        print(f"note: the daily pipeline does not compute {', '.join(foreign)}: this model can score tables with "
              "those columns (healthscore backtest --model), and the daily DAG refuses it", file=sys.stderr)
    return 0


def _cmd_warehouse(args: argparse.Namespace) -> int:
    from healthscore.warehouse.engine import resolve_warehouse_url
    from healthscore.warehouse.migrate import current_revision, downgrade, upgrade

    settings = Settings.from_env()
    if args.url:
        settings = settings.model_copy(update={"warehouse_url": args.url})
    url = resolve_warehouse_url(settings)
    if args.action == "upgrade":
        upgrade(url, args.revision or "head")
    elif args.action == "downgrade":
        downgrade(url, args.revision or "base")
    print(json.dumps({"url": _masked(url), "revision": current_revision(url)}))
    return 0


def _cmd_model(args: argparse.Namespace) -> int:
    """The model registry's lifecycle: list, show, diff, promote, rollback, export. Errors: one line, exit 1."""
    from healthscore.warehouse import registry
    from healthscore.warehouse.engine import make_engine, resolve_warehouse_url
    from healthscore.warehouse.migrate import upgrade

    settings = Settings.from_env()
    url = resolve_warehouse_url(settings)
    upgrade(url)
    engine = make_engine(url)
    try:
        if args.action == "list":
            for row in registry.list_versions(engine):
                print(json.dumps({k: row.get(k) for k in ("number", "version", "role", "parent_version", "config_hash",
                                                          "author", "approved_by", "created_at", "promoted_at",
                                                          "demoted_at", "changelog")}, default=str))
        elif args.action == "show":
            row = registry.get_version(engine, args.version)
            print(json.dumps(row, default=str, indent=2))
        elif args.action == "diff":
            from healthscore.evaluation.lifecycle import diff_versions

            print(json.dumps(diff_versions(registry.get_version(engine, args.v1), registry.get_version(engine, args.v2)),
                             default=str, indent=2))
        elif args.action == "promote":
            print(json.dumps(registry.promote(engine, args.version, approver=args.approver or _user(),
                                              changelog=args.changelog), default=str))
        elif args.action == "rollback":
            print(json.dumps(registry.rollback(engine, args.version, approver=args.approver or _user()), default=str))
        elif args.action == "export":
            from healthscore.evaluation.lifecycle import export_yaml

            text = export_yaml(registry.get_version(engine, args.version))
            if args.out:
                Path(args.out).write_text(text, encoding="utf-8")
                print(json.dumps({"version": args.version, "written": args.out}))
            else:
                sys.stdout.write(text)
    except registry.ModelRegistryError as exc:
        print(f"model {args.action}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _cmd_override(args: argparse.Namespace) -> int:
    """set / list / revoke CSM overrides; a bad request is one line on stderr and exit 1."""
    from healthscore.ui.overrides import OverrideError, list_overrides, revoke_override, set_override
    from healthscore.warehouse.engine import make_engine, resolve_warehouse_url

    settings = Settings.from_env()
    engine = make_engine(resolve_warehouse_url(settings))
    try:
        if args.action == "set":
            new_id = set_override(engine, args.account, score=args.score, band=args.band, reason=args.reason,
                                  expires_on=args.expires, author=args.author, max_days=settings.override_max_days)
            print(json.dumps({"id": new_id, "account_id": args.account, "status": "active"}))
        elif args.action == "revoke":
            row = revoke_override(engine, args.id, author=args.author)
            print(json.dumps({"id": row["id"], "account_id": row["account_id"], "status": row["status"]}))
        else:
            for row in list_overrides(engine, args.account, active_only=args.active):
                print(json.dumps({k: row[k] for k in ("id", "account_id", "status", "override_score", "override_band",
                                                      "reason", "author", "created_at", "expires_on", "revoked_at",
                                                      "revoked_by")},
                                 default=str))
    except OverrideError as exc:
        print(f"override not {'saved' if args.action == 'set' else 'revoked'}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def _cmd_byo(args: argparse.Namespace) -> int:
    """recalibrate / backtest on a user's table: every failure is one line on stderr, never a traceback."""
    try:
        from healthscore.evaluation.byo import ByoInputError

        if args.command == "recalibrate":
            from healthscore.evaluation.recalibrate import run_recalibrate

            result = run_recalibrate(args.table, args.mapping, args.outcome, args.out, args.model,
                                     probability=args.probability)
            summary = result.metrics["recalibrated"]["held_out"]["overall"]
            baseline = result.metrics["baseline"]["held_out"]["overall"]
            line = (f"wrote {Path(args.out) / 'model.yaml'} ({result.model.version}), metrics.json, report.html; "
                    f"held-out AUC {_num(baseline['auc'])} -> {_num(summary['auc'])}")
            if "weighted" in result.metrics:
                line += f" (probability model; the weighted one: {_num(result.metrics['weighted']['held_out']['overall']['auc'])})"
            print(line)
        else:
            from healthscore.evaluation.backtest import run_backtest

            metrics = run_backtest(args.table, args.mapping, args.outcome, args.out, args.model)
            print(f"wrote {Path(args.out) / 'scores.csv'}, metrics.json, report.html; "
                  f"AUC {_num(metrics['overall']['auc'])} over {metrics['overall']['n']} scored rows")
        return 0
    except ByoInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the contract: one line, never a traceback
        print(f"error: {args.command} failed: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


def _num(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _cmd_demo(args: argparse.Namespace) -> int:
    from healthscore.demo import DEMO_HISTORY_DAYS, DemoError, run_demo

    if not 1 <= args.accounts <= 100_000:
        print(f"healthscore demo: --accounts must be between 1 and 100000, not {args.accounts}", file=sys.stderr)
        return 2
    try:
        return run_demo(Settings.from_env(), accounts=args.accounts, seed=args.seed,
                        history_days=DEMO_HISTORY_DAYS if args.history_days is None else args.history_days,
                        sandbox_port=args.sandbox_port)
    except DemoError as exc:
        print(f"healthscore demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("healthscore demo: interrupted; the warehouse keeps what the finished days wrote", file=sys.stderr)
        return 130


def _cmd_history_bootstrap(args: argparse.Namespace) -> int:
    """Run the daily pipeline over past months; against a sandbox it starts (--sandbox) or the connections."""
    from contextlib import nullcontext

    from healthscore.pipeline.history import BootstrapPlan, bootstrap, log_path

    try:
        plan = BootstrapPlan.months_ending(args.last, args.months)
    except ValueError as exc:
        print(f"history bootstrap: {exc}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    if args.sandbox:
        from healthscore.demo import pipeline_env
        from healthscore.warehouse.engine import resolve_warehouse_url
        from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state, free_port

        server = ThreadedSandbox(build_state(SandboxOptions(seed=args.seed, accounts=args.accounts,
                                                            rate_limit_scale=1000)), port=free_port())
    else:
        server = nullcontext()
    with server as running:
        if running is not None:
            import os

            os.environ.update(pipeline_env(running.url, resolve_warehouse_url(settings), settings.data_dir))
            print(f"sandbox: {running.url} ({args.accounts} accounts, seed {args.seed})", flush=True)
        print(f"history: {plan.first} .. {plan.last} ({len(plan.days)} days), warehouse and progress under "
              f"{settings.data_dir}", flush=True)
        if not args.show_logs:
            print(f"history: logs go to {log_path(settings)} (--show-logs keeps them on the terminal)", flush=True)
        result = bootstrap(plan, stop_after=args.stop_after, quiet=not args.show_logs, workers=args.workers)
    rate = result.days_run / result.seconds if result.seconds else 0.0
    print(f"history: {result.days_run} days run, {result.skipped} already done, {result.seconds:.0f} s "
          f"({rate * 60:.1f} days/min)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="healthscore", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sandbox = sub.add_parser("sandbox", help="the local vendor-API sandbox").add_subparsers(dest="action",
                                                                                           required=True)
    serve = sandbox.add_parser("serve", help="serve HubSpot/Zendesk/Stripe/Mixpanel protocols over HTTP")
    _add_world_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8800)
    serve.add_argument("--now", default=None, help="pin the simulated clock (ISO date/time or epoch seconds)")
    serve.add_argument("--rate-limit-scale", type=float, default=100.0,
                       help="multiplier on the vendors' documented rate limits (1 = real limits)")
    serve.add_argument("--faults", default=None, help='fault config as JSON, e.g. \'{"error_5xx_rate": 0.1}\'')
    serve.add_argument("--csm", default=None,
                       help='simulated CSMs as JSON, e.g. \'{"p_completed": 0.5, "true_effects": {"save_plan": 10}}\'')
    serve.set_defaults(func=_cmd_sandbox_serve)
    truth = sandbox.add_parser("ground-truth", help="export latent health, shocks and outcomes (admin only)")
    _add_world_args(truth)
    truth.add_argument("--out", required=True, help="folder for the Parquet files")
    truth.set_defaults(func=_cmd_sandbox_ground_truth)

    config = sub.add_parser("config", help="model-as-code").add_subparsers(dest="action", required=True)
    validate = config.add_parser("validate", help="validate a model YAML and print its config hash")
    validate.add_argument("path", nargs="?", default=None, help="model YAML (default: the packaged model)")
    validate.set_defaults(func=_cmd_config_validate)

    warehouse = sub.add_parser("warehouse", help="warehouse schema migrations")
    warehouse.add_argument("action", choices=["upgrade", "downgrade", "current"])
    warehouse.add_argument("--revision", default=None)
    warehouse.add_argument("--url", default=None, help="SQLAlchemy URL (default: connection/env/SQLite)")
    warehouse.set_defaults(func=_cmd_warehouse)

    history = sub.add_parser("history", help="history of past days").add_subparsers(dest="action", required=True)
    boot = history.add_parser("bootstrap", help="run the daily pipeline's tasks day by day over past months "
                              "(resumes where it stopped)")
    boot.add_argument("--months", type=int, default=12)
    boot.add_argument("--last", type=date.fromisoformat, default=date(2026, 9, 30),
                      help="last batch date (default 2026-09-30, the demo's last day)")
    boot.add_argument("--sandbox", action="store_true",
                      help="start an in-process sandbox (--seed, --accounts) instead of using the connections")
    boot.add_argument("--seed", type=int, default=42)
    boot.add_argument("--accounts", type=int, default=300)
    boot.add_argument("--stop-after", type=int, default=None, help="stop after this many days (resume later)")
    boot.add_argument("--workers", type=int, default=None,
                      help="processes running a day's independent tasks side by side, as the DAG allows "
                           "(default: one per core, at most 4; 1: one task after another in this process)")
    boot.add_argument("--show-logs", action="store_true",
                      help="keep the pipeline's logs on the terminal (default: they go to "
                           "<data dir>/logs/history-bootstrap.log and the terminal shows the progress bar)")
    boot.set_defaults(func=_cmd_history_bootstrap)

    override = sub.add_parser("override", help="CSM overrides of an account's score or band").add_subparsers(
        dest="action", required=True)
    author = os.environ.get("USER") or None
    o_set = override.add_parser("set", help="enter an override (score and/or band, reason, expiry)")
    o_set.add_argument("account", help="account id (the HubSpot company id)")
    o_set.add_argument("--score", default=None, help="overriding score 0-100")
    o_set.add_argument("--band", default=None, help="overriding band, e.g. Healthy")
    o_set.add_argument("--reason", required=True, help="why the computed score is wrong")
    o_set.add_argument("--expires", required=True, help="first day it no longer applies (YYYY-MM-DD)")
    o_set.add_argument("--author", default=author, help="who enters it (default: $USER)")
    o_set.set_defaults(func=_cmd_override)
    o_list = override.add_parser("list", help="overrides newest first, with their status (JSON lines)")
    o_list.add_argument("--account", default=None)
    o_list.add_argument("--active", action="store_true", help="only the ones standing today")
    o_list.set_defaults(func=_cmd_override)
    o_revoke = override.add_parser("revoke", help="revoke an active override (the row stays, stamped)")
    o_revoke.add_argument("id", type=int)
    o_revoke.add_argument("--author", default=author, help="who revokes it (default: $USER)")
    o_revoke.set_defaults(func=_cmd_override)


    for name, helptext, model_help in (
        ("recalibrate", "learn curves, weights and band lines from your own table of outcomes",
         "base model YAML (default: the packaged model)"),
        ("backtest", "score your own table with a model and measure it against the outcomes",
         "model YAML (default: the packaged weights over your signals, normalized by their distribution)"),
    ):
        byo = sub.add_parser(name, help=helptext)
        byo.add_argument("table", help="CSV or Parquet: account_id, as_of_date, [segment], signals, outcome")
        byo.add_argument("--mapping", required=True,
                         help="YAML or JSON: {signal_column: {dimension: usage|..., direction: 1|-1}}")
        byo.add_argument("--outcome", required=True, help="the 0/1 outcome column (1 = churned)")
        byo.add_argument("--out", required=True, help="output directory")
        byo.add_argument("--model", default=None, help=model_help)
        if name == "recalibrate":
            byo.add_argument("--probability", action="store_true",
                             help="score with a calibrated logistic classifier on the recalibrated dimension scores "
                                  "(scoring.method model_probability; the classifier is stored as numbers in "
                                  "model.yaml; the weighted model's figures stay beside it in metrics.json)")
        byo.set_defaults(func=_cmd_byo)

    model = sub.add_parser("model", help="the model registry: versions, promotion, rollback").add_subparsers(
        dest="action", required=True)
    m_list = model.add_parser("list", help="every registered version by number (JSON lines)")
    m_list.set_defaults(func=_cmd_model)
    m_show = model.add_parser("show", help="one version: role, parent, hash, metrics, changelog and config")
    m_show.add_argument("version", help="version name or number")
    m_show.set_defaults(func=_cmd_model)
    m_diff = model.add_parser("diff", help="weights, curves, band lines and signals changed between two versions")
    m_diff.add_argument("v1")
    m_diff.add_argument("v2")
    m_diff.set_defaults(func=_cmd_model)
    m_promote = model.add_parser("promote", help="make a version the champion (the next daily run scores with it)")
    m_promote.add_argument("version")
    m_promote.add_argument("--approver", default=None, help="who approved (default: the OS user)")
    m_promote.add_argument("--changelog", default=None, help="one line: why")
    m_promote.set_defaults(func=_cmd_model)
    m_rollback = model.add_parser("rollback", help="champion back to VERSION, or to the champion before this one")
    m_rollback.add_argument("version", nargs="?", default=None)
    m_rollback.add_argument("--approver", default=None)
    m_rollback.set_defaults(func=_cmd_model)
    m_export = model.add_parser("export", help="a version's config as model YAML")
    m_export.add_argument("version")
    m_export.add_argument("--out", default=None, help="file to write (default: stdout)")
    m_export.set_defaults(func=_cmd_model)

    demo = sub.add_parser("demo", help="run the main job end to end on SQLite and the local sandbox")
    demo.add_argument("--accounts", type=int, default=300)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--history-days", type=int, default=None,
                      help="days of history bootstrapped before the Airflow runs (default 64: the 30-day lead; 130: all leads; 0: none)")
    demo.add_argument("--sandbox-port", type=int, default=None, help="the sandbox's port (default: a free one)")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:  # a mistyped HEALTHSCORE_* variable: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
