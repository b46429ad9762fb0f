#!/usr/bin/env bash
# The hsmvault CLI end to end against a real PostgreSQL and SoftHSM2 token:
# init twice, the first admin key, status, kek rotate + rewrap + disable,
# audit verify and its detection of tampering, --help everywhere, bad
# arguments, the PIN never on the command line, serve's access log, and two
# inits at once.
set -uo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() {
	if [ "${HV_REQUIRE_INTEGRATION:-0}" = 1 ]; then fail "missing: $*"; fi
	echo "SKIP: $*" >&2; exit 77
}
[ -n "${HV_TEST_PG_URL:-}" ] || skip "HV_TEST_PG_URL"
HV="${HV_BUILD_DIR:?}/hsmvault"
[ -x "$HV" ] || fail "no binary $HV"
command -v softhsm2-util >/dev/null || skip "softhsm2-util"

T=$(mktemp -d "${TMPDIR:-/tmp}/hvcli.XXXXXX")
DB="hvt_cli_$$_$RANDOM"
spid=""
cleanup() {
	[ -z "$spid" ] || kill "$spid" 2>/dev/null
	psql "$HV_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
	psql "$HV_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS ${DB}_race WITH (FORCE)" >/dev/null 2>&1
	rm -rf "$T"
}
trap cleanup EXIT
psql "$HV_TEST_PG_URL" -qc "CREATE DATABASE $DB" >/dev/null || fail "create db"
mkdir -p "$T/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$T" >"$T/softhsm2.conf"
export SOFTHSM2_CONF="$T/softhsm2.conf"
softhsm2-util --init-token --free --label clitest --pin 11112222 --so-pin 33334444 >/dev/null || fail "token"
printf '11112222\n' >"$T/pin"
cat >"$T/hv.conf" <<CONF
database_url = $HV_TEST_PG_URL dbname=$DB
keystore = pkcs11
pkcs11_module = /usr/lib/softhsm/libsofthsm2.so
pkcs11_token = pkcs11:token=clitest
pkcs11_pin_file = $T/pin
data = $T
CONF
unset HSMVAULT_PKCS11_PIN
hv() { "$HV" --config "$T/hv.conf" "$@"; }
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); 
for k in sys.argv[1].split("."): d=d[int(k)] if isinstance(d,list) else d[k]
print(d if not isinstance(d,bool) else str(d).lower())' "$1"; }

# --help everywhere, exit 0; unknown command/option is a usage error (2)
hv --help | grep -q "audit verify" || fail "--help"
for c in init migrate serve "apikey create" "apikey list" "apikey revoke" \
	"kek rotate" "kek disable" rewrap "audit verify" status; do
	# shellcheck disable=SC2086
	hv $c --help | grep -q "usage: hsmvault" || fail "$c --help"
done
# a command group's --help names its commands; the bare group is a usage error
hv apikey --help | grep -q "^  revoke" || fail "apikey --help lacks its commands"
hv kek --help | grep -q "^  disable" || fail "kek --help lacks its commands"
hv apikey >/dev/null 2>&1; [ $? -eq 2 ] || fail "bare 'apikey' must exit 2"
hv frobnicate >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown command must exit 2"
hv status --no-such-option=1 >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown option must exit 2"
hv --pkcs11-pin=1 status >/dev/null 2>&1; [ $? -ne 0 ] || fail "pin flag accepted"

# before init: keys missing, a clear error
out=$(hv status 2>&1) && fail "status before init succeeded"
echo "$out" | grep -qi "init" || fail "status before init should say to run init: $out"

hv init >"$T/init1.json" || fail "init"
hv init >"$T/init2.json" || fail "init twice"
hv migrate >/dev/null || fail "migrate after init"

hv apikey create --name admin --scopes admin --key-file "$T/admin.key" >"$T/key.json" || fail "apikey create"
[ "$(stat -c %a "$T/admin.key")" = 600 ] || fail "key file mode"
grep -q '^hv_sk_' "$T/admin.key" || fail "key prefix"
grep -q hv_sk_ "$T/key.json" && fail "key printed although --key-file given"
keyid=$(jget id <"$T/key.json")
hv apikey create --name ro --scopes credentials:read >"$T/ro.json" || fail "apikey create ro"
grep -q '"key": "hv_sk_' "$T/ro.json" || fail "key shown once without --key-file"
hv apikey create --name bad --scopes nosuch:scope >/dev/null 2>&1 && fail "unknown scope accepted"
hv apikey list >"$T/list.json" || fail "apikey list"
grep -q hv_sk_ "$T/list.json" && fail "list shows key material"
grep -q "\"$keyid\"" "$T/list.json" || fail "list lacks the key"
# the CLI is admin: it lists every workspace's keys, --workspace narrows,
# --limit and --cursor page
ws2=$(psql "$HV_TEST_PG_URL dbname=$DB" -qtAc "INSERT INTO workspaces (id, name) VALUES (gen_random_uuid(), 'cli-b') RETURNING id")
hv apikey create --name inb --scopes credentials:read --workspace "$ws2" >"$T/inb.json" || fail "apikey create --workspace"
inb=$(jget id <"$T/inb.json")
hv apikey list >"$T/list2.json" || fail "apikey list (all)"
grep -q "\"$inb\"" "$T/list2.json" || fail "list lacks the other workspace's key"
grep -q "\"$keyid\"" "$T/list2.json" || fail "list lacks the default workspace's key"
hv apikey list --workspace "$ws2" >"$T/list3.json" || fail "apikey list --workspace"
grep -q "\"$inb\"" "$T/list3.json" || fail "--workspace list lacks its key"
grep -q "\"$keyid\"" "$T/list3.json" && fail "--workspace list shows another workspace's key"
hv apikey list --limit 1 >"$T/p1.json" || fail "apikey list --limit 1"
cur=$(jget next_cursor <"$T/p1.json")
[ -n "$cur" ] && [ "$cur" != None ] || fail "no next_cursor with --limit 1"
hv apikey list --limit 1 --cursor "$cur" >"$T/p2.json" || fail "apikey list --cursor"
[ "$(jget items.0.id <"$T/p1.json")" != "$(jget items.0.id <"$T/p2.json")" ] || fail "--cursor did not advance"

hv status >"$T/status.json" || fail "status"
grep -q '"pkcs11"' "$T/status.json" || fail "status backend"

# KEK rotation, rewrap, disable
hv kek rotate >"$T/rot.json" || fail "kek rotate"
hv kek disable 2 >/dev/null 2>&1 && fail "disabling the active kek succeeded"
hv rewrap --batch 10 >"$T/rewrap.json" 2>"$T/rewrap.err" || fail "rewrap"
hv kek disable 1 >/dev/null || fail "disable kek 1 after rewrap"
hv kek disable x >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad kek version must exit 2"

# audit verify: clean, then tampered
hv audit verify >"$T/v1.json" || fail "audit verify on a clean log"
n=$(psql "$HV_TEST_PG_URL dbname=$DB" -tAc "SELECT count(*) FROM audit_log")
[ "$n" -ge 3 ] || fail "expected audit rows, got $n"
victim=$(psql "$HV_TEST_PG_URL dbname=$DB" -tAc "SELECT id FROM audit_log ORDER BY id LIMIT 1 OFFSET 1")
psql "$HV_TEST_PG_URL dbname=$DB" -qc "UPDATE audit_log SET outcome='tampered' WHERE id=$victim" >/dev/null
hv audit verify >"$T/v2.json" 2>/dev/null && fail "audit verify missed an altered row"
grep -q "\"id\": $victim" "$T/v2.json" || fail "verify did not name row $victim: $(cat "$T/v2.json")"

# serve's access log: buffered (access_log_flush_ms), written by the flusher
# on its own, and whatever is left at stop; 0 = one write per line; a bad
# value is refused before serving
serve_up() { # LOG [ENV...]: starts serve in the background; sets spid, port
	local log=$1
	shift
	env HSMVAULT_LISTEN=127.0.0.1:0 "$@" "$HV" --config "$T/hv.conf" serve >/dev/null 2>"$log" &
	spid=$!
	port=""
	for _ in $(seq 1 100); do
		port=$(sed -n 's/.*"hsmvault serving on .* (port \([0-9]*\))".*/\1/p' "$log")
		[ -n "$port" ] && break
		sleep 0.1
	done
	[ -n "$port" ] || { kill "$spid"; cat "$log"; fail "serve did not start"; }
}
lines() { grep -c '"msg":"request"' "$1"; }
wait_line() { # LOG: up to 5 s for one access line
	for _ in $(seq 1 50); do
		[ "$(lines "$1")" -ge 1 ] && return 0
		sleep 0.1
	done
	return 1
}
serve_up "$T/s1.err" HSMVAULT_ACCESS_LOG_FLUSH_MS=5000
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || fail "healthz (flush 5000)"
sleep 0.3
[ "$(lines "$T/s1.err")" = 0 ] || fail "access line written before its flush: $(cat "$T/s1.err")"
kill -TERM "$spid"
wait "$spid" || fail "serve (flush 5000) did not stop cleanly"
[ "$(lines "$T/s1.err")" = 1 ] || fail "access line not written at stop: $(cat "$T/s1.err")"
grep '"msg":"request"' "$T/s1.err" | grep -q '"path":"/healthz","status":200' ||
	fail "access line: $(cat "$T/s1.err")"
for ms in 100 0; do
	serve_up "$T/s2.err" HSMVAULT_ACCESS_LOG_FLUSH_MS=$ms
	curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || fail "healthz (flush $ms)"
	wait_line "$T/s2.err" || { kill "$spid"; fail "access line not written while serving (flush $ms)"; }
	kill -TERM "$spid"
	wait "$spid" || fail "serve (flush $ms) did not stop cleanly"
	[ "$(lines "$T/s2.err")" = 1 ] || fail "flush $ms: $(cat "$T/s2.err")"
done
HSMVAULT_ACCESS_LOG_FLUSH_MS=10001 "$HV" --config "$T/hv.conf" serve >/dev/null 2>"$T/s3.err" &&
	fail "access_log_flush_ms 10001 accepted"

# serve says at start when the search's trigram indexes are missing (pg_trgm
# absent at migration), and not when they are there (s1.err above)
grep -q 'trigram indexes' "$T/s1.err" && fail "index warning with the indexes: $(cat "$T/s1.err")"
psql "$HV_TEST_PG_URL dbname=$DB" -qc "DROP INDEX credentials_notes_trgm" >/dev/null ||
	fail "drop index"
serve_up "$T/s4.err"
kill -TERM "$spid"
wait "$spid" || fail "serve without an index did not stop cleanly"
grep '"level":"warn"' "$T/s4.err" | grep -q '2 of its 3 trigram indexes exist' ||
	fail "no warning without an index: $(cat "$T/s4.err")"
psql "$HV_TEST_PG_URL dbname=$DB" -qc \
	"CREATE INDEX credentials_notes_trgm ON credentials USING gin (lower(notes) gin_trgm_ops)" >/dev/null ||
	fail "index back"
grep -q "access_log_flush_ms too large" "$T/s3.err" || fail "bad flush interval: $(cat "$T/s3.err")"

# two inits at once on an empty token and database: one waits for the other,
# so there is one kek version 1, not one each (the key list warns of a
# duplicate version)
psql "$HV_TEST_PG_URL" -qc "CREATE DATABASE ${DB}_race" >/dev/null || fail "create race db"
softhsm2-util --init-token --free --label clirace --pin 11112222 --so-pin 33334444 >/dev/null || fail "race token"
sed -e "s/dbname=$DB\$/dbname=${DB}_race/" -e "s/token=clitest/token=clirace/" "$T/hv.conf" >"$T/race.conf"
grep -q "dbname=${DB}_race" "$T/race.conf" || fail "race.conf: $(cat "$T/race.conf")"
"$HV" --config "$T/race.conf" init >"$T/r1.out" 2>"$T/r1.err" &
r1=$!
"$HV" --config "$T/race.conf" init >"$T/r2.out" 2>"$T/r2.err" &
r2=$!
wait "$r1" || fail "first of two inits: $(cat "$T/r1.err")"
wait "$r2" || fail "second of two inits: $(cat "$T/r2.err")"
"$HV" --config "$T/race.conf" status >"$T/race-status.json" 2>"$T/race-status.err" || fail "status after two inits"
grep -q "duplicate kek" "$T/race-status.err" && fail "two inits at once made two kek version 1"
grep -q '"active_kek": 1' "$T/race-status.json" || fail "race status: $(cat "$T/race-status.json")"

# the PIN is nowhere in the database
psql "$HV_TEST_PG_URL dbname=$DB" -qc "SELECT 1" >/dev/null
"${HV_TEST_PG_BINDIR:-/usr/lib/postgresql/15/bin}/pg_dump" "$HV_TEST_PG_URL dbname=$DB" >"$T/dump.sql" || fail "pg_dump"
grep -q 11112222 "$T/dump.sql" && fail "pin in dump"
grep -q "$(cat "$T/admin.key")" "$T/dump.sql" && fail "api key in dump"
echo "test_cli: ok"
