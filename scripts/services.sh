#!/usr/bin/env bash
# Installs (Debian) and starts what the full test suite uses: PostgreSQL, a Docker
# engine and headless Chromium. Safe to run again: what is installed or running is left
# as it is. Prints the environment variables the tests read.
#
#   eval "$(scripts/services.sh)"   # then: cargo nextest run
set -euo pipefail

log() { echo "services: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

packages=()
command -v pg_ctlcluster >/dev/null 2>&1 || packages+=(postgresql)
command -v dockerd >/dev/null 2>&1 || packages+=(docker.io)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
command -v debootstrap >/dev/null 2>&1 || packages+=(debootstrap)
command -v docker-registry >/dev/null 2>&1 || packages+=(docker-registry)
command -v jupyter-nbconvert >/dev/null 2>&1 || packages+=(jupyter-nbconvert)
command -v jupyter-execute >/dev/null 2>&1 || packages+=(python3-nbclient python3-ipykernel)
command -v curl >/dev/null 2>&1 || packages+=(curl)
command -v iptables >/dev/null 2>&1 || packages+=(iptables)
command -v git >/dev/null 2>&1 || packages+=(git)
if [ "${#packages[@]}" -gt 0 ]; then
    log "installing ${packages[*]}"
    as_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${packages[@]}" >&2
fi

# PostgreSQL: the first cluster, started, with a password for TCP logins.
pg_version=$(pg_lsclusters -h | awk 'NR==1 {print $1}')
pg_cluster=$(pg_lsclusters -h | awk 'NR==1 {print $2}')
if [ -z "$pg_version" ]; then
    pg_version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    as_root pg_createcluster "$pg_version" main >&2
    pg_cluster=main
fi
if ! pg_lsclusters -h | awk -v v="$pg_version" -v c="$pg_cluster" '$1==v && $2==c {print $4}' | grep -q online; then
    log "starting PostgreSQL $pg_version/$pg_cluster"
    as_root pg_ctlcluster "$pg_version" "$pg_cluster" start >&2
fi
pg_port=$(pg_lsclusters -h | awk -v v="$pg_version" -v c="$pg_cluster" '$1==v && $2==c {print $3}')
for _ in $(seq 1 30); do
    as_root su postgres -c "psql -p $pg_port -qAtc 'SELECT 1'" >/dev/null 2>&1 && break
    sleep 1
done
as_root su postgres -c "psql -p $pg_port -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null

# Docker engine.
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    as_root sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/dockerd.log"; exit 1; }
fi

# The isolated network environment builds can run on (docs/security.md).
"$(dirname "$0")/build-network" >&2

echo "export NBFORGE_TEST_POSTGRES_URL=postgres://postgres:postgres@127.0.0.1:$pg_port/postgres"
echo "export NBFORGE_TEST_CHROMIUM=$(command -v chromium)"

# Extra CA certificates of this machine (TLS-intercepting networks): trusted in images.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    ca_dir="${XDG_CACHE_HOME:-$HOME/.cache}/nbforge"
    mkdir -p "$ca_dir"
    cat /usr/local/share/ca-certificates/*.crt > "$ca_dir/extra-ca.pem"
    echo "export NBFORGE_EXTRA_CA_CERTS=$ca_dir/extra-ca.pem"
fi
