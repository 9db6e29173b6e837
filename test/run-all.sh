#!/usr/bin/env bash
# test/run-all.sh: runs every test (pg_regress, isolation, TAP) against
# throwaway servers and ends with "N passed, N failed".  Run as root on a
# fresh Debian machine: it installs what is missing, builds with -Werror,
# installs, and runs the suites as the postgres user.
#
#   test/run-all.sh                   against Debian's PostgreSQL 15, and the
#                                     short run of the fuzz targets (fuzz/)
#   test/run-all.sh --cassert PREFIX  against an assert-enabled PostgreSQL 15
#                                     installed in PREFIX (test/README.md, "Hardened runs")
#   test/run-all.sh --valgrind PREFIX the crash-free suites (pg_regress,
#                                     isolation) with every server process,
#                                     workers included, under valgrind
#
# Every mode ends by reading every server log: an assertion failure (TRAP)
# or a backend ended by a signal other than the tests' own SIGKILL is a
# failure, and under valgrind so is any error report.
set -uo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib/common.sh"

mode=debian
prefix=
case "${1:-}" in
	--cassert|--valgrind)
		mode=${1#--}
		prefix=${2:-}
		[ -n "$prefix" ] || orch_die "$1 needs the PREFIX of an assert-enabled PostgreSQL 15"
		;;
	"") ;;
	*) orch_die "usage: test/run-all.sh [--cassert PREFIX | --valgrind PREFIX]" ;;
esac

[ "$(id -u)" = 0 ] || orch_die "run as root (servers run as the postgres user)"
orch_install_packages
[ -n "$prefix" ] && orch_use_prefix "$prefix"
[ "$mode" = valgrind ] && orch_install_valgrind
orch_build_install "$src"

work=$(orch_workdir "$src")
pgxs=$(dirname "$(dirname "$(dirname "$($PG_CONFIG --pgxs)")")")
bindir=$($PG_CONFIG --bindir)
passed=0
failed=0
started=$(date +%s)
# the server settings of the regression and isolation instances; under
# valgrind every process runs some twenty times slower, so leases are longer
regress_conf=$work/test/orchestrator.conf
iso_conf=$work/test/isolation.conf
if [ "$mode" = valgrind ]; then
	orch_valgrind_bindir "$work/vgbin" "$bindir" "$work/valgrind" "$work/test/valgrind.supp"
	bindir=$work/vgbin
	for f in orchestrator isolation; do
		cat "$work/test/$f.conf" "$work/test/valgrind.conf" >"$work/test/$f-valgrind.conf"
	done
	regress_conf=$work/test/orchestrator-valgrind.conf
	iso_conf=$work/test/isolation-valgrind.conf
fi

# count_log FILE RC OK_RE BAD_RE: adds a suite's passing and failing lines
# (extended regular expressions); a run that failed without a failing line
# (it could not start, or a script died) counts one failure.
count_log() {
	local ok bad
	ok=$(grep -cE "$3" "$1")
	bad=$(grep -cE "$4" "$1")
	[ "$2" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
	passed=$((passed + ok))
	failed=$((failed + bad))
}

# count_regress FILE RC: pg_regress's per-test "ok" / "FAILED" lines
count_regress() {
	count_log "$1" "$2" '\.\.\. ok|^ok [0-9]+' '\.\.\. FAILED|^not ok [0-9]+|\.\.\. failed'
}

orch_start_standin "$work" "$work"
trap orch_stop_standin EXIT
echo "stand-in server on port $ORCH_STANDIN_PORT"

# run_suite NAME DRIVER CONF INPUTDIR OUTPUTDIR TESTS: one pg_regress-style
# suite against its own temporary instance; counts it and shows the diffs.
run_suite() {
	local name=$1 driver=$2 conf=$3 inputdir=$4 outputdir=$5 tests=$6 rc
	echo "== $name"
	mkdir -p "$outputdir" && chown postgres "$outputdir"
	(cd "$work" && orch_as_postgres env ORCH_STANDIN_PORT="$ORCH_STANDIN_PORT" "$driver" \
		--temp-instance="$outputdir/tmp_instance" --temp-config="$conf" \
		--inputdir="$inputdir" --outputdir="$outputdir" --bindir="$bindir" --dbname=contrib_regression \
		$tests) 2>&1 | tee "$work/$name.log"
	rc=${PIPESTATUS[0]}
	count_regress "$work/$name.log" $rc
	[ $rc -ne 0 ] && [ -f "$outputdir/regression.diffs" ] && cat "$outputdir/regression.diffs"
	return 0
}

run_suite pg_regress "$pgxs/src/test/regress/pg_regress" "$regress_conf" \
	"$work" "$work" "$(sed -n 's/^REGRESS = //p' "$work/Makefile")"
run_suite isolation "$pgxs/src/test/isolation/pg_isolation_regress" "$iso_conf" \
	"$work/test" "$work/output_iso" "$(sed -n 's/^ISOLATION = //p' "$work/Makefile")"

# the TAP tests kill and restart whole clusters: not run under valgrind
if [ "$mode" != valgrind ]; then
	echo "== TAP"
	(cd "$work" && orch_as_postgres env ORCH_STANDIN="$work/test/standin.py" TESTDIR="$work" PG_REGRESS="$pgxs/src/test/regress/pg_regress" \
		PATH="$bindir:$PATH" prove -v -I "$pgxs/src/test/perl" -I "$work/test" test/t/*.pl) 2>&1 | tee "$work/tap.log"
	rc=${PIPESTATUS[0]}
	count_log "$work/tap.log" $rc '^ok [0-9]+' '^not ok [0-9]+'
	if [ $rc -ne 0 ]; then
		for f in "$work"/tmp_check/log/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 40 "$f"; }; done
	fi
fi

# the libFuzzer targets' short run (fuzz/README.md): one line per target
if [ "$mode" = debian ]; then
	echo "== fuzz"
	"$work/fuzz/run.sh" --short 2>&1 | tee "$work/fuzz.log"
	count_log "$work/fuzz.log" ${PIPESTATUS[0]} '^fuzz [a-z_]+: ok' '^fuzz [a-z_]+: FAILED'
fi

# no assertion failure, PANIC or crash in any server log of the run
echo "== server logs"
crashes=$(orch_scan_logs "$work/log" "$work/output_iso/log" "$work/tmp_check/log")
if [ -n "$crashes" ]; then
	echo "$crashes"
	echo "not ok: the server logs show a crash or an assertion failure"
	failed=$((failed + 1))
else
	echo "ok: no assertion failure, PANIC or crash in the server logs"
	passed=$((passed + 1))
fi
if [ "$mode" = valgrind ]; then
	echo "== valgrind"
	vg=$(orch_valgrind_errors "$work/valgrind")
	if [ -n "$vg" ]; then
		echo "$vg"
		echo "not ok: valgrind reported errors"
		failed=$((failed + 1))
	else
		echo "ok: valgrind reported no error in $(ls "$work/valgrind" | wc -l) server processes"
		passed=$((passed + 1))
	fi
fi
echo "mode $mode${prefix:+ ($prefix)}: $(( $(date +%s) - started )) s"

# keep the work directory (results, diffs, logs) only when something failed
[ "$failed" -eq 0 ] && rm -rf "$work" || echo "results kept in $work"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
