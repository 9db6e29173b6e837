#!/bin/bash
# test/soak.sh: the soak of test/t/040_soak.pl, of any size, alone.
#
# As root, from the top of the tree:
#
#   ORCH_SOAK_JOBS=100000 ORCH_SOAK_KILLS=25 test/soak.sh     # the long form
#   test/soak.sh                                              # the short form, as in CI
#
# Settings (environment; see test/t/040_soak.pl): ORCH_SOAK_JOBS (default
# 4000), ORCH_SOAK_KILLS (default 3), ORCH_SOAK_SEED (default from the
# clock; printed at start, give it again to replay a run), ORCH_SOAK_TIMEOUT
# (seconds; default 240 + 0.05 per job: the run fails past it).
#
# Builds and installs the extension like test/run-all.sh, copies the tree to
# a work directory owned by postgres, and runs the one TAP test with prove
# -v.  The last "# soak:" line holds the figures: jobs, kills, recovery p50
# and worst, lost.  Exit status: prove's.  The work directory (with
# tmp_check/log/, the server and test logs) is kept only when it failed.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/common.sh
orch_install_packages
work=$(orch_workdir "$PWD")
orch_build_install "$work"
pgxs=$(dirname "$(dirname "$(dirname "$($PG_CONFIG --pgxs)")")")
status=0
(cd "$work" && orch_as_postgres env \
	ORCH_SOAK_JOBS="${ORCH_SOAK_JOBS:-}" ORCH_SOAK_KILLS="${ORCH_SOAK_KILLS:-}" \
	ORCH_SOAK_SEED="${ORCH_SOAK_SEED:-}" ORCH_SOAK_TIMEOUT="${ORCH_SOAK_TIMEOUT:-}" \
	ORCH_STANDIN="$work/test/standin.py" TESTDIR="$work" \
	PG_REGRESS="$pgxs/src/test/regress/pg_regress" PATH="$($PG_CONFIG --bindir):$PATH" \
	prove -v -I "$pgxs/src/test/perl" -I "$work/test" test/t/040_soak.pl) || status=$?
if [ "$status" = 0 ]; then
	rm -rf "$work"
else
	echo "soak failed (status $status); logs kept in $work/tmp_check/log" >&2
fi
exit "$status"
