# bench/lib.sh: what the bench scripts share.  Source it from a script in
# bench/ (after set -euo pipefail); it sets $src, loads test/lib/common.sh
# and defines:
#
#   bench_prepare [PACKAGE...]  checks for root, installs the Debian packages
#       that are missing (the project's and the ones named), builds and
#       installs the extension, and makes the work directory $dir, owned by
#       postgres; on exit the cluster is stopped and $dir removed
#       (bench_cleanup; a script that starts more sets its own trap and
#       calls bench_cleanup from it)
#   bench_start_cluster PORT [CONF...]  a throwaway cluster in $dir on PORT
#       (sets $port) with database "bench", orchestrator installed in it, org
#       00000000-0000-0000-0000-00000000000a ("Bench") and user
#       00000000-0000-0000-0000-0000000000a1
#   bench_define_ping  sequence "ping": one sql step that does nothing
#   bench_define_three  sequence "three": three sql steps, each returning a
#       small output the engine persists
#   bench_psql ARGS...  psql to that database, quiet, stopping on errors
#   psql ARGS...        the same with -At (unaligned tuples only)

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$src/test/lib/common.sh"

bench_prepare() {
	local p
	[ "$(id -u)" = 0 ] || orch_die "run as root"
	orch_install_packages
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null
	done
	orch_build_install "$src"
	dir=$(mktemp -d /tmp/orch-bench.XXXXXX); chown postgres "$dir"
	trap bench_cleanup EXIT
}

bench_cleanup() {
	orch_stop_cluster "$dir"
	rm -rf "$dir"
}

bench_start_cluster() {
	port=$1
	shift
	orch_start_cluster "$dir" "$port" bench "$@"
	psql <<'SQL'
CREATE EXTENSION orchestrator;
INSERT INTO orchestrator.orgs (id, name) VALUES ('00000000-0000-0000-0000-00000000000a', 'Bench');
INSERT INTO orchestrator.users (id, org_id) VALUES ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a');
SQL
}

bench_define_ping() {
	psql >/dev/null <<'SQL'
CREATE FUNCTION noop(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT orch_define_sequence('ping', '[{"name": "noop", "kind": "sql", "function": "noop"}]');
SQL
}

bench_define_three() {
	psql >/dev/null <<'SQL'
CREATE FUNCTION s1(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"a": 1}'::jsonb $$;
CREATE FUNCTION s2(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"b": 2}'::jsonb $$;
CREATE FUNCTION s3(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"c": 3}'::jsonb $$;
SELECT orch_define_sequence('three', '[{"name": "s1", "kind": "sql", "function": "s1"},
	{"name": "s2", "kind": "sql", "function": "s2"}, {"name": "s3", "kind": "sql", "function": "s3"}]');
SQL
}

bench_psql() { orch_as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d bench "$@"; }
psql() { bench_psql -At "$@"; }
