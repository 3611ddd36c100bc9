"""The ``grayrelease`` command, also attached to a host's ``flask`` command as ``gray-release``.

Standalone, it works on the database named by ``--database-url`` with the ``sql`` backend
(the demo server's). Under ``flask gray-release`` it uses the host app's engine.
"""

from __future__ import annotations

import functools
import getpass
import json
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import attrs
import click
from flask import Flask
from flask.cli import ScriptInfo

from grayrelease_core import GrayRelease as Engine
from grayrelease_core import (
    GrayReleaseError,
    PlanQuery,
    PlanStatus,
    Settings,
    ValidationError,
    migrations,
)
from grayrelease_core.access import ANY, MAX_TOKEN_DAYS, ROLES, TOKEN_SCOPES, is_reserved
from grayrelease_core.audit import AuditReport
from grayrelease_core.checkpoint import read_checkpoints
from grayrelease_core.migrations import MigrationSet
from grayrelease_core.outbox import DeliveryReport
from grayrelease_core.plugin_manager import collect, make_plugin_manager
from grayrelease_core.store import LogQuery
from grayrelease_core.wire import logs_to_csv, parse_time, plan_to_wire

DEFAULT_URL = "sqlite:///grayrelease.db"
OPTIONS = "grayrelease.options"


@attrs.frozen
class Options:
    """The group's options, kept in ``ctx.meta`` for the subcommands."""

    database_url: str
    backend: str
    actor: str
    settings: Mapping[str, Any] = attrs.Factory(dict)
    """More engine settings from ``--settings`` (channels, ``notify``, ``audit``)."""


def _host_app(ctx: click.Context) -> Flask | None:
    info = ctx.find_object(ScriptInfo)
    return info.load_app() if info is not None else None


@contextmanager
def engine_for(ctx: click.Context) -> Iterator[Engine]:
    """The host app's engine under ``flask``, else one built from the options (closed after)."""
    app = _host_app(ctx)
    if app is not None:
        yield app.extensions["grayrelease"].state(app).engine
        return
    options: Options = ctx.meta[OPTIONS]
    engine = Engine.from_settings(
        {
            **options.settings,
            "database_url": options.database_url,
            "backend": options.backend,
            "background_sync": False,
        }
    )
    try:
        yield engine
    finally:
        engine.close()


def reporting_errors(command: Callable[..., None]) -> Callable[..., None]:
    """The library's errors as a one-line message and exit status 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except GrayReleaseError as exc:
            raise click.ClickException(f"{exc.code}: {exc.message}") from exc

    return wrapper


def echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, ensure_ascii=False, indent=2))


@click.group(name="grayrelease")
@click.option(
    "--database-url",
    envvar="GRAYRELEASE_DATABASE_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The plan store (under `flask gray-release`: the app's).",
)
@click.option(
    "--backend",
    envvar="GRAYRELEASE_BACKEND",
    default="sql",
    show_default=True,
    help="The config backend (under `flask gray-release`: the app's).",
)
@click.option(
    "--actor",
    envvar="GRAYRELEASE_ACTOR",
    help="Who acts, for the audit trail [default: the OS user].",
)
@click.option(
    "--settings",
    "settings_file",
    envvar="GRAYRELEASE_SETTINGS_FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="A JSON file of more engine settings: notification channels, notify, audit.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    database_url: str,
    backend: str,
    actor: str | None,
    settings_file: str | None,
) -> None:
    """Gray release of configuration: plans, their lifecycle, and the demo config center."""
    settings = _settings_file(settings_file) if settings_file else {}
    if actor is not None and is_reserved(actor):
        raise click.BadParameter(
            f"{actor!r} is reserved for the engine itself", param_hint="--actor"
        )
    ctx.meta[OPTIONS] = Options(database_url, backend, actor or _os_user(), settings)


def _settings_file(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.BadParameter(
            f"cannot read it as JSON: {exc}", param_hint="--settings"
        ) from None
    if not isinstance(data, dict):
        raise click.BadParameter("must hold a JSON object of settings", param_hint="--settings")
    return data


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        return "cli"


# --- serve ------------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--admin-token",
    envvar="GRAYRELEASE_ADMIN_TOKEN",
    help="Bearer token of the admin [default: generated].",
)
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option("--load-examples", is_flag=True, help="Seed the spec's example config values.")
@click.option(
    "--cache-ttl",
    type=click.FloatRange(0, 3600),
    help="Seconds this process may serve a plan state another process changed "
    "[default: 1; under `flask`: the app's GRAYRELEASE_CACHE_TTL].",
)
@click.option(
    "--hit-flush-interval",
    type=click.FloatRange(0, 3600),
    help="Seconds between writes of buffered instance hits; a killed process loses at most "
    "this much [default: 5; under `flask`: the app's GRAYRELEASE_HIT_FLUSH_INTERVAL].",
)
@click.pass_context
@reporting_errors
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    admin_token: str | None,
    threads: int,
    load_examples: bool,
    cache_ttl: float | None,
    hit_flush_interval: float | None,
) -> None:
    """Run the demo config center (or, under `flask`, the host app) with waitress."""
    from .demo import create_demo_app
    from .server import serve as run

    options: Options = ctx.meta[OPTIONS]
    app = _host_app(ctx)
    generated = admin_token is None
    token = admin_token or secrets.token_urlsafe(24)
    if len(token) < 16:
        raise ValidationError("--admin-token", "must be at least 16 characters")
    if app is None:
        app = create_demo_app(
            options.database_url,
            token,
            backend=options.backend,
            settings=options.settings,
            load_examples=load_examples,
            cache_ttl=cache_ttl,
            hit_flush_interval=hit_flush_interval,
        )
    elif cache_ttl is not None or hit_flush_interval is not None:
        raise ValidationError(
            "--cache-ttl" if cache_ttl is not None else "--hit-flush-interval",
            "is for the demo server; set it in the app's config under `flask`",
        )

    def ready(bound_port: int) -> None:
        prefix = app.extensions["grayrelease"].state(app).url_prefix
        base = f"http://{host}:{bound_port}"
        click.echo(f"grayrelease: listening on {base} (REST API at {base}{prefix})")
        if generated and _host_app(ctx) is None:
            click.echo(f"grayrelease: admin token (shown once): {token}")
        console = app.config.get("GRAYRELEASE_CONSOLE_PREFIX")
        if console:
            click.echo(f"grayrelease: web console at {base}{console}/ (log in with the token)")
        if _host_app(ctx) is None:
            auth = f"-H 'Authorization: Bearer {token}'"
            click.echo("try:")
            click.echo(
                f"  curl -s {auth} -H 'Content-Type: application/json' -X POST {base}{prefix}/plan "
                '-d \'{"planName":"新功能开关灰度","appName":"order-service","environment":"prod",'
                '"configKeys":["feature.newPayment.enabled"],"grayStrategy":"PERCENTAGE",'
                '"grayRules":{"percentage":10},"grayValues":{"feature.newPayment.enabled":"true"}}\''
            )
            click.echo(f"  curl -s {auth} -X POST {base}{prefix}/plan/<planId>/start")
            click.echo(
                f"  curl -s '{base}{prefix}/config/value?appName=order-service&environment=prod"
                "&configKey=feature.newPayment.enabled&instanceId=order-7&instanceIp=192.168.1.107'"
            )

    run(app, host, port, threads=threads, on_ready=ready)


# --- plans ------------------------------------------------------------------------------------


@cli.group()
def plan() -> None:
    """Create, inspect and drive release plans."""


@plan.command("list")
@click.option("--app", "app_name")
@click.option("--env", "environment")
@click.option("--group", "group_name")
@click.option("--status", type=click.Choice([s.value for s in PlanStatus]))
@click.option("--search", help="Text in the name, id, description, author or a key.")
@click.option("--page", default=1, type=click.IntRange(1))
@click.option("--page-size", default=20, type=click.IntRange(1, 200))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
@reporting_errors
def list_plans(
    ctx: click.Context,
    app_name: str | None,
    environment: str | None,
    group_name: str | None,
    status: str | None,
    search: str | None,
    page: int,
    page_size: int,
    as_json: bool,
) -> None:
    """List plans, newest first."""
    query = PlanQuery(
        app_name=app_name,
        environment=environment,
        group_name=group_name,
        status=PlanStatus(status) if status else None,
        page=page,
        page_size=page_size,
        search=search.strip() or None if search else None,
    )
    with engine_for(ctx) as engine:
        found = engine.list_plans(query)
    if as_json:
        echo_json({"items": [plan_to_wire(p) for p in found.items], "total": found.total})
        return
    click.echo(f"{'PLAN ID':32}  {'STATUS':9}  {'STRATEGY':14}  {'PCT':>6}  APP/ENV/GROUP  NAME")
    for p in found.items:
        where = f"{p.app_name}/{p.environment}/{p.group_name}"
        pct = p.progress.percentage
        click.echo(f"{p.id:32}  {p.status:9}  {p.strategy:14}  {pct:6.2f}  {where}  {p.name}")
    click.echo(f"{found.total} plan(s); page {found.page}")


@plan.command("show")
@click.argument("plan_id")
@click.pass_context
@reporting_errors
def show_plan(ctx: click.Context, plan_id: str) -> None:
    """Print one plan as JSON."""
    with engine_for(ctx) as engine:
        echo_json(plan_to_wire(engine.get_plan(plan_id)))


@plan.command("create")
@click.option(
    "-f",
    "--file",
    "source",
    type=click.File("r", encoding="utf-8"),
    required=True,
    help="The plan as JSON (the spec's body plus grayValues); - for stdin.",
)
@click.pass_context
@reporting_errors
def create_plan(ctx: click.Context, source: TextIO) -> None:
    """Create a DRAFT plan from a JSON file."""
    try:
        body = json.load(source)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            "file", f"is not valid JSON ({exc.msg} at line {exc.lineno})"
        ) from None
    with engine_for(ctx) as engine:
        echo_json(plan_to_wire(engine.create_plan(body, actor=ctx.meta[OPTIONS].actor)))


def _lifecycle_command(action: str, summary: str) -> click.Command:
    @click.argument("plan_id")
    @click.pass_context
    @reporting_errors
    def command(ctx: click.Context, plan_id: str) -> None:
        with engine_for(ctx) as engine:
            result = getattr(engine, action)(plan_id, actor=ctx.meta[OPTIONS].actor)
            echo_json(plan_to_wire(result))

    command.__doc__ = summary
    return plan.command(action)(command)


for _action, _summary in (
    ("start", "DRAFT -> ACTIVE: snapshot the originals and serve the gray set."),
    ("pause", "ACTIVE -> PAUSED: recorded instances keep the gray value; no new one joins."),
    ("resume", "PAUSED -> ACTIVE."),
    ("complete", "Publish the gray values to everyone, all keys or none."),
):
    _lifecycle_command(_action, _summary)


@plan.command("rollback")
@click.argument("plan_id")
@click.option("--reason", default="", help="Why, for the audit trail.")
@click.option(
    "--force", is_flag=True, help="Roll back a completed plan even if its keys changed since."
)
@click.pass_context
@reporting_errors
def rollback_plan(ctx: click.Context, plan_id: str, reason: str, force: bool) -> None:
    """Everyone gets the original values at once."""
    with engine_for(ctx) as engine:
        result = engine.rollback(plan_id, actor=ctx.meta[OPTIONS].actor, reason=reason, force=force)
        echo_json(plan_to_wire(result))


@plan.command("promote")
@click.argument("plan_id")
@click.option("--full", is_flag=True, help="Go to 100% of clients at once.")
@click.pass_context
@reporting_errors
def promote_plan(ctx: click.Context, plan_id: str, full: bool) -> None:
    """Widen an ACTIVE plan now: one canary step, or --full to everyone."""
    with engine_for(ctx) as engine:
        result = engine.promote(plan_id, actor=ctx.meta[OPTIONS].actor, full=full)
        echo_json(plan_to_wire(result))


@plan.command("approve")
@click.argument("plan_id")
@click.option("--reason", default="", help="For the audit trail.")
@click.pass_context
@reporting_errors
def approve_plan(ctx: click.Context, plan_id: str, reason: str) -> None:
    """Approve the plan's start (a DRAFT) or its completion (a live plan)."""
    with engine_for(ctx) as engine:
        row = engine.approve(plan_id, actor=ctx.meta[OPTIONS].actor, reason=reason)
        echo_json({"planId": row.plan_id, "decision": row.action, **(row.details or {})})


@plan.command("reject")
@click.argument("plan_id")
@click.option("--reason", required=True, help="Why: it stays refused until approved.")
@click.pass_context
@reporting_errors
def reject_plan(ctx: click.Context, plan_id: str, reason: str) -> None:
    """Reject the plan's start or completion."""
    with engine_for(ctx) as engine:
        row = engine.reject(plan_id, actor=ctx.meta[OPTIONS].actor, reason=reason)
        echo_json({"planId": row.plan_id, "decision": row.action, **(row.details or {})})


# --- grants and tokens ------------------------------------------------------------------------


@cli.group()
def grant() -> None:
    """Roles per app and environment (`*` for all): viewer, editor, releaser, admin."""


@grant.command("add")
@click.argument("grantee")
@click.argument("role", type=click.Choice(ROLES))
@click.option("--app", "app_name", default=ANY, show_default=True)
@click.option("--env", "environment", default=ANY, show_default=True)
@click.pass_context
@reporting_errors
def grant_add(ctx: click.Context, grantee: str, role: str, app_name: str, environment: str) -> None:
    """Give GRANTEE the ROLE for an app and an environment."""
    with engine_for(ctx) as engine:
        made = engine.grant(
            actor=ctx.meta[OPTIONS].actor,
            grantee=grantee,
            role=role,
            app_name=app_name,
            environment=environment,
        )
        echo_json(made.to_wire())


@grant.command("remove")
@click.argument("grant_id", type=click.IntRange(1))
@click.pass_context
@reporting_errors
def grant_remove(ctx: click.Context, grant_id: int) -> None:
    """Revoke a grant by its id (see `grant list`)."""
    with engine_for(ctx) as engine:
        echo_json(engine.revoke(grant_id, actor=ctx.meta[OPTIONS].actor).to_wire())


@grant.command("list")
@click.option("--actor", "grantee", help="Only this actor's grants.")
@click.option("--app", "app_name", help="Only grants naming this app.")
@click.option("--env", "environment", help="Only grants naming this environment.")
@click.pass_context
@reporting_errors
def grant_list(
    ctx: click.Context, grantee: str | None, app_name: str | None, environment: str | None
) -> None:
    """The grants (seeing them takes the admin role in that scope)."""
    with engine_for(ctx) as engine:
        found = engine.grants(
            actor=ctx.meta[OPTIONS].actor,
            grantee=grantee,
            app_name=app_name,
            environment=environment,
        )
        echo_json([item.to_wire() for item in found])


@cli.group()
def token() -> None:
    """API tokens: scoped (read, write, release), expiring, stored hashed."""


@token.command("create")
@click.option("--scope", type=click.Choice(TOKEN_SCOPES), default="read", show_default=True)
@click.option("--days", type=click.IntRange(1, MAX_TOKEN_DAYS), default=90, show_default=True)
@click.option("--name", default="", help="What it is for.")
@click.option("--for", "owner", help="Another actor's token (takes the admin role).")
@click.pass_context
@reporting_errors
def token_create(ctx: click.Context, scope: str, days: int, name: str, owner: str | None) -> None:
    """Make a token; its secret is printed once."""
    with engine_for(ctx) as engine:
        secret, made = engine.create_token(
            actor=ctx.meta[OPTIONS].actor, owner=owner, scope=scope, days=days, name=name
        )
        echo_json({**made.to_wire(), "token": secret})


@token.command("revoke")
@click.argument("token_id")
@click.pass_context
@reporting_errors
def token_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token by its id."""
    with engine_for(ctx) as engine:
        echo_json(engine.revoke_token(token_id, actor=ctx.meta[OPTIONS].actor).to_wire())


@token.command("list")
@click.option("--for", "owner", help="Another actor's tokens (takes the admin role).")
@click.pass_context
@reporting_errors
def token_list(ctx: click.Context, owner: str | None) -> None:
    """Tokens (never their secrets)."""
    actor = ctx.meta[OPTIONS].actor
    with engine_for(ctx) as engine:
        echo_json([item.to_wire() for item in engine.tokens(actor=actor, owner=owner or actor)])


# --- housekeeping -----------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """The database schema: Alembic migrations of every plugin that keeps tables."""


@contextmanager
def migration_sets(ctx: click.Context) -> Iterator[list[MigrationSet]]:
    """The migration sets of the installation, without building (and so migrating) it."""
    app = _host_app(ctx)
    if app is not None:
        engine = app.extensions["grayrelease"].state(app).engine
        settings, pm = engine.settings, engine.plugin_manager
    else:
        options: Options = ctx.meta[OPTIONS]
        settings = Settings.from_mapping(
            {"database_url": options.database_url, "backend": options.backend}
        )
        pm = make_plugin_manager()
    sets = [item for _, item in collect(pm, "grayrelease_register_migrations", settings=settings)]
    try:
        yield sets
    finally:
        for item in sets:
            item.engine.dispose()


SET_OPTION = click.option(
    "--set",
    "only",
    help="Only this migration set (see `db current`); needed for a REVISION other than "
    "head or base, since each set has its own history.",
)


def _chosen(sets: list[MigrationSet], only: str | None, revision: str) -> list[MigrationSet]:
    chosen = [item for item in sets if only is None or item.name == only]
    if only is not None and not chosen:
        names = ", ".join(item.name for item in sets)
        raise ValidationError("--set", f"no such migration set; there are: {names}", value=only)
    if revision not in ("head", "base") and len(chosen) > 1:
        raise ValidationError("--set", "is required with a revision other than head or base")
    return chosen


@db.command("upgrade")
@click.argument("revision", default="head")
@SET_OPTION
@click.pass_context
@reporting_errors
def db_upgrade(ctx: click.Context, revision: str, only: str | None) -> None:
    """Apply migrations (to REVISION, default head)."""
    with migration_sets(ctx) as sets:
        for item in _chosen(sets, only, revision):
            migrations.upgrade(item, revision)
            click.echo(f"{item.name}: at {migrations.current(item)}")


@db.command("downgrade")
@click.argument("revision", default="base")
@SET_OPTION
@click.option("--yes", is_flag=True, help="Do not ask; base drops every table and its data.")
@click.pass_context
@reporting_errors
def db_downgrade(ctx: click.Context, revision: str, only: str | None, yes: bool) -> None:
    """Undo migrations (to REVISION, default base: drop the tables)."""
    if revision == "base" and not yes:
        click.confirm("Drop every grayrelease table and its data?", abort=True)
    with migration_sets(ctx) as sets:
        for item in reversed(_chosen(sets, only, revision)):
            migrations.downgrade(item, revision)
            click.echo(f"{item.name}: at {migrations.current(item) or 'base'}")


@db.command("current")
@click.pass_context
@reporting_errors
def db_current(ctx: click.Context) -> None:
    """Show the applied and the newest revision of each migration set."""
    with migration_sets(ctx) as sets:
        for item in sets:
            applied, newest = migrations.current(item), migrations.head(item)
            state = "up to date" if applied == newest else "behind: run `grayrelease db upgrade`"
            click.echo(f"{item.name}: {applied or 'none'} (head {newest}; {state})")


@db.command("init")
@click.pass_context
@reporting_errors
def db_init(ctx: click.Context) -> None:
    """Create the tables (the same as `db upgrade head`)."""
    ctx.invoke(db_upgrade, revision="head", only=None)


@cli.command()
@click.pass_context
@reporting_errors
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def tick(ctx: click.Context, as_json: bool) -> None:
    """One round of the ticker (from cron): scheduled starts, metric analysis, canary steps,
    automatic rollbacks and completions; also writes buffered hits."""
    with engine_for(ctx) as engine:
        report = engine.tick()
    if as_json:
        echo_json(report.to_wire())
        return
    verdicts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.analyses.items()))
    click.echo(
        f"grayrelease: tick done: {len(report.started)} started, {len(report.stepped)} stepped, "
        f"{len(report.held)} held, {len(report.completed)} completed, "
        f"{len(report.rolled_back)} rolled back; analyses: {verdicts or 'none'}"
    )
    for error in report.errors:
        click.echo(f"grayrelease: {error}", err=True)
    if report.notifications is not None:
        _echo_delivery(report.notifications)


@cli.command()
@click.pass_context
@reporting_errors
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def notify(ctx: click.Context, as_json: bool) -> None:
    """Send the notifications that are due (from cron, where no ticker thread runs): retries
    with backoff, and records every attempt. `tick` does this too."""
    with engine_for(ctx) as engine:
        report = engine.deliver()
    if as_json:
        echo_json(report.to_wire())
        return
    _echo_delivery(report)


def _echo_delivery(report: DeliveryReport) -> None:
    click.echo(
        f"grayrelease: notifications: {len(report.delivered)} delivered, "
        f"{len(report.retrying)} to retry, {len(report.failed)} failed"
    )
    for error in report.errors:
        click.echo(f"grayrelease: {error}", err=True)


# --- audit ------------------------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """The audit trail: check its chain, take checkpoints of it, export it."""


@audit.command("verify")
@click.pass_context
@reporting_errors
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--checkpoint",
    "checkpoint_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file of checkpoints from `audit checkpoint`, one a line (repeatable): "
    "fail when the chain no longer holds one.",
)
def audit_verify(ctx: click.Context, as_json: bool, checkpoint_files: tuple[Path, ...]) -> None:
    """Walk the audit chain; exit status 1 at the first row altered, deleted or inserted
    around the store, or at a checkpoint the chain no longer holds (its newest rows deleted
    and the head moved back: only a checkpoint kept outside the database shows that)."""
    sources = [
        found
        for path in checkpoint_files
        for found in read_checkpoints(path.read_text(encoding="utf-8"), str(path))
    ]
    with engine_for(ctx) as engine:
        report = engine.verify_audit([checkpoint for _, checkpoint in sources])
    if as_json:
        echo_json(report.to_wire())
    else:
        _echo_report(report, [where for where, _ in sources])
    if not report.ok:
        ctx.exit(1)


def _echo_report(report: AuditReport, sources: list[str]) -> None:
    found = report.first_break
    if found is not None:
        where = f"row {found.log_id}" if found.log_id is not None else "the newest rows"
        click.echo(
            f"grayrelease: audit chain broken at {where} (seq {found.seq}): "
            f"{found.problem}: {found.detail}",
            err=True,
        )
    for where, held in zip(sources, report.checkpoints, strict=True):
        if not held.ok:
            click.echo(f"grayrelease: {where}: {held.problem}: {held.detail}", err=True)
    if report.ok:
        held_note = f", {len(sources)} checkpoints held" if sources else ""
        click.echo(f"grayrelease: audit chain intact: {report.rows} rows{held_note}")


@audit.command("checkpoint")
@click.pass_context
@reporting_errors
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the checkpoint to this file (one a line) instead of printing it.",
)
def audit_checkpoint(ctx: click.Context, out: Path | None) -> None:
    """The audit chain's head now ({seq, rowHash, at, signature}; signed with audit.key), as
    one JSON line. Keep it outside the database: `audit verify --checkpoint FILE` then fails
    if the rows up to it were deleted or rewritten, even with the head moved back."""
    with engine_for(ctx) as engine:
        checkpoint = engine.audit_checkpoint()
    line = json.dumps(checkpoint.to_wire(), sort_keys=True)
    if out is None:
        click.echo(line)
        return
    with out.open("a", encoding="utf-8") as kept:
        kept.write(line + "\n")
    click.echo(f"grayrelease: checkpoint seq {checkpoint.seq} appended to {out}", err=True)


@audit.command("export")
@click.pass_context
@reporting_errors
@click.option("--plan", "plan_id", help="Only this plan's rows.")
@click.option("--actor", "who", help="Only this actor's rows.")
@click.option("--app", "app_name", help="Only this app's rows.")
@click.option("--env", "environment", help="Only this environment's rows.")
@click.option("--action", "actions", multiple=True, help="Only these actions (repeatable).")
@click.option("--since", help="Rows at or after this ISO time.")
@click.option("--until", help="Rows before this ISO time.")
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-")
def audit_export(
    ctx: click.Context,
    plan_id: str | None,
    who: str | None,
    app_name: str | None,
    environment: str | None,
    actions: tuple[str, ...],
    since: str | None,
    until: str | None,
    output: Any,
) -> None:
    """Every matching audit row as CSV, oldest first (the whole trail by default)."""
    query = LogQuery(
        plan_id=plan_id,
        actor=who,
        app_name=app_name,
        environment=environment,
        actions=actions or None,
        since=parse_time(since, "--since") if since else None,
        until=parse_time(until, "--until") if until else None,
        newest_first=False,
    )
    with engine_for(ctx) as engine:
        for line in logs_to_csv(engine.export_logs(query)):
            output.write(line)


def main() -> None:
    """The console script."""
    cli(prog_name="grayrelease")


if __name__ == "__main__":
    main()
