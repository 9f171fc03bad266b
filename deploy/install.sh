#!/usr/bin/env bash
# Install or upgrade MUTT on this host as systemd services. Re-runnable: every step checks first.
#
#   deploy/install.sh [--source DIR] [--wheel FILE] [--no-migrate] [--no-enable]
#
#   --source DIR   the release tree (default: the tree this script is in); it supplies the deploy
#                  files, the docs and the Alembic migrations, and the package unless --wheel is given
#   --wheel FILE   install this wheel (built with `pip wheel .`) instead of building from --source
#   --no-migrate   skip `mutt db upgrade` (e.g. /etc/mutt/mutt.env is not filled in yet)
#   --no-enable    install the units but do not enable mutt.target
#
# What it does: user and group mutt; /opt/mutt/venv (python3 -m venv); /etc/mutt (mutt.env from
# deploy/mutt.env.example, only if absent; gunicorn configs); the nginx sites in /etc/nginx/conf.d
# when nginx is installed; /var/lib/mutt; the units in /etc/systemd/system; `mutt db upgrade` as
# user mutt. It never starts or restarts a service: after an upgrade, `systemctl restart
# mutt.target` (docs/runbook.md, "Upgrade").
set -euo pipefail

PREFIX=/opt/mutt
VENV="$PREFIX/venv"
ETC=/etc/mutt
DATA=/var/lib/mutt
UNIT_DIR=/etc/systemd/system
PYTHON=${PYTHON:-python3}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(dirname "$script_dir")
wheel=""
migrate=1
enable=1

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "==> $*"; }

while (($#)); do
    case "$1" in
        --source) source_dir=${2:?--source needs a directory}; shift 2 ;;
        --wheel) wheel=${2:?--wheel needs a file}; shift 2 ;;
        --no-migrate) migrate=0; shift ;;
        --no-enable) enable=0; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

[[ $EUID -eq 0 ]] || die "run as root (it creates a user and writes /etc, /opt and /var/lib)"
source_dir=$(cd "$source_dir" && pwd)
[[ -f "$source_dir/alembic.ini" && -d "$source_dir/alembic" ]] \
    || die "$source_dir is not a MUTT release tree (no alembic.ini / alembic/)"
[[ -z "$wheel" || -f "$wheel" ]] || die "no such wheel: $wheel"
# The dashboard's Chart.js is fetched from npm by .ci/bootstrap, not kept in git.
[[ -n "$wheel" || -f "$source_dir/mutt_app/web/static/vendor/chart.umd.js" ]] \
    || die "$source_dir has no mutt_app/web/static/vendor/chart.umd.js: run bash .ci/bootstrap there first"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is older than 3.11 (set PYTHON=/path/to/python3.11)"

say "user and group mutt"
getent group mutt >/dev/null || groupadd --system mutt
if ! getent passwd mutt >/dev/null; then
    useradd --system --gid mutt --home-dir "$DATA" --no-create-home \
        --shell /usr/sbin/nologin --comment "MUTT services" mutt
fi

say "directories"
install -d -o root -g root -m 0755 "$PREFIX"
install -d -o root -g mutt -m 0750 "$ETC" "$ETC/gunicorn"
install -d -o root -g mutt -m 0750 "$ETC/secrets"
# Ingest's TLS certificate and key (nginx reads them as root at start; gunicorn, with INGEST_TLS_*,
# as group mutt: key files 0640 root:mutt).
install -d -o root -g mutt -m 0750 "$ETC/certs"
# The services write only here (ProtectSystem=strict, ReadWritePaths=/var/lib/mutt).
install -d -o mutt -g mutt -m 0750 "$DATA" "$DATA/archive"

say "virtualenv $VENV"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if [[ -n "$wheel" ]]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade --force-reinstall --no-cache-dir "$wheel"
else
    "$VENV/bin/python" -m pip install --quiet --upgrade --no-cache-dir "$source_dir"
fi
# mutt_app.db.engine looks for alembic.ini and alembic/ next to the mutt_app package, and the wheel does not
# carry them: put this release's migrations there, replacing the previous release's.
site_dir=$("$VENV/bin/python" -c 'import mutt_app, pathlib; print(pathlib.Path(mutt_app.__file__).resolve().parent.parent)')
rm -rf "$site_dir/alembic"
cp -r "$source_dir/alembic" "$site_dir/alembic"
install -m 0644 "$source_dir/alembic.ini" "$site_dir/alembic.ini"
find "$site_dir/alembic" -name __pycache__ -prune -exec rm -rf {} +

say "docs and deploy files in $PREFIX"
rm -rf "$PREFIX/deploy" "$PREFIX/docs"
cp -r "$source_dir/deploy" "$PREFIX/deploy"
if [[ -d "$source_dir/docs" ]]; then cp -r "$source_dir/docs" "$PREFIX/docs"; fi

say "configuration in $ETC"
# Operator-owned files are installed once; a newer example lands next to them for comparison.
fresh_env=0
install_config() {  # source target mode
    if [[ -e "$2" ]]; then
        install -o root -g mutt -m "$3" "$1" "$2.dist"
    else
        install -o root -g mutt -m "$3" "$1" "$2"
        echo "    created $2"
    fi
}
[[ -e "$ETC/mutt.env" ]] || fresh_env=1
install_config "$source_dir/deploy/mutt.env.example" "$ETC/mutt.env" 0640
install_config "$source_dir/deploy/gunicorn/ingest.conf.py" "$ETC/gunicorn/ingest.conf.py" 0644
install_config "$source_dir/deploy/gunicorn/web.conf.py" "$ETC/gunicorn/web.conf.py" 0644

# gunicorn listens on loopback behind nginx, which reads each request whole first (slow clients
# hold an nginx connection, not a gunicorn thread): the sites go where Debian's nginx.conf includes them.
nginx_sites=0
if [[ -d /etc/nginx/conf.d ]]; then
    say "nginx sites in /etc/nginx/conf.d"
    for site in mutt-ingest mutt-web; do
        install_config "$source_dir/deploy/nginx/$site.conf" "/etc/nginx/conf.d/$site.conf" 0644
    done
    chown root:root /etc/nginx/conf.d/mutt-*.conf*
    nginx_sites=1
else
    echo "    nginx is not installed: ingest and web listen on loopback only until it is"
    echo "    (apt-get install nginx, then run this again; docs/runbook.md, \"Slow clients\")"
fi

say "systemd units"
for unit in "$source_dir"/deploy/systemd/*.service "$source_dir"/deploy/systemd/*.target; do
    install -o root -g root -m 0644 "$unit" "$UNIT_DIR/$(basename "$unit")"
done
# The classify worker is MUTT_CLASSIFY_CONCURRENCY solo-pool processes, mutt-worker-classify@1..N,
# which mutt-worker-classify.service wants (the last setting in mutt.env wins, as systemd reads it).
classify=$(sed -n 's/^[[:space:]]*MUTT_CLASSIFY_CONCURRENCY=["'\'']\{0,1\}\([0-9]*\).*/\1/p' "$ETC/mutt.env" | tail -n 1)
classify=${classify:-4}
((classify >= 1)) || die "MUTT_CLASSIFY_CONCURRENCY in $ETC/mutt.env must be 1 or more"
mkdir -p "$UNIT_DIR/mutt-worker-classify.service.d"
{
    echo "# Written by deploy/install.sh from MUTT_CLASSIFY_CONCURRENCY=$classify in $ETC/mutt.env."
    echo "[Unit]"
    for ((i = 1; i <= classify; i++)); do echo "Wants=mutt-worker-classify@$i.service"; done
} >"$UNIT_DIR/mutt-worker-classify.service.d/instances.conf"
echo "    classify worker: $classify processes (mutt-worker-classify@1..$classify)"
if [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    if ((enable)); then
        systemctl enable mutt.target mutt-ingest.service mutt-web.service \
            mutt-worker-classify.service mutt-worker-forward.service mutt-beat.service \
            mutt-flower.service
    fi
else
    echo "    systemd is not running here: units copied, not enabled"
fi

if ((migrate && fresh_env)); then
    # The example points at db.example.net: migrating now could only fail.
    echo "    $ETC/mutt.env was just created from the example: fill it in, then run this again"
elif ((migrate)); then
    say "database migrations (mutt db upgrade)"
    # As the service user with the services' settings, so a file the embedded default creates
    # belongs to mutt. `set -a` exports every KEY=value of the env file.
    # shellcheck disable=SC2016  # $0/$1 are expanded by the inner shell, on purpose
    runuser -u mutt -- env -i PATH=/usr/bin:/bin HOME="$DATA" MUTT_DATA_DIR="$DATA" \
        bash -c 'set -a; . "$1"; set +a; cd "$2"; exec "$3" db upgrade' \
        mutt-db-upgrade "$ETC/mutt.env" "$DATA" "$VENV/bin/mutt"
fi

version=$("$VENV/bin/mutt" --version 2>/dev/null || echo "mutt (version unknown)")
say "installed $version"
echo "    next: edit $ETC/mutt.env, then: systemctl restart mutt.target"
if ((nginx_sites)); then echo "    and: nginx -t && systemctl reload nginx"; fi
