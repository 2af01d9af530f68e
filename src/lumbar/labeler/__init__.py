"""FaLa: the radiologists' grading web app (paper section 3.1.3, Tables 3-4).

`catalog` reads the ingest output, `app` builds the FastAPI application, `exchange` exports and
imports gradings, `agreement` computes Cohen's weighted kappa. The database lives in
`lumbar.labeler.store`. Importing this package does not import FastAPI.

Running it on a department network:

    lumbar label add-user alice --role admin --db /srv/fala/fala.db      # password prompted
    lumbar label serve --images INGEST_OUT --db /srv/fala/fala.db --host 127.0.0.1 --port 8000 \
        --trusted-proxy 127.0.0.1

and put an https reverse proxy (nginx, Caddy) in front, forwarding `X-Forwarded-Proto` and
`X-Forwarded-For`: cookies are then marked Secure automatically (or force it with
`--secure-cookies`), and the failed-login throttle counts the real client's address. These
headers are believed only from the addresses given with `--trusted-proxy` (none by default:
without it any client could name its own address and escape the throttle). One server process
serialises SQLite writes without lock waits; for many more raters use PostgreSQL
(`--db postgresql://user@host/fala`, `pip install lumbar[postgres]`). Only `/login` and the
static CSS/JS are reachable without a session; images are served by (patient, index) from
`images.csv`: only the regular files found there at start-up, inside the images folder, reached
without following links (restart the app after re-ingesting into its folder).
"""
