#!/usr/bin/env bash
# examples/demo.sh: the README's demo.  Run as root on a fresh Debian 12
# machine.  It installs what is missing (apt-get), builds and installs the
# extension, starts a throwaway cluster as "postgres" (pg_cron and
# orchestrator preloaded), runs the seed's meeting_ended flow through a
# two-step sql sequence and prints what happened.  The cluster and its temp
# directory are removed on exit.
#
# Environment: DEMO_PORT (default 5433; the cluster listens on a Unix socket
# in its own temp directory only, so the port cannot clash with a server
# listening on TCP).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib/common.sh"

[ "$(id -u)" = 0 ] || orch_die "run as root (the server runs as the postgres user)"

heading() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

heading "Installing missing packages, building and installing the extension"
orch_install_packages
# Build a copy of the tree, so the demo never touches build products in the
# working tree that other people may be using.
build=$(orch_workdir "$src")
work=$(mktemp -d /tmp/orchestrator-demo.XXXXXX)
chown postgres "$work"
cleanup() {
	local rc=$?
	if [ $rc -ne 0 ] && [ -f "$work/server.log" ]; then
		echo "--- last lines of the server log" >&2
		tail -n 30 "$work/server.log" >&2
	fi
	orch_stop_cluster "$work"
	rm -rf "$work" "$build"
	exit $rc
}
trap cleanup EXIT
orch_build_install "$build"
echo "installed into $($PG_CONFIG --pkglibdir)"

port=${DEMO_PORT:-5433}
heading "Starting a throwaway cluster in $work (port $port, database demo)"
orch_start_cluster "$work" "$port" demo
echo "server log: $work/server.log"

psql_demo() {
	psql -X -v ON_ERROR_STOP=1 -q -P pager=off -h "$work" -p "$port" -U postgres -d demo "$@"
}

heading "CREATE EXTENSION, one org, two users, their preferences"
psql_demo <<'SQL'
CREATE EXTENSION orchestrator;

INSERT INTO orchestrator.orgs (id, name)
VALUES ('00000000-0000-0000-0000-00000000000a', 'Acme Sales');

INSERT INTO orchestrator.users (id, org_id, display_name) VALUES
	('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a', 'Ada (awake, London)'),
	('00000000-0000-0000-0000-0000000000a2', '00000000-0000-0000-0000-00000000000a', 'Bob (in quiet hours, New York)');

INSERT INTO orchestrator.notification_feature_settings (org_id, feature_key, is_enabled)
VALUES ('00000000-0000-0000-0000-00000000000a', 'meeting_ended', true);

-- Ada: quiet hours that never contain "now" (they start in 2 h and end in 3 h).
-- Bob: quiet hours from an hour ago to an hour from now, in his own time zone,
-- so a submit for him is always deferred, whatever the time of day.
INSERT INTO orchestrator.slack_user_preferences
	(user_id, org_id, timezone, quiet_hours_start, quiet_hours_end, max_notifications_per_hour)
VALUES
	('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a', 'Europe/London',
	 ((now() AT TIME ZONE 'Europe/London') + interval '2 hours')::time,
	 ((now() AT TIME ZONE 'Europe/London') + interval '3 hours')::time, 10),
	('00000000-0000-0000-0000-0000000000a2', '00000000-0000-0000-0000-00000000000a', 'America/New_York',
	 ((now() AT TIME ZONE 'America/New_York') - interval '1 hour')::time,
	 ((now() AT TIME ZONE 'America/New_York') + interval '1 hour')::time, 10);

SELECT u.display_name, p.timezone, p.quiet_hours_start::time(0) AS quiet_from,
       p.quiet_hours_end::time(0) AS quiet_until,
       (now() AT TIME ZONE p.timezone)::time(0) AS local_now
FROM orchestrator.users u JOIN orchestrator.slack_user_preferences p ON p.user_id = u.id
ORDER BY u.display_name;
SQL

# The worker connects to database "demo", which orch_start_cluster creates
# after the server is up: its first attempt fails and the postmaster restarts
# it a second later.  Wait for it, so the timings below show the wake-up.
waited=0
until [ "$(psql_demo -At -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orchestrator worker'")" -ge 1 ]; do
	waited=$((waited + 1))
	[ $waited -le 300 ] || orch_die "the orchestrator worker did not start within 30 s"
	sleep 0.1
done
psql_demo -c "SELECT pid, backend_type, datname, wait_event FROM pg_stat_activity WHERE backend_type = 'orchestrator worker'"

heading "The sequence for meeting_ended: two sql steps"
psql_demo <<'SQL'
CREATE SCHEMA app;

-- The application's own table: the first step writes into it, in the same
-- transaction as the step's state.
CREATE TABLE app.action_items (
	meeting_id text NOT NULL,
	owner text NOT NULL,
	item text NOT NULL
);

-- Step 1, "extract-action-items": reads the event payload from the state and
-- returns the action items it finds (lines that promise something).
CREATE FUNCTION app.extract_action_items(state jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	v_items jsonb;
BEGIN
	SELECT COALESCE(jsonb_agg(jsonb_build_object('owner', h->>'speaker', 'item', h->>'text')), '[]')
	INTO v_items
	FROM jsonb_array_elements(state->'event'->'payload'->'highlights') AS h
	WHERE h->>'text' ~* '\m(i''ll|we''ll|will|need to)\M';

	INSERT INTO app.action_items (meeting_id, owner, item)
	SELECT state->'event'->'payload'->>'meeting_id', i->>'owner', i->>'item'
	FROM jsonb_array_elements(v_items) AS i;

	RETURN jsonb_build_object('meeting_id', state->'event'->'payload'->>'meeting_id',
	                          'action_items', v_items,
	                          'count', jsonb_array_length(v_items));
END
$$;

-- Step 2, "detect-intents": reads the previous step's output from
-- state.outputs and classifies commitments.
CREATE FUNCTION app.detect_intents(state jsonb) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT jsonb_build_object('commitments', COALESCE(jsonb_agg(jsonb_build_object(
		'speaker', i->>'owner',
		'intent', CASE WHEN i->>'item' ~* 'proposal' THEN 'send_proposal'
		               WHEN i->>'item' ~* 'meeting|call|demo' THEN 'book_meeting'
		               ELSE 'other' END,
		'confidence', CASE WHEN i->>'item' ~* 'proposal' THEN 0.92 ELSE 0.6 END,
		'phrase', i->>'item')), '[]'))
	FROM jsonb_array_elements(state->'outputs'->'extract-action-items'->'action_items') AS i
$$;

SELECT orch_define_sequence('meeting_ended', $json$[
  {"name": "extract-action-items", "kind": "sql",
   "function": "app.extract_action_items",
   "on_failure": "retry", "retry": {"attempts": 3, "backoff_ms": 500},
   "description": "Action items from the meeting highlights"},
  {"name": "detect-intents", "kind": "sql",
   "function": "app.detect_intents",
   "condition": "$.outputs.\"extract-action-items\".count > 0",
   "expect": "$.commitments.type() == \"array\"",
   "on_failure": "stop",
   "description": "Commitments and signals in the action items"}
]$json$) AS version;

\x on
SELECT event_type, version, jsonb_pretty(steps) AS steps
FROM orchestrator.sequence_definitions WHERE event_type = 'meeting_ended';
SQL

payload='{"meeting_id": "mtg_4711", "contact_id": "c_42", "title": "Acme x Globex discovery call",
  "highlights": [
    {"speaker": "rep", "text": "I will send you a proposal by Friday"},
    {"speaker": "prospect", "text": "We need to check SSO support with IT"},
    {"speaker": "prospect", "text": "Budget is approved for Q3"}
  ]}'

submit() {
	local user=$1
	psql_demo -v payload="$payload" -v user="$user" <<'SQL'
SELECT outcome, job_id, run_at, reason
FROM orch_submit_event('meeting_ended', 'webhook:meetingbaas',
                       '00000000-0000-0000-0000-00000000000a', :'user', :'payload');
SQL
}

heading "orch_submit_event: meeting_ended from webhook:meetingbaas for Ada"
submit 00000000-0000-0000-0000-0000000000a1

heading "The same event again (the webhook fired twice): a duplicate, pointing at the first job"
submit 00000000-0000-0000-0000-0000000000a1

heading "The same meeting for Bob, who is inside his quiet hours: deferred, not dropped"
submit 00000000-0000-0000-0000-0000000000a2

heading "An event type with no sequence: skipped, with the reason logged"
psql_demo <<'SQL'
SELECT outcome, job_id, run_at, reason
FROM orch_submit_event('email_received', 'webhook:email',
                       '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1',
                       '{"thread_id": "t_9"}');
SQL

job=$(psql_demo -At -c "SELECT job_id FROM orchestrator.events WHERE outcome = 'accepted' ORDER BY id LIMIT 1")
[ -n "$job" ] || orch_die "no accepted job found"

heading "Waiting for job $job (the worker was woken by the commit, no polling)"
deadline=$(($(date +%s%N) / 1000000 + 30000))
status=
while :; do
	status=$(psql_demo -At -c "SELECT status FROM orchestrator.sequence_jobs WHERE id = '$job'")
	case $status in
	completed) break ;;
	failed | cancelled)
		psql_demo -c "SELECT * FROM orch_job_timeline('$job')"
		orch_die "job $job ended $status" ;;
	esac
	if [ $(($(date +%s%N) / 1000000)) -ge "$deadline" ]; then
		psql_demo -c "SELECT * FROM orchestrator.jobs WHERE id = '$job'" || true
		orch_die "job $job did not complete within 30 s (status: ${status:-none})"
	fi
	sleep 0.1
done
psql_demo -At -c "SELECT format('claimed %s ms and completed %s ms after the submit transaction began',
                         round((extract(epoch FROM started_at - created_at) * 1000)::numeric, 1),
                         round((extract(epoch FROM finished_at - created_at) * 1000)::numeric, 1))
                  FROM orchestrator.sequence_jobs WHERE id = '$job'"

heading "The job row (orchestrator.jobs)"
psql_demo -c '\x on' -c "SELECT * FROM orchestrator.jobs WHERE id = '$job'"

heading "Its timeline: orch_job_timeline(job_id)"
psql_demo -c "SELECT at::time(3) AS at, entry, step, attempt, detail FROM orch_job_timeline('$job')"

heading "context->'outputs': what each step returned"
psql_demo -At -c "SELECT jsonb_pretty(context->'outputs') FROM orchestrator.sequence_jobs WHERE id = '$job'"

heading "context->'execution_metadata': the seed's audit record"
psql_demo -At -c "SELECT jsonb_pretty(context->'execution_metadata') FROM orchestrator.sequence_jobs WHERE id = '$job'"

heading "Rows the first step wrote into the application's table (committed with the step)"
psql_demo -c "SELECT * FROM app.action_items"

heading "orchestrator.events: every submit and what became of it"
psql_demo -c "SELECT id, event_type, event_source, outcome, reason, job_id, run_at::timestamptz(0) AS run_at
              FROM orchestrator.events ORDER BY id"

heading "orchestrator.job_counts"
psql_demo -c "SELECT event_type, status, jobs FROM orchestrator.job_counts ORDER BY 1, 2"

heading "Done: stopping the cluster and removing $work"
