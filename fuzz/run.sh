#!/usr/bin/env bash
# fuzz/run.sh: builds the libFuzzer targets of fuzz/ and runs them, one at
# a time.  Run as root on Debian: it installs what is missing with apt-get
# (clang, libFuzzer in libclang-rt-14-dev, libpq-dev, and the packages of
# test/lib/common.sh), builds into a temporary directory outside the
# source tree, and starts the throwaway server fuzz_sql needs as the
# postgres user.  The in-process targets need no server.
#
#   fuzz/run.sh --short            the CI run, about a minute on 2 cores: each
#                                  target replays its committed corpus
#                                  (fuzz/corpus/TARGET) and makes a bounded
#                                  number of new executions
#   fuzz/run.sh --long [SECONDS]   each target fuzzes for SECONDS (default
#                                  300); new inputs are kept in
#                                  $FUZZ_WORKDIR (default /var/tmp/orchestrator-fuzz)
#                                  and replayed by the next long run
#
# Output: exactly one line per target, in this format, which callers count
# (each "ok" line a pass, each "FAILED" line a failure):
#
#   fuzz TARGET: ok, N executions
#   fuzz TARGET: FAILED REASON
#
# TARGET is redact, retry_after, http_response or sql; FUZZ_TARGETS="redact
# sql" runs only those.  A failure keeps
# the target's log and the input that failed (libFuzzer's crash-, leak- or
# timeout- file) and names them in REASON.  Exit status: 0 when every
# target is ok, 1 otherwise.  For the SQL target the extension must be
# installed (test/run-all.sh installs the current tree first); if it is
# not, this script builds and installs it.
set -uo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib/common.sh"

mode=${1:-}
case "$mode" in
	--short) ;;
	--long) seconds=${2:-300} ;;
	*) echo "usage: $0 --short | --long [SECONDS]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || orch_die "run as root (the SQL target's server runs as the postgres user)"

targets=${FUZZ_TARGETS:-redact retry_after http_response sql}
ORCH_PACKAGES="$ORCH_PACKAGES clang libclang-rt-14-dev libpq-dev"
orch_install_packages >&2

build=$(mktemp -d /tmp/orchestrator-fuzz-build.XXXXXX)
if [ "$mode" = --long ]; then
	workdir=${FUZZ_WORKDIR:-/var/tmp/orchestrator-fuzz}
else
	workdir=$build/work
fi
mkdir -p "$workdir"
failed=0
server=""

cleanup() {
	[ -n "$server" ] && orch_stop_cluster "$server"
	[ -n "$server" ] && rm -rf "$server"
	# keep the build directory (logs, failing inputs) only after a failure
	[ "$failed" -eq 0 ] && rm -rf "$build"
	return 0
}
trap cleanup EXIT

report_failed() {
	echo "fuzz $1: FAILED $2"
	failed=$((failed + 1))
}

# --- build: the targets and the src/ files they fuzz, with libFuzzer and
# the address and undefined-behaviour sanitizers (every finding aborts)
cflags=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Wall -Werror
	-Wno-ignored-attributes -I "$src/src" -I "$($PG_CONFIG --includedir-server)")
pglib=$($PG_CONFIG --pkglibdir)
build_target() {
	local t=$1
	shift
	clang "${cflags[@]}" -o "$build/fuzz_$t" "$@" >"$build/build_$t.log" 2>&1
}
declare -A built
build_target redact "$src/fuzz/fuzz_redact.c" "$src/src/redact.c" "$src/fuzz/backend_stubs.c" \
	"$pglib/libpgcommon.a" "$pglib/libpgport.a" && built[redact]=1
build_target retry_after "$src/fuzz/fuzz_retry_after.c" "$src/src/http_text.c" "$pglib/libpgport.a" -lcurl &&
	built[retry_after]=1
build_target http_response "$src/fuzz/fuzz_http_response.c" "$src/src/http_text.c" "$pglib/libpgport.a" -lcurl &&
	built[http_response]=1
build_target sql -I "$($PG_CONFIG --includedir)" "$src/fuzz/fuzz_sql.c" -lpq && built[sql]=1
echo "  built in $SECONDS s" >&2

# --- the throwaway server of the SQL target: no workers, so nothing runs
# the jobs a submit queues (each input's transaction is rolled back anyway)
start_server() {
	local ctl
	ctl="$($PG_CONFIG --sharedir)/extension/orchestrator.control"
	if [ ! -f "$ctl" ]; then
		echo "the extension is not installed: building and installing $src" >&2
		orch_build_install "$src"
	fi
	server=$(orch_workdir "$src")
	orch_start_cluster "$server" 55439 fuzz "orchestrator.workers = 0" "fsync = off" \
		>"$build/server_start.log" 2>&1 || return 1
	orch_as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$server" -p 55439 -d fuzz \
		-v base=http://127.0.0.1:9 -f "$server/fuzz/sql_setup.sql" >"$build/sql_setup.log" 2>&1
}

# --- run one target; its budget: --short, a bounded number of new
# executions (and a time cap, for a slow machine); --long, SECONDS
declare -A short_runs=([redact]=40000 [retry_after]=300000 [http_response]=100000 [sql]=6000)
run_target() {
	local t=$1 corpus="$workdir/corpus/$t" log="$build/$t.log" budget n dict=()
	mkdir -p "$corpus" "$build/artifacts"
	[ -f "$src/fuzz/dict/$t.dict" ] && dict=(-dict="$src/fuzz/dict/$t.dict")
	if [ "$mode" = --short ]; then
		budget=(-runs="${short_runs[$t]}" -max_total_time=10)
	else
		budget=(-max_total_time="$seconds")
	fi
	env ORCH_FUZZ_CONNINFO="host=$server port=55439 dbname=fuzz user=postgres" \
		"$build/fuzz_$t" "${budget[@]}" "${dict[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$build/artifacts/$t-" "$corpus" "$src/fuzz/corpus/$t" >"$log" 2>&1
	local rc=$?
	n=$(sed -n 's/^Done \([0-9]*\) runs in .*/\1/p' "$log" | tail -n 1)
	if [ $rc -ne 0 ] || [ -z "$n" ]; then
		local why
		why=$(grep -m1 -E 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error|^fuzz_' "$log")
		report_failed "$t" "(${why:-exit status $rc}); log $log; input $(ls "$build/artifacts/$t-"* 2>/dev/null | head -n 1)"
		return
	fi
	echo "fuzz $t: ok, $n executions"
	# the figures of fuzz/README.md, on stderr so callers see one line each
	echo "  $t: $(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1 s/p' "$log" | tail -n 1)," \
		"$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log") exec/s," \
		"$(sed -n 's/^stat::new_units_added: *//p' "$log") new inputs" >&2
}

for t in $targets; do
	if [ -z "${built[$t]:-}" ]; then
		report_failed "$t" "(build failed; log $build/build_$t.log)"
		continue
	fi
	if [ "$t" = sql ] && ! start_server; then
		report_failed "$t" "(the throwaway server did not start; logs $build/server_start.log, $build/sql_setup.log)"
		continue
	fi
	run_target "$t"
done

[ "$failed" -eq 0 ]
