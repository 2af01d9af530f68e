"""`lumbar label ...`: the FaLa grading app and its database (`lumbar.labeler`).

Only typer and the standard library are imported here; the stage's modules (and torch,
pydicom, matplotlib, FastAPI with them) are imported when a command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lumbar.errors import UserError

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
) -> None:
    """Serve the grading web app (every page needs a login; see `label add-user`)."""
    import logging

    import uvicorn

    from lumbar.labeler.app import create_app
    from lumbar.labeler.catalog import load_catalog
    from lumbar.labeler.store import Store

    catalog = load_catalog(images)
    suggestions = _label_suggestions(model, catalog) if model is not None else None
    store = Store(db)
    if not store.users():
        typer.echo("note: no accounts yet; create one: lumbar label add-user NAME --role admin")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    typer.echo(f"FaLa: {len(catalog.patients)} patients; open http://{shown}:{port}/")
    app_ = create_app(store, catalog, secure_cookies=secure_cookies, suggestions=suggestions)
    uvicorn.run(app_, host=host, port=port, proxy_headers=True, log_level="info")


def _label_suggestions(model: Path, catalog: Any) -> Any:
    """Load `model` for the grading app and try it on one patient now, not at the first page.

    Raises:
        UserError: not a loadable run folder, or its model fails on this catalog's images.
    """
    from lumbar.inference.predict import Predictor
    from lumbar.labeler.suggestions import Suggestions

    suggestions = Suggestions(Predictor.load(model), catalog)
    first = next(iter(catalog.patients), None)
    if first is not None:
        try:
            suggestions.for_patient(first)
        except Exception as err:  # a wrong-shaped model, unreadable images: say so at start-up
            reason = (str(err).splitlines() or [""])[0]
            raise UserError(
                f"--model {model}: the model fails on the images of {first}: "
                f"{type(err).__name__}: {reason}"
            ) from err
    typer.echo(f"model suggestions from {model.name} (shown as AI suggestions, never saved)")
    return suggestions


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
    import csv
    import io

    from lumbar.files import write_text_atomic
    from lumbar.labeler.agreement import WEIGHTS, agreement_table
    from lumbar.labeler.store import Store

    if weights not in WEIGHTS:
        raise UserError(f"--weights must be one of {', '.join(WEIGHTS)}")
    rows = agreement_table(Store(db, create=False), weights=weights)
    if not rows:
        typer.echo("no two raters graded the same discs yet")
    for r in rows:
        kappa = "undefined" if r.kappa is None else f"{r.kappa:.3f}"
        typer.echo(
            f"{r.rater_a} x {r.rater_b}  {r.field:<10} {r.level:<6} n={r.n:<4} kappa={kappa}"
        )
    if out is not None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["rater_a", "rater_b", "field", "level", "n", "kappa", "weights"])
        for r in rows:
            kappa = "" if r.kappa is None else f"{r.kappa:.6f}"
            writer.writerow([r.rater_a, r.rater_b, r.field, r.level, r.n, kappa, weights])
        write_text_atomic(out, buffer.getvalue())
        typer.echo(f"wrote {out}")


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
    from lumbar.labeler.exchange import export_manifest, export_table4
    from lumbar.labeler.store import Store

    store = Store(db, create=False)
    if format == "table4":
        count = export_table4(store, out, rater=rater, force=force)
        typer.echo(f"wrote {count} patient file(s) to {out}")
    elif format == "manifest":
        if images is None:
            raise UserError("--format manifest needs --images INGEST_OUT (the images it lists)")
        from lumbar.labeler.catalog import load_catalog

        count = export_manifest(store, load_catalog(images), out, rater=rater)
        typer.echo(f"wrote {count} image row(s) to {out}")
    else:
        raise UserError(f"--format must be table4 or manifest, not {format!r}")


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

    patients = None
    if images is not None:
        from lumbar.labeler.catalog import load_catalog

        patients = set(load_catalog(images).patients)
    count = import_labels(
        Store(db, create=False), csv_path, rater=rater, by=by, replace=replace, patients=patients
    )
    typer.echo(f"imported {count} grading(s) for {rater}")
