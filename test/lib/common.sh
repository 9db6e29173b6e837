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
	export ORCH_STANDIN_PORT ORCH_STANDIN_PID
}

orch_stop_standin() {
	[ -n "${ORCH_STANDIN_PID:-}" ] && kill "$ORCH_STANDIN_PID" 2>/dev/null
	[ -n "${ORCH_STANDIN_PORT:-}" ] && pkill -f "standin.py --port 0 --port-file .*standin.port" 2>/dev/null
	return 0
}
