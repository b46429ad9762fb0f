# ci/lib.sh: shared shell functions of ci/test, ci/quickstart and bench/run.
# Source it; every function prints what it does on stderr.

HV_PG_BIN=${HV_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
HV_SOFTHSM_MODULE=${HV_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}

hv_say() { printf '==> %s\n' "$*" >&2; }

# Debian packages hsmvault needs to build, test and run.
HV_DEB_PACKAGES="build-essential cmake pkg-config git ca-certificates
 libp11-kit-dev p11-kit softhsm2 opensc libpq-dev postgresql postgresql-contrib
 libssl-dev openssl libjansson-dev libcurl4-openssl-dev libmicrohttpd-dev
 libtss2-dev swtpm swtpm-tools tpm2-tools libcmocka-dev clang libclang-rt-14-dev
 procps iproute2 curl wrk clang-format
 libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus"

# Install whatever of HV_DEB_PACKAGES (plus "$@") is missing.
hv_install_deps() {
	local missing="" p
	for p in $HV_DEB_PACKAGES "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	hv_say "installing:$missing"
	local sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq >&2 || return 1
	# shellcheck disable=SC2086
	$sudo apt-get install -y -qq --no-install-recommends $missing >&2 || return 1
	HV_PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
}

# hv_pg_start DIR: a private PostgreSQL cluster in DIR, listening on a unix
# socket in DIR/sock only. Sets HV_PG_URL. initdb refuses root, so when
# root, the cluster belongs to the postgres user.
hv_pg_start() {
	local dir=$1 run=""
	mkdir -p "$dir/sock"
	if [ "$(id -u)" -eq 0 ]; then
		chown -R postgres: "$dir"
		chmod 0755 "$dir"
		run="runuser -u postgres --"
	fi
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		hv_say "initdb $dir/data"
		$run "$HV_PG_BIN/initdb" -D "$dir/data" -U postgres -A trust \
			--no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
			{ cat "$dir/initdb.log" >&2; return 1; }
	fi
	hv_say "starting PostgreSQL in $dir"
	$run "$HV_PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w -t 60 \
		-o "-c listen_addresses='' -k $dir/sock -c max_connections=300 -c fsync=on -c synchronous_commit=on" \
		start >&2 || { cat "$dir/pg.log" >&2; return 1; }
	HV_PG_URL="host=$dir/sock user=postgres dbname=postgres"
	export HV_PG_URL
}

hv_pg_stop() {
	local dir=$1 run=""
	[ -f "$dir/data/postmaster.pid" ] || return 0
	[ "$(id -u)" -eq 0 ] && run="runuser -u postgres --"
	hv_say "stopping PostgreSQL in $dir"
	$run "$HV_PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
}

# hv_softhsm_token DIR LABEL PIN SOPIN: a SoftHSM2 token under DIR with its
# own SOFTHSM2_CONF (exported). Reuses an existing token of that label.
hv_softhsm_token() {
	local dir=$1 label=$2 pin=$3 sopin=$4
	mkdir -p "$dir/tokens"
	cat >"$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
CONF
	export SOFTHSM2_CONF="$dir/softhsm2.conf"
	if softhsm2-util --show-slots 2>/dev/null | grep -qE "^ *Label: +$label *\$"; then
		return 0
	fi
	hv_say "creating SoftHSM2 token '$label' in $dir"
	softhsm2-util --init-token --free --label "$label" --pin "$pin" \
		--so-pin "$sopin" >/dev/null
}

# hv_swtpm_start DIR PORT: swtpm on 127.0.0.1:PORT (control PORT+1).
hv_swtpm_start() {
	local dir=$1 port=$2
	mkdir -p "$dir"
	hv_say "starting swtpm on 127.0.0.1:$port"
	swtpm socket --tpm2 --tpmstate dir="$dir" \
		--server type=tcp,port="$port",bindaddr=127.0.0.1 \
		--ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
		--flags not-need-init,startup-clear \
		--pid file="$dir/swtpm.pid" --log file="$dir/swtpm.log" \
		--daemon || return 1
	HV_TPM_TCTI="swtpm:host=127.0.0.1,port=$port"
	export HV_TPM_TCTI
}

hv_swtpm_stop() {
	local dir=$1
	[ -f "$dir/swtpm.pid" ] || return 0
	hv_say "stopping swtpm"
	kill "$(cat "$dir/swtpm.pid")" 2>/dev/null || true
	rm -f "$dir/swtpm.pid"
}

# A free TCP port pair (P, P+1) on loopback, below the kernel's ephemeral
# range, so that no outgoing connection of a parallel test can take it
# between this check and the bind.
hv_free_port() {
	local p lo=20000 hi
	hi=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	[ "$hi" -gt $((lo + 1000)) ] 2>/dev/null || hi=32768
	for _ in $(seq 1 50); do
		p=$((lo + RANDOM % (hi - lo - 1)))
		if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q . &&
			! ss -Hltn "sport = :$((p + 1))" 2>/dev/null | grep -q .; then
			echo "$p"
			return 0
		fi
	done
	return 1
}
