"""The ``wijkbrug`` command: run the bridge and manage the region's directory and routes.

Exit codes: 0 ok, 1 a refused command (the message says why), 2 usage or configuration
error, 3 database error, 4 homeserver unreachable.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from bridge import __version__, rekey
from bridge.agreements import parse_sheet
from bridge.canonical import DIALECTS, CareType, Priority
from bridge.cli_deploy import deploy
from bridge.config import (
    ConfigError,
    Settings,
    generate_config,
    load_settings,
    settings_for_data_dir,
    write_registration,
)
from bridge.directory import parse_pc4_range
from bridge.errors import WijkbrugError
from bridge.identifiers import is_valid_bsn, normalise_postcode
from bridge.observability import configure_logging
from bridge.routing import gp_route_for
from bridge.runtime import open_store
from bridge.schema import SchemaTooNewError
from bridge.secretbox import ENV_VAR, SecretBox, SecretBoxError
from bridge.store import Store

F = TypeVar("F", bound=Callable[..., Any])
EXIT_REFUSED, EXIT_CONFIG, EXIT_DATABASE, EXIT_HOMESERVER = 1, 2, 3, 4
PROGRESS_FROM = 500  # rows of an agreement sheet from which `route import` shows progress


def _fail(message: str, code: int) -> None:
    click.echo(f"wijkbrug: {message}", err=True)
    sys.exit(code)


def friendly_errors(func: F) -> F:
    """Turn our errors into one actionable line and a distinct exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except WijkbrugError as exc:
            _fail(exc.message, EXIT_REFUSED)
        except ConfigError as exc:
            _fail(f"configuration: {exc}", EXIT_CONFIG)
        except SchemaTooNewError as exc:
            _fail(str(exc), EXIT_DATABASE)
        except SQLAlchemyError as exc:
            _fail(
                f"database: {type(exc).__name__}: {exc.args[0] if exc.args else ''}", EXIT_DATABASE
            )

    return wrapper  # type: ignore[return-value]


class Context:
    """What the sub-commands share: where the installation is."""

    def __init__(self, data_dir: Path, config: Path | None) -> None:
        self.data_dir = data_dir
        self.config = config
        self._store: Store | None = None

    def settings(self) -> Settings:
        if self.config is not None:
            return load_settings(self.config)
        return settings_for_data_dir(self.data_dir)

    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.settings())
        return self._store


pass_ctx = click.make_pass_decorator(Context)


@click.group()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data"),
    envvar="WIJKBRUG_DATA_DIR",
    show_default=True,
    help="Directory of the installation (config, database, keys).",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="WIJKBRUG_CONFIG",
    help="Config file (default: DATA_DIR/config.yaml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
@click.option(
    "--log-json",
    is_flag=True,
    envvar="WIJKBRUG_LOG_JSON",
    help="Log JSON lines (time, level, logger, request_id, message) instead of text.",
)
@click.version_option(__version__)
@click.pass_context
def main(
    ctx: click.Context, data_dir: Path, config: Path | None, verbose: bool, log_json: bool
) -> None:
    """Wijkbrug: GP messages to the preferred home-care provider, over encrypted Matrix."""
    configure_logging(verbose=verbose, json_lines=log_json)
    ctx.obj = Context(data_dir, config)


# ---------------------------------------------------------------------- organisations


@main.group()
def org() -> None:
    """Organisations: practices, home-care providers, huisartsenposten."""


@org.command("add")
@click.argument("kind", type=click.Choice(["practice", "provider", "hap"]))
@click.option("--agb", help="AGB code (8 digits).")
@click.option("--ura", help="URA number (8 digits).")
@click.option("--name", required=True)
@pass_ctx
@friendly_errors
def org_add(ctx: Context, kind: str, agb: str | None, ura: str | None, name: str) -> None:
    """Add an organisation."""
    ref = ctx.store().add_org(kind, name, agb=agb, ura=ura)
    click.echo(f"added {ref.kind} {ref.name} (id {ref.id})")


@org.command("list")
@pass_ctx
@friendly_errors
def org_list(ctx: Context) -> None:
    """List the organisations."""
    for o in ctx.store().list_orgs():
        click.echo(f"{o.id}\t{o.kind}\tAGB {o.agb or '-'}\tURA {o.ura or '-'}\t{o.name}")


# ---------------------------------------------------------------------- practitioners


@main.group()
def practitioner() -> None:
    """Practitioners (GPs, assistants) of a practice."""


@practitioner.command("add")
@click.option("--org", "org_code", required=True, help="AGB of the practice.")
@click.option("--name", required=True)
@click.option("--agb")
@click.option("--uzi")
@click.option("--big")
@click.option("--matrix-id", help="Her Matrix ID, if she uses a chat client.")
@pass_ctx
@friendly_errors
def practitioner_add(
    ctx: Context,
    org_code: str,
    name: str,
    agb: str | None,
    uzi: str | None,
    big: str | None,
    matrix_id: str | None,
) -> None:
    """Add a practitioner to a practice."""
    pid = ctx.store().add_practitioner(
        org_code, name, agb=agb, uzi=uzi, big=big, matrix_id=matrix_id
    )
    click.echo(f"added practitioner {name} (id {pid})")


@practitioner.command("list")
@pass_ctx
@friendly_errors
def practitioner_list(ctx: Context) -> None:
    """List the practitioners."""
    for p in ctx.store().list_practitioners():
        click.echo(f"{p.id}\t{p.org.name}\t{p.name}\tAGB {p.agb or '-'}\t{p.matrix_id or '-'}")


# ---------------------------------------------------------------------- teams


def _pc4_range(value: str) -> tuple[int, int]:
    try:
        return parse_pc4_range(value)
    except WijkbrugError as exc:
        raise click.BadParameter(exc.message) from None


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


CARE_TYPES = click.Choice([c.value for c in CareType])
care_type_option = click.option("--care-type", required=True, type=CARE_TYPES)


@main.group()
def team() -> None:
    """Teams of a home-care provider, with their nurses' Matrix IDs."""


@team.command("add")
@click.option("--provider", required=True, help="URA (or AGB) of the provider.")
@click.option("--name", required=True)
@click.option("--member", "members", multiple=True, help="Matrix ID of a nurse (repeat).")
@click.option(
    "--care-type",
    "care_types",
    multiple=True,
    type=CARE_TYPES,
    help="A care type the team serves (repeat; default: all).",
)
@click.option(
    "--pc4", "areas", multiple=True, help="PC4 range the team serves (repeat; default: all)."
)
@pass_ctx
@friendly_errors
def team_add(
    ctx: Context,
    provider: str,
    name: str,
    members: tuple[str, ...],
    care_types: tuple[str, ...],
    areas: tuple[str, ...],
) -> None:
    """Add a team to a provider."""
    team_id = ctx.store().add_team(
        provider,
        name,
        list(members),
        care_types=[CareType(c) for c in care_types],
        pc4_ranges=[_pc4_range(a) for a in areas],
    )
    click.echo(f"added team {name} (id {team_id}) with {len(set(members))} member(s)")


@team.command("list")
@pass_ctx
@friendly_errors
def team_list(ctx: Context) -> None:
    """List the teams and their members."""
    for t in ctx.store().list_teams():
        care = ",".join(c.value for c in t.care_types) or "all care types"
        areas = ",".join(f"{lo}-{hi}" for lo, hi in t.pc4_ranges) or "all areas"
        click.echo(f"{t.id}\t{t.provider.name}\t{t.name}\t{care}\t{areas}\t{' '.join(t.members)}")


# ---------------------------------------------------------------------- wijken


@main.group()
def wijk() -> None:
    """Named neighbourhoods (sets of PC4 areas) that routes can refer to."""


@wijk.command("add")
@click.option("--name", required=True)
@click.option("--pc4", "areas", multiple=True, required=True, help="PC4 or range (repeat).")
@pass_ctx
@friendly_errors
def wijk_add(ctx: Context, name: str, areas: tuple[str, ...]) -> None:
    """Add a wijk."""
    ctx.store().add_wijk(name, [_pc4_range(a) for a in areas])
    click.echo(f"added wijk {name}")


@wijk.command("list")
@pass_ctx
@friendly_errors
def wijk_list(ctx: Context) -> None:
    """List the wijken and their PC4s."""
    for name, areas in ctx.store().wijken().items():
        click.echo(f"{name}\t{' '.join(map(str, areas))}")


# ---------------------------------------------------------------------- availability


@main.group()
def availability() -> None:
    """Mark a provider or team full for a period ("vol tot vrijdag")."""


@availability.command("full")
@click.option("--provider", required=True, help="URA of the provider.")
@click.option("--team", help="Only this team of the provider.")
@click.option("--care-type", type=CARE_TYPES, help="Only this care type (default: all).")
@click.option("--from", "start", help="ISO date-time (default: now).")
@click.option("--until", "end", required=True, help="ISO date-time it ends (exclusive).")
@click.option("--note", default="")
@pass_ctx
@friendly_errors
def availability_full(
    ctx: Context,
    provider: str,
    team: str | None,
    care_type: str | None,
    start: str | None,
    end: str,
    note: str,
) -> None:
    """Mark a provider (or team) full; routing takes the next provider meanwhile."""
    until = _moment(end)
    assert until is not None
    block_id = ctx.store().add_unavailability(
        provider,
        _moment(start) or datetime.now(UTC),
        until,
        care_type=CareType(care_type) if care_type else None,
        team=team,
        note=note,
    )
    click.echo(f"marked full (id {block_id}) until {until.isoformat()}")


@availability.command("list")
@pass_ctx
@friendly_errors
def availability_list(ctx: Context) -> None:
    """List the periods in which providers are full."""
    for b in ctx.store().unavailability():
        care = b.care_type.value if b.care_type else "all"
        click.echo(
            f"{b.id}\tprovider {b.provider_id}\t{care}\t{b.start.isoformat()}"
            f"\t{b.end.isoformat()}\t{b.note}"
        )


@availability.command("clear")
@click.argument("block_id", type=int)
@pass_ctx
@friendly_errors
def availability_clear(ctx: Context, block_id: int) -> None:
    """Remove a "full" period."""
    ctx.store().remove_unavailability(block_id)
    click.echo(f"cleared {block_id}")


# ---------------------------------------------------------------------- routes


@main.group()
def route() -> None:
    """Preferred-provider routes: care type x area -> provider."""


@route.command("add")
@care_type_option
@click.option("--pc4", help="PC4 or range, e.g. 1091-1098.")
@click.option("--wijk", help="A named wijk instead of --pc4.")
@click.option("--provider", required=True, help="URA (or AGB) of the provider.")
@click.option("--rank", default=1, show_default=True, help="1 = preferred, 2 = first fallback.")
@click.option("--valid-from", help="ISO date the route starts.")
@click.option("--valid-to", help="ISO date the route ends (exclusive).")
@pass_ctx
@friendly_errors
def route_add(
    ctx: Context,
    care_type: str,
    pc4: str | None,
    wijk: str | None,
    provider: str,
    rank: int,
    valid_from: str | None,
    valid_to: str | None,
) -> None:
    """Add a route."""
    if (pc4 is None) == (wijk is None):
        raise click.UsageError("give exactly one of --pc4 and --wijk")
    low, high = _pc4_range(pc4) if pc4 else (None, None)
    route_id = ctx.store().add_route(
        CareType(care_type),
        low,
        high,
        provider,
        rank=rank,
        valid_from=_moment(valid_from),
        valid_to=_moment(valid_to),
        wijk=wijk,
    )
    click.echo(f"added route {route_id}")


@route.command("remove")
@click.argument("route_id", type=int)
@pass_ctx
@friendly_errors
def route_remove(ctx: Context, route_id: int) -> None:
    """Remove a route."""
    ctx.store().remove_route(route_id)
    click.echo(f"removed route {route_id}")


@route.command("end")
@click.argument("route_id", type=int)
@click.option("--at", "at", required=True, help="ISO date the route stops applying.")
@pass_ctx
@friendly_errors
def route_end(ctx: Context, route_id: int, at: str) -> None:
    """End a route at a date (e.g. before next year's agreements take over)."""
    moment = _moment(at)
    assert moment is not None
    ctx.store().end_route(route_id, moment)
    click.echo(f"route {route_id} ends at {moment.isoformat()}")


@route.command("list")
@pass_ctx
@friendly_errors
def route_list(ctx: Context) -> None:
    """List the routes."""
    rules = sorted(ctx.store().route_rules(), key=lambda r: (r.care_type.value, r.pc4_from, r.rank))
    for r in rules:
        start = r.valid_from.date().isoformat() if r.valid_from else "…"
        end = r.valid_to.date().isoformat() if r.valid_to else "…"
        click.echo(
            f"{r.id}\t{r.care_type.value}\t{r.area_text()}\trank {r.rank}\t{start}/{end}"
            f"\t{r.provider_name}"
        )


@route.command("explain")
@care_type_option
@click.option("--postcode", required=True)
@click.option("--at", "at", help="ISO date-time to decide for (default: now).")
@click.option(
    "--priority",
    type=click.Choice([p.value for p in Priority]),
    default="routine",
    show_default=True,
)
@pass_ctx
@friendly_errors
def route_explain(
    ctx: Context, care_type: str, postcode: str, at: str | None, priority: str
) -> None:
    """Show which provider a case would go to, and why."""
    if normalise_postcode(postcode) is None:
        raise click.BadParameter(f"{postcode!r} is not a Dutch postcode", param_hint="--postcode")
    decision = ctx.store().explain(CareType(care_type), postcode, _moment(at), Priority(priority))
    for reason in decision.reasons:
        click.echo(f"  - {reason}")
    if decision.routed:
        click.echo(f"-> {decision.provider_name} (team {decision.team_id})")
    else:
        click.echo("-> no provider: this message would be refused (HTTP 422)")
        sys.exit(EXIT_REFUSED)


@route.command("gp")
@click.option("--practice", required=True, help="AGB of the patient's practice.")
@click.option("--at", "at", help="ISO date-time (default: now).")
@pass_ctx
@friendly_errors
def route_gp(ctx: Context, practice: str, at: str | None) -> None:
    """Where a nurse's question to the GP goes: the practice, or the huisartsenpost."""
    store = ctx.store()
    org = store.find_org(practice)
    haps = store.list_orgs("hap")
    opens, closes = ctx.settings().office_hours.window()
    decision = gp_route_for(
        (org.id, org.name),
        (haps[0].id, haps[0].name) if haps else None,
        _moment(at) or datetime.now(UTC),
        opens,
        closes,
    )
    for reason in decision.reasons:
        click.echo(f"  - {reason}")
    if decision.org_id is None:
        sys.exit(EXIT_REFUSED)


@route.command("coverage")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("--at", "at", help="ISO date-time (default: now).")
@click.option(
    "--pc4",
    "areas",
    multiple=True,
    help="PC4 range to check (repeat; default: every PC4 the agreements mention).",
)
@pass_ctx
@friendly_errors
def route_coverage(ctx: Context, fmt: str, at: str | None, areas: tuple[str, ...]) -> None:
    """List PC4 areas x care types with no preferred provider."""
    store = ctx.store()
    pc4s = (
        sorted({a for r in areas for a in range(_pc4_range(r)[0], _pc4_range(r)[1] + 1)})
        if areas
        else store.known_areas()
    )
    gaps = store.routing_table().gaps(pc4s, _moment(at) or datetime.now(UTC))
    if fmt == "json":
        click.echo(json.dumps([{"pc4": a, "care_type": c.value} for a, c in gaps], indent=2))
    elif fmt == "csv":
        click.echo("pc4,care_type")
        for area, care in gaps:
            click.echo(f"{area},{care.value}")
    else:
        missing: dict[int, list[str]] = {}
        for area, care in gaps:
            missing.setdefault(area, []).append(care.value)
        click.echo(f"{len(pc4s)} PC4 area(s) checked, {len(gaps)} gap(s)")
        for area, cares in missing.items():
            click.echo(f"{area}  no provider for: {', '.join(cares)}")


@route.command("import")
@click.argument("sheet", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_ctx
@friendly_errors
def route_import(ctx: Context, sheet: Path) -> None:
    """Load an agreement sheet (CSV) in one transaction; any bad row changes nothing."""
    rows, errors = parse_sheet(sheet.read_text(encoding="utf-8"))
    if len(rows) < PROGRESS_FROM:
        added = ctx.store().import_routes(rows, sheet_errors=errors)
    else:
        with click.progressbar(length=len(rows), label="routes", file=sys.stderr) as bar:
            added = ctx.store().import_routes(rows, progress=bar.update, sheet_errors=errors)
            bar.render_finish()
    click.echo(f"imported {added} new route(s) of {len(rows)} row(s)")


@main.command("changes")
@click.option("--limit", default=20, show_default=True)
@pass_ctx
@friendly_errors
def changes(ctx: Context, limit: int) -> None:
    """The latest changes to the directory and routes (who, what, before, after)."""
    for c in ctx.store().changes(limit):
        click.echo(
            f"{c['at']}\t{c['actor']}\t{c['action']}\t{c['target']}\t"
            f"{json.dumps(c['before'])} -> {json.dumps(c['after'])}"
        )


# ---------------------------------------------------------------------- clients


@main.group()
def client() -> None:
    """Integration clients (practice systems, care record systems) and their tokens."""


EXPIRY = click.option(
    "--expires-in-days",
    type=click.IntRange(min=0),
    default=365,
    show_default=True,
    help="The token stops working after this many days (0: only when revoked).",
)


def _expiry(days: int) -> datetime | None:
    return datetime.now(UTC) + timedelta(days=days) if days else None


@client.command("add")
@click.option("--org", "org_code", required=True, help="AGB or URA of the organisation.")
@click.option("--name", required=True)
@click.option("--dialect", default="fhir-r4", show_default=True, type=click.Choice(DIALECTS))
@click.option("--push-url", help="Push replies here (FHIR base URL, or EDIFACT endpoint).")
@click.option(
    "--push-token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File with the bearer token Wijkbrug sends to the push endpoint.",
)
@EXPIRY
@click.option(
    "--cert-sha256",
    help="The SHA-256 fingerprint of its client certificate: it must then come through the "
    "proxy with it (http.client_certificate_header).",
)
@pass_ctx
@friendly_errors
def client_add(
    ctx: Context,
    org_code: str,
    name: str,
    dialect: str,
    push_url: str | None,
    push_token_file: Path | None,
    expires_in_days: int,
    cert_sha256: str | None,
) -> None:
    """Add a client; its token is printed once, as the last line."""
    push_token = push_token_file.read_text().strip() if push_token_file else None
    expires_at = _expiry(expires_in_days)
    client_id, token = ctx.store().add_client(
        org_code,
        name,
        dialect,
        push_url=push_url,
        push_token=push_token,
        expires_at=expires_at,
        cert_sha256=cert_sha256,
    )
    until = f"valid until {expires_at:%Y-%m-%d}" if expires_at else "no expiry"
    click.echo(f"added client {name} (id {client_id}, {until}); its token (shown once):")
    click.echo(token)


@client.command("renew")
@click.argument("client_id", type=int)
@EXPIRY
@pass_ctx
@friendly_errors
def client_renew(ctx: Context, client_id: int, expires_in_days: int) -> None:
    """Give a client a new token (the old one stops working at once); printed once, as the
    last line."""
    expires_at = _expiry(expires_in_days)
    token = ctx.store().renew_client_token(client_id, expires_at)
    until = f"valid until {expires_at:%Y-%m-%d}" if expires_at else "no expiry"
    click.echo(f"client {client_id} has a new token ({until}; shown once):")
    click.echo(token)


@main.group()
def admin() -> None:
    """Credentials for the admin page and admin API."""


@admin.command("add")
@click.option("--name", required=True)
@click.option(
    "--role",
    required=True,
    type=click.Choice(["region-admin", "wijk-coordinator", "org-admin"]),
)
@click.option(
    "--scope",
    "scope",
    multiple=True,
    help="A wijk (coordinator) or AGB/URA (org admin) this admin manages (repeat).",
)
@pass_ctx
@friendly_errors
def admin_add(ctx: Context, name: str, role: str, scope: tuple[str, ...]) -> None:
    """Add an admin; the token is printed once, as the last line."""
    admin_id, token = ctx.store().add_admin_token(name, role, list(scope))
    click.echo(f"added {role} {name} (id {admin_id}); its token (shown once):")
    click.echo(token)


@main.group()
def audit() -> None:
    """The NEN 7513 audit trail (hash-chained)."""


@audit.command("verify")
@pass_ctx
@friendly_errors
def audit_verify(ctx: Context) -> None:
    """Check that no entry was changed, deleted or reordered (exit 1 if one was)."""
    problems = ctx.store().verify_audit()
    for problem in problems:
        click.echo(problem)
    if problems:
        _fail(f"the audit trail is broken ({len(problems)} problem(s))", EXIT_REFUSED)
    click.echo("audit trail intact")


@audit.command("export")
@click.option("--patient", "bsn", required=True, help="The patient's BSN.")
@click.option("--from", "start", help="ISO date (inclusive).")
@click.option("--to", "end", help="ISO date (exclusive).")
@pass_ctx
@friendly_errors
def audit_export(ctx: Context, bsn: str, start: str | None, end: str | None) -> None:
    """The accesses to one patient's data (what the patient is entitled to see), as JSON
    lines. The export itself is recorded."""
    if not is_valid_bsn(bsn):
        raise click.BadParameter("not a valid BSN (11-test)", param_hint="--patient")
    store = ctx.store()
    pseudonym = store.box.keyed_hash("patient", bsn)
    for entry in store.audit_entries(patient=pseudonym, start=_moment(start), end=_moment(end)):
        click.echo(
            json.dumps(
                {
                    "at": entry.at.isoformat(),
                    "who": entry.actor,
                    "organisation": entry.org,
                    "what": entry.action,
                    "object": entry.target,
                    "from": entry.origin,
                    "why": entry.reason,
                },
                ensure_ascii=False,
            )
        )
    store.record_export(pseudonym)


@client.command("list")
@pass_ctx
@friendly_errors
def client_list(ctx: Context) -> None:
    """List the integration clients (tokens are never shown again)."""
    now = datetime.now(UTC)
    for ref, revoked, expires_at in ctx.store().list_clients():
        if revoked:
            state = "revoked"
        elif expires_at is not None and expires_at <= now:
            state = f"expired {expires_at:%Y-%m-%d}"
        else:
            state = f"active until {expires_at:%Y-%m-%d}" if expires_at else "active"
        click.echo(f"{ref.id}\t{ref.org.name}\t{ref.name}\t{ref.dialect}\t{state}")


@client.command("revoke")
@click.argument("client_id", type=int)
@pass_ctx
@friendly_errors
def client_revoke(ctx: Context, client_id: int) -> None:
    """Revoke a client's token (it stops working at once)."""
    ctx.store().revoke_client(client_id)
    click.echo(f"client {client_id} revoked")


# ---------------------------------------------------------------------- keys


@main.group()
def keys() -> None:
    """Encryption-at-rest keys: rotate, retire old ones, see which are in use."""


def _keyring_refused(exc: SecretBoxError | OSError) -> NoReturn:
    if isinstance(exc, OSError):  # e.g. the keys directory is not writable
        click.echo(f"wijkbrug: keyring: {exc.strerror}: {exc.filename}", err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(f"wijkbrug: {exc}", err=True)
    sys.exit(EXIT_REFUSED)


@keys.command("status")
@pass_ctx
@friendly_errors
def keys_status(ctx: Context) -> None:
    """The keys of the keyring and how many stored values each one seals."""
    store = ctx.store()
    ring = store.box.keyring
    try:
        usage = rekey.key_usage(store)
    except (SecretBoxError, OSError) as exc:
        _keyring_refused(exc)
    in_use = rekey.kids_in_use(usage)
    click.echo(f"keyring: {ring.path or '$' + ENV_VAR}")
    for kid in sorted(ring.keys, key=lambda k: k != ring.current):
        role = "current" if kid == ring.current else "old"
        click.echo(f"  {kid}\t{role}\t{in_use.get(kid, 0)} value(s)")
    for kid, count in sorted(in_use.items()):
        if kid not in ring.keys:
            click.echo(f"  {kid}\tnot in the keyring\t{count} value(s) cannot be opened")
    for column, counts in usage.items():
        spread = "  ".join(f"{kid} {n}" for kid, n in sorted(counts.items())) or "-"
        click.echo(f"{column}\t{spread}")


@keys.command("rotate")
@click.option(
    "--no-new-key",
    is_flag=True,
    help="Make no key: re-encrypt what is not under the current key yet (after an "
    "interrupted rotation, or after putting a new keyring in $WIJKBRUG_KEYRING).",
)
@click.option(
    "--print-keyring",
    is_flag=True,
    help="Print the keyring with a new current key on stdout and change nothing "
    "(for a keyring kept in $WIJKBRUG_KEYRING).",
)
@click.option("--retire", is_flag=True, help="Then retire the old keys (see `keys retire`).")
@click.option(
    "--batch-size", default=rekey.BATCH_SIZE, show_default=True, type=click.IntRange(min=1)
)
@pass_ctx
@friendly_errors
def keys_rotate(
    ctx: Context, no_new_key: bool, print_keyring: bool, retire: bool, batch_size: int
) -> None:
    """Add a new current key (old keys stay, for reading) and re-encrypt every stored
    value under it, in batches of one transaction each. The index key (patient
    pseudonyms) never changes."""
    if print_keyring and (no_new_key or retire):
        raise click.UsageError("--print-keyring changes nothing; give it alone")
    store = ctx.store()
    if print_keyring:
        click.echo(store.box.keyring.with_new_key().to_json())
        return
    try:
        box = store.box
        if not no_new_key:
            box = SecretBox(rekey.rotate_keyring(store, ctx.settings().keyring_path))
            click.echo(f"new current key {box.current}")
        total = rekey.count_rows(store)
        if total < PROGRESS_FROM:
            reports = rekey.reencrypt(store, box, batch_size=batch_size)
        else:
            with click.progressbar(length=total, label="re-encrypting", file=sys.stderr) as bar:
                reports = rekey.reencrypt(store, box, batch_size=batch_size, progress=bar.update)
                bar.render_finish()
        for r in reports:
            line = f"{r.table}\t{r.rows} row(s)\t{r.reencrypted} re-encrypted"
            line += f"\t{r.current} already under {box.current}"
            if r.changed_meanwhile:
                line += f"\t{r.changed_meanwhile} changed meanwhile (run again)"
            click.echo(line)
        unreadable = [f"{r.table} {row}" for r in reports for row in r.unreadable]
        for row in unreadable:
            click.echo(f"cannot open: {row}", err=True)
        if unreadable:
            _fail(
                f"{len(unreadable)} value(s) could not be opened and keep their old key; "
                "nothing was retired",
                EXIT_REFUSED,
            )
        if retire:
            retired = rekey.retire(store, ctx.settings().keyring_path)
            click.echo(f"retired {', '.join(sorted(retired)) or 'nothing'}")
    except (SecretBoxError, OSError) as exc:
        _keyring_refused(exc)


@keys.command("retire")
@click.option(
    "--print-keyring",
    is_flag=True,
    help="Print the keyring without the unused old keys on stdout and change nothing "
    "(for a keyring kept in $WIJKBRUG_KEYRING).",
)
@pass_ctx
@friendly_errors
def keys_retire(ctx: Context, print_keyring: bool) -> None:
    """Remove the old keys from the keyring; refused while any stored value still uses
    one (run `keys rotate --no-new-key` first)."""
    store = ctx.store()
    try:
        if print_keyring:
            ring = store.box.keyring
            free, still = rekey.retirable(ring, rekey.key_usage(store))
            if still:
                in_use = ", ".join(f"{kid} ({n} value(s))" for kid, n in sorted(still.items()))
                _fail(f"old key(s) still in use: {in_use}", EXIT_REFUSED)
            click.echo(ring.without(free).to_json())
            return
        retired = rekey.retire(store, ctx.settings().keyring_path)
    except (SecretBoxError, OSError) as exc:
        _keyring_refused(exc)
    click.echo(f"retired {', '.join(sorted(retired)) or 'nothing'}")


# ---------------------------------------------------------------------- set-up


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@pass_ctx
@friendly_errors
def db_upgrade(ctx: Context) -> None:
    """Bring the database schema up to date."""
    from bridge import schema
    from bridge.db import make_engine

    engine = make_engine(ctx.settings().database_url)
    click.echo(f"schema at revision {schema.upgrade(engine)}")


@main.command("generate-config")
@click.option("--homeserver-url", default="http://127.0.0.1:8008", show_default=True)
@click.option("--server-name", default="localhost", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.option("--database-url", help="e.g. postgresql+psycopg://user@host/db (default SQLite)")
@pass_ctx
@friendly_errors
def generate_config_cmd(
    ctx: Context, homeserver_url: str, server_name: str, port: int, database_url: str | None
) -> None:
    """Write DATA_DIR/config.yaml and token files (kept if they exist)."""
    path = generate_config(
        ctx.data_dir,
        homeserver_url=homeserver_url,
        server_name=server_name,
        port=port,
        database_url=database_url,
    )
    click.echo(f"config: {path}")


@main.command("generate-registration")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
@friendly_errors
def generate_registration_cmd(ctx: Context, output: Path | None) -> None:
    """Write the appservice registration for the homeserver."""
    click.echo(f"registration: {write_registration(ctx.settings(), output)}")


@main.command("serve")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
@friendly_errors
def serve(ctx: Context, config: Path | None) -> None:
    """Run the bridge against an existing homeserver."""
    import uvicorn

    from bridge.web.app import create_app

    settings = load_settings(config) if config else ctx.settings()
    open_store(settings).engine.dispose()  # fail fast on database problems
    app = create_app(settings)
    uvicorn.run(
        app, host=settings.http.host, port=settings.http.port, log_level="info", access_log=False
    )


@main.command("dev")
@click.option("--data-dir", "dev_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--port", default=8080, show_default=True, help="Port of the bridge.")
@click.option("--synapse-port", default=8008, show_default=True)
@click.option("--server-name", default="localhost", show_default=True)
@click.option("--no-demo", is_flag=True, help="Do not load the demo region.")
@pass_ctx
@friendly_errors
def dev(
    ctx: Context,
    dev_dir: Path | None,
    port: int,
    synapse_port: int,
    server_name: str,
    no_demo: bool,
) -> None:
    """The embedded stack: Synapse (SQLite) + the bridge + a demo region."""
    from bridge.devstack import run_dev

    try:
        code = asyncio.run(
            run_dev(
                (dev_dir or ctx.data_dir).resolve(),
                port=port,
                synapse_port=synapse_port,
                server_name=server_name,
                demo=not no_demo,
            )
        )
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl-C it handled once everything has stopped.
        code = 0
    click.echo("stopped.", err=True)
    sys.exit(code)


main.add_command(deploy)  # its own module: production deployment files

if __name__ == "__main__":  # pragma: no cover
    main()
