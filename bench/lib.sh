# bench/lib.sh: what the bench scripts share.  Source it from a script in
# bench/ (after set -euo pipefail); it sets $src, loads test/lib/common.sh
# and defines:
#
#   bench_prepare [PACKAGE...]  checks for root, installs the Debian packages
#       that are missing (the project's and the ones named), builds and
#       installs the extension (not with BENCH_NO_BUILD=1: then the installed
#       build is used), and makes the work directory $dir, owned by
#       postgres; on exit the cluster (and nginx, if started) is stopped and
#       $dir removed
#       (bench_cleanup; a script that starts more sets its own trap and
#       calls bench_cleanup from it)
#   bench_start_cluster PORT [CONF...]  a throwaway cluster in $dir on PORT
#       (sets $port) with database "bench", orchestrator installed in it, org
#       00000000-0000-0000-0000-00000000000a ("Bench") and user
#       00000000-0000-0000-0000-0000000000a1
#   bench_define_ping  sequence "ping": one sql step that does nothing
#   bench_define_three  sequence "three": three sql steps, each returning a
#       small output the engine persists
#   bench_define_loop_baseline  table base_jobs and procedure base_run(): a
#       plpgsql loop that claims pending base_jobs rows with FOR UPDATE SKIP
#       LOCKED in batches of 32 and makes the writes of "three" (three output
#       updates and three base_history rows a job), one transaction a batch
#       (needs bench_define_three)
#   bench_start_nginx PORT  nginx on 127.0.0.1:PORT answering every request
#       with a static JSON body; sets $url (an edge-function-like path on it);
#       bench_cleanup stops it
#   bench_define_hit  endpoint "static" ($url) and sequence "hit": one http
#       step that POSTs to it
#   bench_wrk_script FILE  writes a wrk script that POSTs the body a step of
#       "hit" sends (captured from one job: needs running workers), so wrk
#       does the same work as the engine
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
	[ "${BENCH_NO_BUILD:-0}" = 1 ] || orch_build_install "$src"
	dir=$(mktemp -d /tmp/orch-bench.XXXXXX); chown postgres "$dir"
	trap bench_cleanup EXIT
}

bench_cleanup() {
	[ ! -f "$dir/nginx.pid" ] || nginx -c "$dir/nginx.conf" -s stop 2>/dev/null || true
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

bench_define_loop_baseline() {
	psql >/dev/null <<'SQL'
CREATE TABLE base_jobs (id bigserial PRIMARY KEY, status text NOT NULL DEFAULT 'pending', state jsonb NOT NULL DEFAULT '{}');
CREATE INDEX ON base_jobs (id) WHERE status = 'pending';
CREATE TABLE base_history (id bigserial PRIMARY KEY, job_id bigint, step text, output jsonb, at timestamptz DEFAULT clock_timestamp());
CREATE PROCEDURE base_run() LANGUAGE plpgsql AS $$
DECLARE ids bigint[];
BEGIN
	LOOP  -- one batch per transaction until nothing is pending (bounded by the table)
		SELECT array_agg(id) INTO ids FROM (SELECT id FROM base_jobs WHERE status = 'pending'
			ORDER BY id LIMIT 32 FOR UPDATE SKIP LOCKED) c;
		EXIT WHEN ids IS NULL;
		UPDATE base_jobs SET status = 'in_progress' WHERE id = ANY (ids);
		UPDATE base_jobs SET state = state || jsonb_build_object('s1', s1(state)) WHERE id = ANY (ids);
		INSERT INTO base_history (job_id, step, output) SELECT unnest(ids), 's1', '{"a": 1}';
		UPDATE base_jobs SET state = state || jsonb_build_object('s2', s2(state)) WHERE id = ANY (ids);
		INSERT INTO base_history (job_id, step, output) SELECT unnest(ids), 's2', '{"b": 2}';
		UPDATE base_jobs SET state = state || jsonb_build_object('s3', s3(state)), status = 'completed' WHERE id = ANY (ids);
		INSERT INTO base_history (job_id, step, output) SELECT unnest(ids), 's3', '{"c": 3}';
		COMMIT;
	END LOOP;
END $$;
SQL
}

bench_start_nginx() {
	cat >"$dir/nginx.conf" <<NGINX
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_requests 1000000;
	server {
		listen 127.0.0.1:$1;
		location / { default_type application/json; return 200 '{"ok":true}'; }
	}
}
NGINX
	nginx -c "$dir/nginx.conf"
	url="http://127.0.0.1:$1/functions/v1/static"
}

bench_define_hit() {
	psql >/dev/null <<SQL
SELECT orch_define_endpoint('static', '$url', 10000, '{}');
SELECT orch_define_sequence('hit', '[{"name": "call", "kind": "http", "endpoint": "static"}]');
SQL
}

bench_wrk_script() {
	local i pid
	# the body a step of "hit" sends, captured from a real one: a one-request
	# server on a free loopback port stands in for the endpoint meanwhile
	rm -f "$dir/capture.port" "$dir/capture.body"
	python3 - "$dir/capture.port" "$dir/capture.body" <<'PY' &
import http.server, sys
class Capture(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        with open(sys.argv[2], 'wb') as f:
            f.write(body)
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', '11')
        self.end_headers()
        self.wfile.write(b'{"ok":true}')
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(('127.0.0.1', 0), Capture)
server.timeout = 30  # handle_request gives up after this
with open(sys.argv[1], 'w') as f:
    f.write(str(server.server_port))
server.handle_request()
PY
	pid=$!
	for i in $(seq 1 100); do  # wait (bounded) until it listens
		[ -s "$dir/capture.port" ] && break
		sleep 0.05
	done
	[ -s "$dir/capture.port" ] || orch_die "the capturing server did not start"
	psql >/dev/null <<SQL
SELECT orch_define_endpoint('static', 'http://127.0.0.1:$(cat "$dir/capture.port")/functions/v1/static', 10000, '{}');
SELECT outcome FROM orch_submit_event('hit', 'bench', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', '{"i": 1}');
SQL
	for i in $(seq 1 700); do  # wait (bounded: 35 s) until it has the request or gives up
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	wait "$pid" || true
	psql -c "SELECT orch_define_endpoint('static', '$url', 10000, '{}')" >/dev/null
	[ -s "$dir/capture.body" ] || orch_die "no worker sent the http step's request (are workers running?)"
	{
		echo 'wrk.method = "POST"'
		echo 'wrk.headers["Content-Type"] = "application/json"'
		echo "wrk.body = [==[$(cat "$dir/capture.body")]==]"
	} >"$1"
}

bench_psql() { orch_as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d bench "$@"; }
psql() { bench_psql -At "$@"; }
