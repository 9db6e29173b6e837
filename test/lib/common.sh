# test/lib/common.sh: shared by the README's two commands (test/run-all.sh,
# examples/demo.sh).  Installs what is missing with apt-get, builds and
# installs the extension, and starts throwaway clusters as "postgres".
# Source it; it defines functions only.

ORCH_PG_MAJOR=15
ORCH_PACKAGES="postgresql-15 postgresql-server-dev-15 postgresql-15-cron libcurl4-openssl-dev libipc-run-perl make gcc curl python3"

orch_die() { echo "error: $*" >&2; exit 1; }

# orch_install_packages installs the Debian packages that are missing.
orch_install_packages() {
	local missing=() p
	for p in $ORCH_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		[ "$(id -u)" = 0 ] || orch_die "missing packages (${missing[*]}); run as root to install them"
		echo "installing: ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	export PATH="/usr/lib/postgresql/$ORCH_PG_MAJOR/bin:$PATH"
	export PG_CONFIG="/usr/lib/postgresql/$ORCH_PG_MAJOR/bin/pg_config"
}

# orch_build_install builds with -Werror and installs into the server.
orch_build_install() {
	local src=$1
	make -C "$src" -s clean >/dev/null
	make -C "$src" -s PG_CONFIG="$PG_CONFIG" >/dev/null || orch_die "build failed"
	make -C "$src" -s PG_CONFIG="$PG_CONFIG" install >/dev/null || orch_die "install failed"
}

# orch_as_postgres runs a command as the postgres user.
orch_as_postgres() {
	runuser -u postgres -- env PATH="$PATH" PG_CONFIG="$PG_CONFIG" "$@"
}

# orch_workdir copies the source tree to a fresh directory postgres owns.
orch_workdir() {
	local src=$1 dir
	dir=$(mktemp -d /tmp/orchestrator.XXXXXX)
	tar -C "$src" --exclude=.git -cf - . | tar -C "$dir" -xf -
	chown -R postgres "$dir"
	echo "$dir"
}

# orch_start_cluster DIR PORT DB [extra conf lines...]: initdb and start a
# throwaway cluster with pg_cron and orchestrator preloaded.
orch_start_cluster() {
	local dir=$1 port=$2 db=$3
	shift 3
	orch_as_postgres initdb -D "$dir/data" -A trust -U postgres >/dev/null || orch_die "initdb failed"
	cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_cron, orchestrator'
cron.database_name = '$db'
orchestrator.database = '$db'
CONF
	local line
	for line in "$@"; do echo "$line" >>"$dir/data/postgresql.conf"; done
	orch_as_postgres pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null || {
		cat "$dir/server.log" >&2
		orch_die "server did not start"
	}
	orch_as_postgres createdb -h "$dir" -p "$port" "$db"
}

orch_stop_cluster() {
	local dir=$1
	[ -f "$dir/data/postmaster.pid" ] && orch_as_postgres pg_ctl -D "$dir/data" -m fast -w stop >/dev/null 2>&1
	return 0
}

# orch_start_standin DIR: starts test/standin.py on a free loopback port as
# the postgres user, exports ORCH_STANDIN_PORT and ORCH_STANDIN_PID.
orch_start_standin() {
	local dir=$1 src=$2 i
	rm -f "$dir/standin.port"
	runuser -u postgres -- python3 "$src/test/standin.py" --port 0 --port-file "$dir/standin.port" \
		>"$dir/standin.log" 2>&1 &
	ORCH_STANDIN_PID=$!
	for i in $(seq 1 100); do  # wait (bounded) until it has bound its port
		[ -s "$dir/standin.port" ] && break
		sleep 0.1  # poll again (bounded loop above)
	done
	[ -s "$dir/standin.port" ] || orch_die "the stand-in server did not start: $(cat "$dir/standin.log")"
	ORCH_STANDIN_PORT=$(cat "$dir/standin.port")
	ORCH_STANDIN_DIR=$dir
	export ORCH_STANDIN_PORT ORCH_STANDIN_PID ORCH_STANDIN_DIR
}

orch_stop_standin() {
	[ -n "${ORCH_STANDIN_PID:-}" ] && kill "$ORCH_STANDIN_PID" 2>/dev/null
	# $! is runuser's pid: the python process is found by its own port file,
	# so a run never stops another run's stand-in
	[ -n "${ORCH_STANDIN_DIR:-}" ] && pkill -f "standin.py --port 0 --port-file $ORCH_STANDIN_DIR/standin.port" 2>/dev/null
	return 0
}

# orch_use_prefix PREFIX: test against the PostgreSQL 15 installed in PREFIX
# instead of Debian's: it must be built with --enable-cassert (and, for
# --valgrind, CPPFLAGS=-DUSE_VALGRIND), with its test modules
# (pg_isolation_regress, the TAP Perl modules) and pg_cron installed there.
# test/README.md ("Hardened runs") says how to build one.
orch_use_prefix() {
	local prefix=$1 cfg pkglib pgxs
	cfg="$prefix/bin/pg_config"
	[ -x "$cfg" ] || orch_die "$cfg not found: no PostgreSQL installed in $prefix"
	"$cfg" --version | grep -q "PostgreSQL $ORCH_PG_MAJOR\." ||
		orch_die "$prefix holds $("$cfg" --version), not PostgreSQL $ORCH_PG_MAJOR"
	"$cfg" --configure | grep -q -- "--enable-cassert" ||
		orch_die "$prefix was not configured with --enable-cassert"
	pkglib=$("$cfg" --pkglibdir)
	pgxs=$(dirname "$(dirname "$(dirname "$("$cfg" --pgxs)")")")
	[ -f "$pkglib/pg_cron.so" ] ||
		orch_die "pg_cron is not installed in $prefix (build it with make PG_CONFIG=$cfg install)"
	[ -x "$pgxs/src/test/isolation/pg_isolation_regress" ] ||
		orch_die "pg_isolation_regress is not installed in $prefix (make -C src/test/isolation install)"
	[ -f "$("$cfg" --sharedir)/extension/pageinspect.control" ] ||
		orch_die "contrib is not installed in $prefix (make -C contrib install): the tests use pageinspect"
	[ -f "$pgxs/src/test/perl/PostgreSQL/Test/Cluster.pm" ] ||
		orch_die "the TAP modules are not installed in $prefix (configure --enable-tap-tests; make -C src/test/perl install)"
	export PATH="$prefix/bin:$PATH"
	export PG_CONFIG="$cfg"
}

# orch_install_valgrind installs valgrind when it is missing.
orch_install_valgrind() {
	command -v valgrind >/dev/null && return 0
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null || orch_die "could not install valgrind"
}

# orch_valgrind_bindir DIR BINDIR LOGDIR SUPP: makes DIR a copy of BINDIR (as
# symbolic links) whose "postgres" runs the real one under valgrind, so
# pg_regress --bindir=DIR starts a postmaster whose every child (backends,
# the orchestrator's workers) runs under valgrind, with the suppressions
# of SUPP; one log per process in LOGDIR.  initdb resolves its own link and
# so runs the real postgres.
orch_valgrind_bindir() {
	local dir=$1 bindir=$2 logdir=$3 supp=$4 f
	mkdir -p "$dir" "$logdir"
	for f in "$bindir"/*; do ln -sf "$f" "$dir/$(basename "$f")"; done
	rm -f "$dir/postgres"
	cat >"$dir/postgres" <<WRAP
#!/bin/sh
exec valgrind --quiet --trace-children=no --num-callers=40 --error-limit=no \\
	--track-origins=yes --read-inline-info=yes --gen-suppressions=all --suppressions="$supp" \\
	--log-file="$logdir/valgrind.%p.log" "$bindir/postgres" "\$@"
WRAP
	chmod 755 "$dir/postgres"
	chown -R postgres "$dir" "$logdir"
}

# orch_scan_logs DIR...: prints every sign of a crash in the server logs
# under the DIRs that exist: assertion failures (TRAP), PANICs, and
# processes ended by a signal other than SIGKILL (which the crash tests send
# themselves).  Prints nothing when there is none.
orch_scan_logs() {
	local d dirs=()
	for d in "$@"; do [ -d "$d" ] && dirs+=("$d"); done
	[ ${#dirs[@]} -eq 0 ] && return 0
	find "${dirs[@]}" -name '*.log' -type f -print0 |
		xargs -0 -r grep -HE 'TRAP: |PANIC: |terminated by signal ([0-8]|[1-9][0-9])\b' || true
}

# orch_valgrind_errors DIR: prints the error reports of the valgrind logs in
# DIR (one per server process; with --quiet valgrind writes nothing else),
# each headed by its file.  Prints nothing when there is none.
orch_valgrind_errors() {
	local f
	for f in "$1"/valgrind.*.log; do
		[ -s "$f" ] || continue
		echo "--- $f"
		cat "$f"
	done
}
