"""``wijkbrug deploy``: what an infrastructure team needs to run a production site.

::

    wijkbrug deploy secrets --out DIR --server-name NAME --bridge-url URL
        DIR/synapse_*, redis_password, *_db_password, wijkbrug_*_token   (kept if present)
        DIR/synapse_signing_key, DIR/wijkbrug_keyring                    (kept if present)
        DIR/wijkbrug_registration      <- config.registration(), from the token files
    wijkbrug deploy synapse-fragments --out DIR --server-name NAME --bridge-url URL
        DIR/homeserver.yaml wijkbrug.yaml workers.yaml worker-*.yaml log.yaml README.md
        [--configmap FILE]             the same as Kubernetes ConfigMaps, with the module

Both take the appservice section (ids, bot and ghost names) from the bridge's config when
``wijkbrug --config FILE`` is given, so the homeserver's view matches the bridge.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bridge import deployment
from bridge.config import AppserviceSection, ConfigError, load_settings

if TYPE_CHECKING:
    from bridge.cli import Context

EXIT_CONFIG = 2


def _site_options(func: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.option("--server-name", required=True, help="The homeserver's server name."),
        click.option(
            "--bridge-url",
            required=True,
            help="How Synapse reaches the bridge (internal, e.g. http://wijkbrug:8080).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _appservice(ctx: Context, server_name: str) -> AppserviceSection | None:
    """The appservice section of an explicitly given bridge config (``--config``)."""
    if ctx.config is None:
        return None
    try:
        settings = load_settings(ctx.config)
    except ConfigError as exc:
        click.echo(f"wijkbrug: configuration: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    if settings.homeserver.server_name != server_name:
        click.echo(
            f"wijkbrug: configuration: homeserver.server_name is "
            f"{settings.homeserver.server_name!r} in {ctx.config}, not {server_name!r}",
            err=True,
        )
        sys.exit(EXIT_CONFIG)
    return settings.appservice


@click.group()
def deploy() -> None:
    """Production: the site's secrets and the homeserver's configuration."""


@deploy.command("secrets")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The site's secrets directory (created 0700; files 0600).",
)
@_site_options
@click.pass_obj
def secrets_cmd(ctx: Context, out: Path, server_name: str, bridge_url: str) -> None:
    """Create the site's missing secrets and write the appservice registration."""
    site = deployment.SynapseSite(server_name, bridge_url)
    written = deployment.write_secrets(out)
    settings = deployment.site_settings(site, _appservice(ctx, server_name), token_dir=out)
    registration = deployment.write_registration_secret(out, settings)
    for name in written:
        click.echo(f"new secret: {out / name}")
    click.echo(f"registration: {registration}")


@deploy.command("synapse-fragments")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the Synapse config files (e.g. deploy/synapse).",
)
@_site_options
@click.option("--public-baseurl", help="The public Matrix URL (default https://SERVER_NAME/).")
@click.option(
    "--single-host",
    is_flag=True,
    help="All processes on one machine (systemd): 127.0.0.1, PostgreSQL over its socket.",
)
@click.option("--config-dir", default="/etc/synapse", show_default=True)
@click.option("--secrets-dir", help="Default: /run/secrets, or CONFIG_DIR/secrets on one host.")
@click.option("--media-store", help="Default: /data/media_store, or /var/lib/synapse/media_store.")
@click.option(
    "--retention-days",
    default=deployment.DEFAULT_RETENTION_DAYS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Synapse purges events older than this.",
)
@click.option(
    "--configmap",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write them (and the policy module) as Kubernetes ConfigMaps to this file.",
)
@click.option("--namespace", default="wijkbrug", show_default=True)
@click.pass_obj
def synapse_fragments_cmd(
    ctx: Context,
    out: Path,
    server_name: str,
    bridge_url: str,
    public_baseurl: str | None,
    single_host: bool,
    config_dir: str,
    secrets_dir: str | None,
    media_store: str | None,
    retention_days: int,
    configmap: Path | None,
    namespace: str,
) -> None:
    """Write the Synapse config files Wijkbrug needs (no secrets in them)."""
    site = deployment.SynapseSite(
        server_name,
        bridge_url,
        public_baseurl=public_baseurl,
        single_host=single_host,
        config_dir=config_dir,
        secrets_dir=secrets_dir,
        media_store=media_store,
        retention_days=retention_days,
    )
    settings = deployment.site_settings(site, _appservice(ctx, server_name))
    fragments = deployment.synapse_fragments(settings, site)
    for path in deployment.write_fragments(out, fragments):
        click.echo(f"wrote {path}")
    if configmap is not None:
        configmap.parent.mkdir(parents=True, exist_ok=True)
        configmap.write_text(deployment.configmaps(fragments, site, namespace), encoding="utf-8")
        click.echo(f"wrote {configmap}")
