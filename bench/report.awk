# bench/report.awk: the markdown report of bench/run (docs/performance.md).
#
#   awk -F'\t' -v conns="1 4 16 64" -v threads=4 -v sessions=4 -v cores=2 \
#       -f bench/report.awk http.tsv pgb.tsv ratio.tsv token.tsv mem.tsv \
#       memcheck.tsv
#
# http.tsv  label conns rps p50_ms p99_ms max_ms non2xx sockerr server_us
#           pg_us wrk_us busy rss_kb in_p50_ms in_p99_ms   (one wrk run)
# pgb.tsv   op conns tps latency_ms pg_us client_us p50_ms p99_ms
#           (one pgbench run)
# ratio.tsv op conns median min max pairs   (wrk over pgbench, paired by
#           round; when present, the pgbench ratios are these medians)
# token.tsv kind op threads procs rate   (raw | hsm.h | open)
# mem.tsv   label requests rss_kb
# memcheck.tsv  tool requests non2xx errors definitely_lost_bytes verdict
#           conns   (one checked server: asan+ubsan | valgrind)

FILENAME ~ /http\.tsv$/ {
	k = $1 "," $2
	rps[k] = $3; p50[k] = $4; p99[k] = $5; mx[k] = $6; bad[k] = $7 + $8
	srv[k] = $9; pgc[k] = $10; wrk[k] = $11; busy[k] = $12; rss[k] = $13
	if ($15 > 0) { in50[k] = $14; in99[k] = $15 }
	if (!($1 in seen)) { seen[$1] = 1; order[++nops] = $1 }
	next
}
FILENAME ~ /pgb\.tsv$/ {
	k = $1 "," $2
	tps[k] = $3; plat[k] = $4; ppg[k] = $5; pcl[k] = $6; pp50[k] = $7; pp99[k] = $8
	if (!($1 in pseen)) { pseen[$1] = 1; porder[++npops] = $1 }
	next
}
FILENAME ~ /ratio\.tsv$/ {
	k = $1 "," $2
	pr[k] = $3; prlo[k] = $4; prhi[k] = $5; prn[k] = $6
	next
}
FILENAME ~ /token\.tsv$/ {
	tk[$1 "," $2 "," $3 "," $4] = $5
	# the text promises the best single-process rate: procs ($4) = 1
	if ($1 == "raw" && $4 == 1 && $5 > tokbest[$2]) tokbest[$2] = $5
	next
}
FILENAME ~ /memcheck\.tsv$/ { mc[++nmc] = $0; next }
FILENAME ~ /mem\.tsv$/ { mem[++nmem] = $0; next }

# A group commit table: op's defaults (op-g1) against the server with
# that group commit off (off), and the ratio to op's pgbench ceiling.
function group_table(title, op, off, intro, unit, offname,    n, i, G, x, k) {
	print ""
	print "### " title " (16 connections)"
	print ""
	print intro
	print ""
	print "| server | " unit " | p50 ms | p99 ms | server + PostgreSQL CPU µs | × pgbench |"
	print "|---|---:|---:|---:|---:|---:|"
	n = split(op "-g1:defaults (1 writer);" off ":" offname, G, ";")
	for (i = 1; i <= n; i++) {
		split(G[i], x, ":")
		k = x[1] ",16"
		printf "| %s | %.0f | %.2f | %.2f | %.0f + %.0f | %s |\n", x[2], rps[k],
		    p50[k], p99[k], srv[k], pgc[k],
		    ((op ",16" in tps) && tps[op ",16"] > 0 ? sprintf("%.2f", rps[k] / tps[op ",16"]) : "–")
	}
}

# "p50 / p99" in the server of run k, or "–"
function inlat(k) { return (k in in99) ? sprintf("%.2f / %.2f", in50[k], in99[k]) : "–" }
# the median paired ratio of k, with the lowest and highest of its rounds
function pratio(k) {
	if (prn[k] < 2) return sprintf("%.2f", pr[k])
	return sprintf("%.2f (%.2f–%.2f)", pr[k], prlo[k], prhi[k])
}
function f0(x) { return x == "" ? "–" : sprintf("%.0f", x) }
function f2(x) { return x == "" ? "–" : sprintf("%.2f", x) }
function has(k) { return k in rps }
# "req/s (p99 ms)" of run k, or "–"; never creates rps[k] (has() stays true)
function rp(k) { return has(k) ? sprintf("%.0f (%.2f)", rps[k], p99[k]) : "–" }
# key store operations one request of op needs, in sequence
function tokops(op, cached) {
	if (op == "create") return 3		# random (DEK), wrap, hmac (audit)
	if (op ~ /^(reveal|use)/) return cached ? 1 : 2	# unwrap?, hmac
	if (op == "get-keymiss") return 1	# hmac of the key
	return 0
}
function tokceil(op,   x) {
	if (!("hmac" in tokbest) || !("unwrap" in tokbest))
		return ""	# no token phase in this run
	if (op == "create")
		x = 1 / tokbest["random"] + 1 / tokbest["wrap"] + 1 / tokbest["hmac"]
	else if (op ~ /^(reveal|use)/)
		x = 1 / tokbest["unwrap"] + 1 / tokbest["hmac"]
	else if (op == "get-keymiss")
		x = 1 / tokbest["hmac"]
	else
		return ""
	return 1 / x
}
function base(op) { sub(/-.*/, "", op); return op }
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "–" : sprintf("%.2f", a / b) }
function min2(a, b) { return a < b ? a : b }

# rank of a label in the tables: the five operations, their paced runs,
# then the rest, each group in the order the run measured them (paced
# runs of get..use are measured before the creates, on the seeded data)
function rank(op) {
	if (op ~ /^(get|list|reveal|use|create)$/) return 0
	return op ~ /-paced$/ ? 1 : 2
}

END {
	nc = split(conns, C, " ")
	nsorted = 0
	for (rk = 0; rk <= 2; rk++)
		for (i = 1; i <= nops; i++)
			if (rank(order[i]) == rk) sorted[++nsorted] = order[i]
	for (i = 1; i <= nops; i++) order[i] = sorted[i]

	print "### Throughput, latency and cost per request (wrk)"
	print ""
	print "Latency as wrk saw it (p50, p99, max), and in the server (*in server*: from the server's access log, first call of the request handler to the answer sent, so without the wait for a worker thread, the network and wrk's own scheduling). CPU is per request, from /proc/<pid>/stat: the server process, every PostgreSQL process of the cluster, and wrk itself; *busy* is the share of both cores in use during the run (anything else running on the machine included)."
	print ""
	print "| operation | conns | req/s | p50 ms | p99 ms | max ms | in server p50 / p99 ms | non-2xx | server CPU µs | PostgreSQL CPU µs | wrk CPU µs | busy | RSS MiB |"
	print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= nops; i++) {
		op = order[i]
		if (op == "mhd-empty") continue
		for (j = 1; j <= nc + 1; j++) {
			c = j <= nc ? C[j] : 16
			k = op "," c
			if (!has(k) || (k in shown)) continue
			shown[k] = 1
			printf "| %s | %d | %.0f | %.2f | %.2f | %.1f | %s | %d | %.0f | %.0f | %.0f | %.0f%% | %.1f |\n",
			    op, c, rps[k], p50[k], p99[k], mx[k], inlat(k), bad[k],
			    srv[k], pgc[k], wrk[k], busy[k] * 100, rss[k] / 1024
		}
	}

	print ""
	print "### Ratios to the ceilings"
	print ""
	print "pgbench: the same statements on the same cluster and connection count (bench/run explains the scripts); measured in rounds, each right after the operation, its ratio is the median of the rounds' paired ratios (lowest–highest in brackets), which need not be the quotient of the two medians shown. Empty MHD: hv-httpd0 at the same connection count. Key store: the best raw PKCS#11 single-process rate of the operations one request needs, one after the other."
	print ""
	print "| operation | conns | req/s | pgbench same SQL | ratio | empty MHD handler | ratio | key store ceiling | ratio |"
	print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= nops; i++) {
		op = order[i]
		# paced runs are throttled on purpose, and the group phase's
		# servers are not the defaults: neither has a meaningful ceiling
		if (op == "mhd-empty" || op == "healthz" || op ~ /^tpm/ ||
		    op ~ /-(paced|g[0-9]+)$/) continue
		for (j = 1; j <= nc; j++) {
			c = C[j]; k = op "," c
			if (!has(k)) continue
			pk = base(op) "," c
			pt = (pk in tps) ? tps[pk] : ""
			mk = "mhd-empty," c
			mt = (mk in rps) ? rps[mk] : ""
			tc = tokceil(op)
			printf "| %s | %d | %.0f | %s | %s | %s | %s | %s | %s |\n", op, c,
			    rps[k], f0(pt), (k in pr) ? pratio(k) : ratio(rps[k], pt),
			    f0(mt), ratio(rps[k], mt), f0(tc), ratio(rps[k], tc)
		}
	}

	print ""
	print "### Ceilings"
	print ""
	print "p50 and p99 from pgbench's per-transaction log (`-l`): the same closed loop as wrk's at the same number of clients."
	print ""
	print "| pgbench script | conns | tps | avg latency ms | p50 ms | p99 ms | PostgreSQL CPU µs/txn | pgbench CPU µs/txn |"
	print "|---|---:|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= npops; i++)
		for (j = 1; j <= nc; j++) {
			k = porder[i] "," C[j]
			if (k in tps)
				printf "| %s | %d | %.0f | %s | %s | %s | %.0f | %.0f |\n", porder[i], C[j],
				    tps[k], plat[k], f2(pp50[k]), f2(pp99[k]), ppg[k], pcl[k]
		}
	print ""
	print "| empty libmicrohttpd handler | conns | req/s | p50 ms | p99 ms | its CPU µs/req | wrk CPU µs/req |"
	print "|---|---:|---:|---:|---:|---:|---:|"
	for (j = 1; j <= nc; j++) {
		k = "mhd-empty," C[j]
		if (has(k))
			printf "| hv-httpd0 | %d | %.0f | %.2f | %.2f | %.0f | %.0f |\n", C[j],
			    rps[k], p50[k], p99[k], srv[k], wrk[k]
	}
	print ""
	print "| key store operation (SoftHSM2) | raw, 1 thread | raw, 2 threads | raw, 2 processes | hsm.h, 1 thread | hsm.h, 2 threads |"
	print "|---|---:|---:|---:|---:|---:|"
	split("unwrap wrap hmac random", O, " ")
	for (i = 1; i <= 4; i++)
		printf "| %s | %s | %s | %s | %s | %s |\n", O[i],
		    f0(tk["raw," O[i] ",1,1"]), f0(tk["raw," O[i] ",2,1"]),
		    f0(tk["raw," O[i] ",1,2"]), f0(tk["hsm.h," O[i] ",1,1"]),
		    f0(tk["hsm.h," O[i] ",2,1"])
	if (("open,cache=0,1,1") in tk) {
		print ""
		print "| open one secret (unwrap DEK + AES-GCM) | 1 thread | 2 threads |"
		print "|---|---:|---:|"
		printf "| DEK cache off (key store every time) | %s | %s |\n",
		    f0(tk["open,cache=0,1,1"]), f0(tk["open,cache=0,2,1"])
		printf "| DEK cache hit | %s | %s |\n",
		    f0(tk["open,cache=1024,1,1"]), f0(tk["open,cache=1024,2,1"])
	}

	if (has("reveal-nocache,16") || has("reveal-bigcache,16")) {
		print ""
		print "### DEK cache (16 connections, ids uniform over the seeded credentials)"
		print ""
		print "| operation | dek_cache_size 0 | default 1024 | 16384 (whole working set) |"
		print "|---|---:|---:|---:|"
		n = split("reveal use", R, " ")
		for (i = 1; i <= n; i++)
			printf "| %s req/s (p99 ms) | %s | %s | %s |\n", R[i],
			    rp(R[i] "-nocache,16"), rp(R[i] ",16"), rp(R[i] "-bigcache,16")
	}

	if (has("reveal-g1,16") || has("reveal-g0,16")) {
		print ""
		print "### Audit group commit (16 connections)"
		print ""
		print "Three servers started one after the other on the same data, each warmed up alike, with the default " threads " worker threads and db_pool 8: the defaults (`audit_group_leaders` 1: one writer thread), group commit off (0: each reveal commits its own row and its worker thread waits for it), and two writer threads (2). Each cell: req/s (p99 ms); for reveal also server + PostgreSQL CPU µs per request."
		print ""
		print "| server | reveal | reveal CPU µs (server + PostgreSQL) | get | create | use |"
		print "|---|---:|---:|---:|---:|---:|"
		n = split("-g1:defaults (1 writer);-g0:group commit off;-g2:2 writers", G, ";")
		for (i = 1; i <= n; i++) {
			split(G[i], x, ":")
			k = "reveal" x[1] ",16"
			if (has(k))
				printf "| %s | %s | %.0f + %.0f | %s | %s | %s |\n", x[2], rp(k),
				    srv[k], pgc[k], rp("get" x[1] ",16"), rp("create" x[1] ",16"),
				    rp("use" x[1] ",16")
		}
	}

	if (has("create-c0,16") && has("create-g1,16"))
		group_table("Create group commit", "create", "create-c0",
		    "The defaults (`create_group_writers` 1: creates that find others queued or being written share one transaction, written by a writer thread) against group commit of creates off (0: each create its own transaction, as pgbench's create ceiling runs it), each server started afresh. pgbench's figure is that ceiling at 16 connections.",
		    "creates/s", "create group commit off")
	if (has("use-u0,16") && has("use-g1,16"))
		group_table("Use group commit", "use", "use-u0",
		    "The defaults (`use_group_writers` 1: the records of uses (audit row, `last_used_at`, status) that find others queued or being written share one transaction, written by a writer thread) against group commit of use records off (0: each record its own transaction, as pgbench's use ceiling runs it), each server started afresh. pgbench's figure is that ceiling at 16 connections.",
		    "uses/s", "use group commit off")

	if (has("tpm-reveal-nocache,16")) {
		print ""
		print "### TPM 2.0 key store (swtpm, 16 connections)"
		print ""
		print "| operation | req/s | p50 ms | p99 ms | server CPU µs |"
		print "|---|---:|---:|---:|---:|"
		n = split("tpm-reveal-nocache:reveal, dek_cache_size 0;tpm-reveal-bigcache:reveal, DEK cache 16384 (warm);tpm-create:create", Tp, ";")
		for (i = 1; i <= n; i++) {
			split(Tp[i], x, ":")
			k = x[1] ",16"
			if (has(k))
				printf "| %s | %.0f | %.2f | %.2f | %.0f |\n", x[2], rps[k],
				    p50[k], p99[k], srv[k]
		}
	}

	if (has("healthz,16")) {
		print ""
		print "### API-key authentication"
		print ""
		print "| conns | healthz (no key) req/s | get, one key (cache hit) req/s | get, a random key of many (cache miss) req/s | server CPU µs: healthz / hit / miss |"
		print "|---:|---:|---:|---:|---:|"
		for (j = 1; j <= nc; j++) {
			c = C[j]
			printf "| %d | %s | %s | %s | %s / %s / %s |\n", c, f0(rps["healthz," c]),
			    f0(rps["get," c]), f0(rps["get-keymiss," c]), f0(srv["healthz," c]),
			    f0(srv["get," c]), f0(srv["get-keymiss," c])
		}
	}

	if (nmem > 0) {
		print ""
		print "### Memory (server RSS)"
		print ""
		print "| phase | requests served in the phase so far | RSS MiB |"
		print "|---|---:|---:|"
		for (i = 1; i <= nmem; i++) {
			split(mem[i], m, "\t")
			printf "| %s | %d | %.1f |\n", m[1], m[2], m[3] / 1024
		}
	}

	if (nmc > 0) {
		print ""
		print "### Memory checkers under load"
		print ""
		print "The server built with ASan+UBSan (`build-bench-asan/`, leak detection at exit) and the `RelWithDebInfo` server under valgrind memcheck (`--leak-check=full --errors-for-leak-kinds=definite`), each serving get, list, reveal, use and create, then stopped with SIGTERM. *errors*: ASan errors, UBSan runtime errors and leak records; valgrind's ERROR SUMMARY (definite leaks included). *clean*: no error, exit status 0, requests served."
		print ""
		print "| checker | conns | requests | non-2xx or socket errors | errors | bytes definitely lost | verdict |"
		print "|---|---:|---:|---:|---:|---:|---|"
		for (i = 1; i <= nmc; i++) {
			split(mc[i], m, "\t")
			printf "| %s | %d | %d | %d | %d | %d | %s |\n", m[1], m[7], m[2],
			    m[3], m[4], m[5], m[6] == "clean" ? "clean" : "**" m[6] "**"
		}
	}

	# ------------------------------------------------------------ targets
	print ""
	print "### Targets of the issue"
	print ""
	print "| target | measured | met |"
	print "|---|---|---|"
	split("get:0.70:metadata read ≥ 70% of pgbench;reveal:0.50:reveal ≥ 50% of pgbench;create:0.50:create ≥ 50% of pgbench", T, ";")
	for (t = 1; t <= 3; t++) {
		split(T[t], x, ":")
		s = ""; ok = 1; any = 0
		for (j = 1; j <= nc; j++) {
			c = C[j]; k = x[1] "," c
			if (!has(k) || !(k in tps) || tps[k] == 0) continue
			r = (k in pr) ? pr[k] : rps[k] / tps[k]; any = 1
			s = s sprintf("%s%d conns %s", s == "" ? "" : ", ", c,
			    (k in pr) ? pratio(k) : sprintf("%.2f", r))
			if (r < x[2]) ok = 0
		}
		printf "| %s | %s | %s |\n", x[3], any ? s : "not measured", any ? (ok ? "yes" : "no") : "–"
	}
	s = ""; ok = 1
	split("get list reveal use create", P, " ")
	for (i = 1; i <= 5; i++) {
		k = P[i] ",16"
		if (!has(k)) continue
		s = s sprintf("%s%s %.2f ms (%s%s)", s == "" ? "" : ", ", P[i], p99[k],
		    (k in in99) ? sprintf("in server %.2f", in99[k]) : "in server –",
		    (k in pp99) ? sprintf(", pgbench %.2f", pp99[k]) : "")
		if (p99[k] >= 5) ok = 0
	}
	printf "| p99 < 5 ms at 16 connections, saturated (closed loop, as fast as possible; in brackets the server's own p99 from its access log, and pgbench's on the same SQL) | %s | %s |\n", s, ok ? "yes" : "no"
	s = ""; ok = 1; any = 0
	for (i = 1; i <= 5; i++) {
		k = P[i] "-paced,16"
		if (!has(k)) continue
		any = 1
		s = s sprintf("%s%s %.2f ms (in server %s) at %.0f req/s", s == "" ? "" : ", ", P[i], p99[k],
		    (k in in99) ? sprintf("%.2f", in99[k]) : "–", rps[k])
		if (p99[k] >= 5) ok = 0
	}
	if (any)
		printf "| p99 < 5 ms at 16 connections, paced at at most half the saturated rate (each connection pausing 16 / half that rate before each request) | %s | %s |\n", s, ok ? "yes" : "no"
	nb = 0
	for (k in bad) { nb += bad[k] }
	printf "| zero non-2xx answers under load | %d non-2xx or socket errors over every run | %s |\n", nb, nb == 0 ? "yes" : "no"
	split("create:155:create;reveal:180:secret read (reveal);get:180:metadata read", Bb, ";")
	for (t = 1; t <= 3; t++) {
		split(Bb[t], x, ":")
		k = x[1] ",16"
		if (!has(k)) continue
		printf "| ≥ 20× Barbican (%s/s) on %s, 16 conns | %.0f req/s = %.1f× | %s |\n",
		    x[2], x[3], rps[k], rps[k] / x[2], (rps[k] >= 20 * x[2]) ? "yes" : "no"
	}

	# ------------------------------------------------------------ model
	print ""
	print "### Model: a network HSM, the DEK cache, more cores"
	print ""
	print "From this run's figures at 16 connections: *local* = the p50 latency measured at 1 connection (SoftHSM2 in process); *k* = key store operations per request in sequence; CPU = server + PostgreSQL µs per request. With a key store at L per operation:"
	print ""
	print "- latency ≈ local + k × L;"
	print "- throughput ≈ min( worker threads / latency, key store sessions / (k × L), cores × 10⁶ / CPU µs, PostgreSQL ), each worker thread blocking for the whole request (libmicrohttpd thread pool) and each key store operation holding one PKCS#11 session; the key store is assumed to serve as many sessions in parallel as it is given."
	print "- reveals, creates and uses are the exceptions (audit group commit, create group commit, use group commit): the worker thread is held for local + (k − 1) × L only, the audit row's HMAC is computed by a writer thread, and a writer computes the HMACs of its group one after the other (each row chains onto the last), so reveals ≤ audit writers / L, creates ≤ create writers / L and uses ≤ use writers / L; PostgreSQL is not capped at pgbench's figure for one request's statements, as grouped rows cost it less."
	printf "- *default* = %d worker threads, %d key store sessions (2 × cores, this machine's defaults) and 1 audit, 1 create and 1 use writer, %d cores shared with PostgreSQL (CPU = server + PostgreSQL), PostgreSQL capped at its pgbench figure at 16 connections; *tuned* = 64 worker threads, 64 sessions, 8 audit, 8 create and 8 use writers (`threads`, `pkcs11_sessions`, `audit_group_leaders`, `create_group_writers`, `use_group_writers`), 8 cores for the server alone (CPU = server), PostgreSQL on an 8-core host of its own, capped at 4 × that pgbench figure (reads scale so; commits may not).\n", threads, sessions, cores
	print ""
	print "| operation | DEK cache | k | CPU µs | L | latency ms | req/s default | req/s tuned |"
	print "|---|---|---:|---:|---:|---:|---:|---:|"
	split("get reveal use create", M, " ")
	nL = split("0 1 10", Ls, " ")
	for (i = 1; i <= 4; i++) {
		op = M[i]
		if (!has(op ",16") || !has(op ",1")) continue
		for (cc = 1; cc >= 0; cc--) {
			if (cc == 0 && op !~ /^(reveal|use)$/) continue
			kk = tokops(op, cc)
			cpu = srv[op ",16"] + pgc[op ",16"]
			cpu_t = srv[op ",16"]
			pgcap = (op ",16") in tps ? tps[op ",16"] : 0
			for (l = 1; l <= nL; l++) {
				L = Ls[l]
				if (L == 0 && cc == 0) continue
				if (L > 0 && kk == 0) continue	# no key store work
				lat = p50[op ",1"] + kk * L
				grouped = op == "reveal" || op == "create" || op == "use"
				held = grouped ? lat - L : lat
				xd = threads * 1000 / held
				xt = 64 * 1000 / held
				if (kk > 0 && L > 0) {
					xd = min2(xd, sessions * 1000 / (kk * L))
					xt = min2(xt, 64 * 1000 / (kk * L))
				}
				if (grouped && L > 0) {
					xd = min2(xd, 1 * 1000 / L)
					xt = min2(xt, 8 * 1000 / L)
				}
				xd = min2(xd, cores * 1e6 / cpu)
				xt = min2(xt, 8 * 1e6 / cpu_t)
				if (pgcap > 0 && !grouped) {
					xd = min2(xd, pgcap)
					xt = min2(xt, 4 * pgcap)
				}
				printf "| %s | %s | %d | %.0f | %s | %.2f | %.0f | %.0f |\n", op,
				    op ~ /^(reveal|use)$/ ? (cc ? "hit" : "off") : "–", kk, cpu,
				    L == 0 ? "SoftHSM2 (measured)" : L " ms", lat, xd, xt
				if (kk == 0) break
			}
		}
	}
}
