#!/usr/bin/env bash
# examples/demo.sh: the README's demo.  Run as root on a fresh Debian 12
# machine.  It installs what is missing (apt-get), builds and installs the
# extension, starts a throwaway cluster as "postgres" (pg_cron and
# orchestrator preloaded) and a stand-in for the edge functions and Slack
# (test/standin.py), runs the seed's meeting_ended flow (three edge functions
# over HTTP, a SQL step, a Slack recap) and prints what happened.  The cluster and its temp
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
	orch_stop_standin
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

heading "The outside world: a stand-in for the edge functions and Slack, on loopback"
orch_start_standin "$work" "$build"
echo "stand-in on port $ORCH_STANDIN_PORT (test/standin.py)"

heading "Endpoints, secrets, and the sequence for meeting_ended: three edge functions, SQL, Slack"
psql_demo -v base="http://127.0.0.1:$ORCH_STANDIN_PORT" <<'SQL'
-- The service key and the Slack bot token live in orchestrator.secrets, which
-- no ordinary role can read; endpoint headers refer to them by name.
SELECT orch_set_secret('service_key', 'demo-service-key-do-not-print');
SELECT orch_set_secret('slack_bot_token', 'xoxb-demo-token-do-not-print');
SELECT orch_define_endpoint(fn, :'base' || '/functions/v1/' || fn, 5000,
                            '{"Authorization": "Bearer {{secret:service_key}}"}')
FROM unnest(ARRAY['extract-action-items', 'detect-intents', 'suggest-next-actions']) AS fn;
SELECT orch_define_endpoint('slack', :'base' || '/api/chat.postMessage', 5000,
                            '{"Authorization": "Bearer {{secret:slack_bot_token}}"}');
INSERT INTO orchestrator.slack_user_mappings (user_id, org_id, slack_user_id, slack_team_id)
VALUES ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a', 'U0ADA', 'T0ACME');
SELECT name, url, timeout_ms, headers FROM orchestrator.endpoints ORDER BY name;

CREATE SCHEMA app;

-- The application's own table: a sql step writes into it, in the same
-- transaction as the step's state.
CREATE TABLE app.action_items (
	meeting_id text NOT NULL,
	owner text NOT NULL,
	item text NOT NULL
);

-- "record-action-items": stores what the extract-action-items edge function
-- returned (state.outputs holds every earlier step's output).
CREATE FUNCTION app.record_action_items(state jsonb) RETURNS jsonb
LANGUAGE sql AS $$
	INSERT INTO app.action_items (meeting_id, owner, item)
	SELECT state->'event'->'payload'->>'meeting_id', i->>'owner', i->>'item'
	FROM jsonb_array_elements(state->'outputs'->'extract-action-items'->'action_items') AS i;
	SELECT jsonb_build_object('recorded', jsonb_array_length(state->'outputs'->'extract-action-items'->'action_items'))
$$;

-- "slack-post-meeting": the Block Kit message the rep gets in Slack.
CREATE FUNCTION app.post_meeting_message(state jsonb) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT jsonb_build_object(
		'text', format('Recap of %s', state->'event'->'payload'->>'title'),
		'blocks', jsonb_build_array(
			jsonb_build_object('type', 'header', 'text',
				jsonb_build_object('type', 'plain_text', 'text', 'Meeting recap: ' || (state->'event'->'payload'->>'title'))),
			jsonb_build_object('type', 'section', 'text', jsonb_build_object('type', 'mrkdwn', 'text',
				format('*%s action items*, %s commitment(s) to send a proposal',
				       jsonb_array_length(state->'outputs'->'extract-action-items'->'action_items'),
				       jsonb_array_length(jsonb_path_query_array(state,
				           '$.outputs."detect-intents".commitments[*] ? (@.intent == "send_proposal")')))))))
$$;

SELECT orch_define_sequence('meeting_ended', $json$[
  {"name": "extract-action-items", "kind": "http", "endpoint": "extract-action-items",
   "on_failure": "retry", "retry": {"attempts": 3, "backoff_ms": 500},
   "expect": "$.action_items.type() == \"array\"",
   "description": "The extract-action-items edge function"},
  {"name": "detect-intents", "kind": "http", "endpoint": "detect-intents",
   "condition": "$.outputs.\"extract-action-items\".action_items.size() > 0",
   "description": "Commitments and signals (the detect-intents skill)"},
  {"name": "record-action-items", "kind": "sql", "function": "app.record_action_items",
   "description": "Store the action items in the application's table"},
  {"name": "suggest-next-actions", "kind": "http", "endpoint": "suggest-next-actions",
   "on_failure": "continue",
   "description": "Enrichment: skipped, not fatal, if the function is down"},
  {"name": "slack-post-meeting", "kind": "notify", "function": "app.post_meeting_message",
   "description": "Inform-only Slack recap, bound by quiet hours and rate"}
]$json$) AS version;
SQL

payload='{"meeting_id": "mtg_4711", "contact_id": "c_42", "title": "Acme x Globex discovery call",
  "action_items": [
    "I will send you a proposal by Friday",
    "prospect: We need to check SSO support with IT",
    "Book a follow-up demo with their CTO"
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

heading "Rows the sql step wrote into the application's table (committed with the step)"
psql_demo -c "SELECT * FROM app.action_items"

heading "What the outside world received (from the stand-in's request log)"
curl -s "http://127.0.0.1:$ORCH_STANDIN_PORT/_control/requests" | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    b = r["body"] if isinstance(r["body"], dict) else {}
    what = b.get("step") or ("chat.postMessage to " + str(b.get("channel")) + ": " + str(b.get("text")))
    print("%-34s HTTP %s  Idempotency-Key %s  (%s)" % (r["path"], r["status"], r["headers"].get("idempotency-key"), what))
'

heading "The secrets are nowhere in the stored state, history or event log"
psql_demo -c "SELECT count(*) AS rows_mentioning_a_secret FROM (
	SELECT context::text AS t FROM orchestrator.sequence_jobs
	UNION ALL SELECT COALESCE(output::text, '') || COALESCE(error, '') FROM orchestrator.step_history
	UNION ALL SELECT COALESCE(payload::text, '') FROM orchestrator.event_log) s
	WHERE t LIKE '%do-not-print%'"

heading "orchestrator.events: every submit and what became of it"
psql_demo -c "SELECT id, event_type, event_source, outcome, reason, job_id, run_at::timestamptz(0) AS run_at
              FROM orchestrator.events ORDER BY id"

heading "orchestrator.job_counts"
psql_demo -c "SELECT event_type, status, jobs FROM orchestrator.job_counts ORDER BY 1, 2"

heading "Done: stopping the cluster and removing $work"
