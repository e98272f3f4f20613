"""Creates the two kintone apps (permission sets, assignments) through kintone's app-management REST API.

    python -m idc_sync.kintone_setup --url https://<subdomain>.cybozu.com --username admin \\
        --password-env KINTONE_PASSWORD [--space 12]

Why a command: the field codes and types are a contract with the pipeline (``SyncConfig`` field codes);
creating the apps by hand from a table invites typos that only show up as per-record problems later.

What it does, in kintone's own order: create the permission sets app in the preview environment, add its
fields, deploy it and wait; then the assignments app, whose ``permission_set`` LOOKUP needs the permission
sets app id (and a *deployed* key field), the same way. The app-management API needs password
authentication by a user allowed to create apps (API tokens cannot create apps).

What it cannot do: create API tokens. kintone's REST API has no endpoint for API token settings (the
app-settings API covers general settings, process management, plugins, customisation, notifications,
permissions, actions, space and deploy, but not tokens), so the command prints the UI steps instead.
The password is read from an environment variable, never from the command line (it would show in ``ps``
and shell history), and is never printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from idc_sync.kintone_apps import APP_KEYS, load_app_definition
from idc_sync.kintone_client import KintoneClient, KintoneError

log = logging.getLogger(__name__)

TOKEN_PERMISSIONS = {
    "permission_sets": "View records",
    "assignments": "View records",
}


def create_apps(
    client: KintoneClient,
    *,
    space: str | int | None = None,
    thread: str | int | None = None,
    name_prefix: str = "",
    deploy_timeout: float = 120.0,
    say: Callable[[str], None] = log.info,
) -> dict[str, str]:
    """Creates and deploys both apps; returns ``{"permission_sets": id, "assignments": id}``.

    ``space`` puts the apps in a kintone space (its default thread unless ``thread`` is given).
    """
    if space is not None and thread is None:
        thread = client.get_space(space).get("defaultThread")
    ids: dict[str, str] = {}
    ps_id: str | None = None
    for key in APP_KEYS:  # permission sets first: the assignments LOOKUP points at it
        definition = load_app_definition(key, permission_sets_app_id=ps_id)
        name = f"{name_prefix}{definition['name']}"
        app_id = client.create_preview_app(name, space=space, thread=thread)
        say(f"created app {app_id} ({name}) in the preview environment")
        client.add_form_fields(app_id, definition["properties"])
        say(f"added {len(definition['properties'])} fields to app {app_id}")
        client.deploy_apps([app_id])
        client.wait_for_deploy([app_id], timeout=deploy_timeout)
        say(f"deployed app {app_id}")
        ids[key] = app_id
        if key == "permission_sets":
            ps_id = app_id
    return ids


def next_steps(base_url: str, ids: dict[str, str]) -> str:
    ps, asg = ids["permission_sets"], ids["assignments"]
    return f"""
Created:
  permission sets app: {ps}   {base_url}/k/{ps}/
  assignments app:     {asg}   {base_url}/k/{asg}/

Next steps (kintone's REST API cannot create API tokens; do this in the kintone UI):
  1. In each app: App settings > Customization and integration > API token > Generate,
     tick only "{TOKEN_PERMISSIONS["permission_sets"]}" (enough to read records, read the form and post
     comments), Save, then "Update app".
  2. Keep record comments enabled (App settings > Advanced settings): idc-sync reports problems there.
  3. Create the Airflow connection (HTTP) for kintone: host = {base_url},
     extra = {{"tokens": {{"{ps}": "<permission sets token>", "{asg}": "<assignments token>"}}}}.
  4. Set the idc_sync configuration: {{"permission_sets_app_id": "{ps}", "assignments_app_id": "{asg}"}}
     (Airflow Variable idc_sync_config), and user_name_template if kintone user codes differ from IdC UserNames.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m idc_sync.kintone_setup",
        description="Create the idc-sync kintone apps (permission sets, assignments) in a kintone domain.",
    )
    parser.add_argument("--url", required=True, help="kintone domain URL, e.g. https://example.cybozu.com")
    parser.add_argument(
        "--username", "--user", required=True, help="login name of a user who may create apps"
    )
    parser.add_argument(
        "--password-env",
        default="KINTONE_PASSWORD",
        help="name of the environment variable holding the password (default KINTONE_PASSWORD)",
    )
    parser.add_argument("--space", help="space id to create the apps in (optional)")
    parser.add_argument("--thread", help="thread id in the space (default: the space's default thread)")
    parser.add_argument("--name-prefix", default="", help="prefix for the app names, e.g. 'TEST '")
    parser.add_argument(
        "--language", default="en", choices=["en", "ja", "zh"], help="language of error messages"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")

    password = os.environ.get(args.password_env)
    if not password:
        print(f"error: set the password in the environment variable {args.password_env}", file=sys.stderr)
        return 2
    client = KintoneClient(args.url, username=args.username, password=password, language=args.language)
    try:
        ids = create_apps(
            client, space=args.space, thread=args.thread, name_prefix=args.name_prefix, say=print
        )
    except KintoneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.is_auth_error:
            print("check the login name and password (and that the user may create apps)", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(next_steps(client.base_url, ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
