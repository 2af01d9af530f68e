"""`lumbar label ...`: the FaLa grading app and its database (`lumbar.labeler`).

Only typer and the standard library are imported here; the stage's modules (and torch,
pydicom, matplotlib, FastAPI with them) are imported when a command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

label_app = typer.Typer(
    help="FaLa: the radiologists' grading web app (Table 3) and its gradings database.",
    no_args_is_help=True,
)


_DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        help="Gradings database: a SQLite file path, or a URL (sqlite:///f.db, postgresql://...).",
    ),
]


@label_app.command("serve")
def label_serve(
    images: Annotated[Path, typer.Option(help="Output folder of `lumbar ingest` (images.csv).")],
    db: _DbOption = "fala.db",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    secure_cookies: Annotated[
        bool | None,
        typer.Option(
            "--secure-cookies/--no-secure-cookies",
            help="Mark cookies Secure; default: when the request came over https.",
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Run folder of `lumbar train`: show its suggestion per disc (never saved).",
        ),
    ] = None,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            metavar="ADDR",
            help="IP address or network of your reverse proxy (repeatable): only requests "
            "coming straight from it have X-Forwarded-For/-Proto believed. Default: none, "
            "the headers are ignored.",
        ),
    ] = None,
) -> None:
    """Serve the grading web app (every page needs a login; see `label add-user`)."""
    from lumbar.inference.predict import Predictor
    from lumbar.labeler.app import serve

    predictor = Predictor.load(model) if model is not None else None
    serve(
        images, db, host=host, port=port, secure_cookies=secure_cookies, model=predictor,
        trusted_proxies=trusted_proxy or (), echo=typer.echo,
    )  # fmt: skip


@label_app.command("add-user")
def label_add_user(
    name: Annotated[str, typer.Argument(help="Login name (letters, digits, . _ -).")],
    role: Annotated[str, typer.Option(help="radiologist or admin.")] = "radiologist",
    db: _DbOption = "fala.db",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an account; the password is prompted (or read from stdin) and stored as argon2."""
    from lumbar.labeler.store import Store

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = Store(db).add_user(name, role, password)
    typer.echo(f"created {user.role} {user.name}")


@label_app.command("agreement")
def label_agreement(
    db: _DbOption = "fala.db",
    weights: Annotated[str, typer.Option(help="linear, quadratic or none.")] = "linear",
    out: Annotated[Path | None, typer.Option(help="Also write the table as CSV.")] = None,
) -> None:
    """Cohen's weighted kappa per field and disc level for each pair of raters."""
    from lumbar.labeler.agreement import agreement_table, write_agreement_csv
    from lumbar.labeler.store import Store

    rows = agreement_table(Store(db, create=False), weights=weights)
    if not rows:
        typer.echo("no two raters graded the same discs yet")
    for r in rows:
        kappa = "undefined" if r.kappa is None else f"{r.kappa:.3f}"
        typer.echo(
            f"{r.rater_a} x {r.rater_b}  {r.field:<10} {r.level:<6} n={r.n:<4} kappa={kappa}"
        )
    if out is not None:
        typer.echo(f"wrote {write_agreement_csv(rows, out, weights)}")


@label_app.command("export")
def label_export(
    out: Annotated[Path, typer.Option(help="table4: a folder; manifest: a CSV file (or folder).")],
    db: _DbOption = "fala.db",
    format: Annotated[str, typer.Option("--format", help="table4 or manifest.")] = "table4",
    rater: Annotated[
        str | None,
        typer.Option(
            help="A rater's name or 'consensus'; default: consensus, else a level's only rater."
        ),
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="Output folder of `lumbar ingest` (manifest only).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a non-empty table4 folder.")
    ] = False,
) -> None:
    """Write gradings as Table 4 CSVs (one per patient) or as a DESIGN.md manifest."""
    from lumbar.labeler.exchange import export_gradings
    from lumbar.labeler.store import Store

    store = Store(db, create=False)
    count = export_gradings(store, out, format=format, rater=rater, images=images, force=force)
    what = "patient file(s)" if format == "table4" else "image row(s)"
    typer.echo(f"wrote {count} {what} to {out}")


@label_app.command("import")
def label_import(
    csv_path: Annotated[
        Path, typer.Argument(metavar="CSV", help="patient_id, level, disc_state, herniation, ...")
    ],
    rater: Annotated[str, typer.Option(help="Whose gradings: a rater's name or 'consensus'.")],
    db: _DbOption = "fala.db",
    by: Annotated[
        str | None, typer.Option(help="Account recorded in the audit trail (default: RATER).")
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="Check patient ids against this ingest output.")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite existing gradings (audited).")
    ] = False,
) -> None:
    """Import existing gradings from a CSV: validated first, then all or nothing."""
    from lumbar.labeler.exchange import import_labels
    from lumbar.labeler.store import Store

    store = Store(db, create=False)
    count = import_labels(store, csv_path, rater=rater, by=by, replace=replace, images=images)
    typer.echo(f"imported {count} grading(s) for {rater}")
