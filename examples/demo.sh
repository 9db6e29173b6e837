#!/usr/bin/env bash
# examples/demo.sh: the README's demo.  Run as root on a fresh Debian 12
# machine.  It installs what is missing (apt-get), builds and installs the
# extension, starts a throwaway cluster as "postgres" (pg_cron and
# orchestrator preloaded, user-scoped steps as role authenticated) and a
# stand-in for the edge functions and Slack (test/standin.py), loads the
# seed's sequences (examples/sequences) and runs the seed's flows:
#
#   1. a meeting ends (a MeetingBaaS webhook row): intents are detected, a
#      proposal_generation follow-up is chained, task creation waits for
#      approval and the rep approves it with a Slack click;
#   2. the chained proposal's cover email waits for approval; the rep edits
#      its subject and it is sent as edited;
#   3. an email for a rep in quiet hours is deferred, not dropped;
#   4. an edge function answers 429: the step is deferred, then runs;
#   5. an org over its AI budget: two sequences halt, one Slack notice;
#   6. the morning brief, fanned out to every rep, printed as Ada gets it;
#
# and ends with a readable timeline of every job, the engine's own notices
# included.  The cluster and its temp
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
say() { printf '%s\n' "$*" | fold -s -w 100; }

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
orch_start_cluster "$work" "$port" demo "orchestrator.workers = 2" "orchestrator.user_role = 'authenticated'"
echo "server log: $work/server.log"

psql_demo() {
	psql -X -v ON_ERROR_STOP=1 -q -P pager=off -h "$work" -p "$port" -U postgres -d demo "$@"
}
q() { psql_demo -At -c "$1"; }

# The workers connect to database "demo", which orch_start_cluster creates
# after the server is up: their first attempt fails and the postmaster
# restarts them a second later.  Wait for them.
waited=0
until [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orchestrator worker'")" -ge 2 ]; do
	waited=$((waited + 1))
	[ $waited -le 300 ] || orch_die "the orchestrator workers did not start within 30 s"
	sleep 0.1
done

heading "The outside world: a stand-in for the edge functions and Slack, on loopback"
orch_start_standin "$work" "$build"
base="http://127.0.0.1:$ORCH_STANDIN_PORT"
echo "stand-in on port $ORCH_STANDIN_PORT (test/standin.py)"

heading "CREATE EXTENSION; org Acme Sales with Ada (awake, London) and Bob (in quiet hours, New York)"
psql_demo <<'SQL'
CREATE EXTENSION orchestrator;
INSERT INTO orchestrator.orgs (id, name) VALUES
	('00000000-0000-0000-0000-00000000000a', 'Acme Sales'),
	('00000000-0000-0000-0000-00000000000c', 'Frugal Ltd');
INSERT INTO orchestrator.users (id, org_id, display_name) VALUES
	('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a', 'Ada'),
	('00000000-0000-0000-0000-0000000000a2', '00000000-0000-0000-0000-00000000000a', 'Bob'),
	('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-00000000000c', 'Carol');
-- Ada: quiet hours that never contain "now" (they start in 2 h, end in 3 h).
-- Bob: quiet hours from an hour ago to an hour from now, in his time zone.
INSERT INTO orchestrator.slack_user_preferences
	(user_id, org_id, timezone, quiet_hours_start, quiet_hours_end, max_notifications_per_hour)
VALUES
	('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a', 'Europe/London',
	 ((now() AT TIME ZONE 'Europe/London') + interval '2 hours')::time,
	 ((now() AT TIME ZONE 'Europe/London') + interval '3 hours')::time, 30),
	('00000000-0000-0000-0000-0000000000a2', '00000000-0000-0000-0000-00000000000a', 'America/New_York',
	 ((now() AT TIME ZONE 'America/New_York') - interval '1 hour')::time,
	 ((now() AT TIME ZONE 'America/New_York') + interval '1 hour')::time, 30);
INSERT INTO orchestrator.slack_user_mappings (user_id, org_id, slack_user_id, slack_team_id) VALUES
	('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a', 'U0ADA', 'T0ACME'),
	('00000000-0000-0000-0000-0000000000a2', '00000000-0000-0000-0000-00000000000a', 'U0BOB', 'T0ACME'),
	('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-00000000000c', 'U0CAROL', 'T0FRUGAL');
-- The service key and the Slack bot token live in orchestrator.secrets, which
-- no ordinary role can read; endpoint headers refer to them by name.
SELECT orch_set_secret('service_key', 'demo-service-key-do-not-print');
SELECT orch_set_secret('slack_bot_token', 'xoxb-demo-token-do-not-print');
SELECT u.display_name, p.timezone, p.quiet_hours_start::time(0) AS quiet_from,
       p.quiet_hours_end::time(0) AS quiet_until, (now() AT TIME ZONE p.timezone)::time(0) AS local_now
FROM orchestrator.users u JOIN orchestrator.slack_user_preferences p ON p.user_id = u.id ORDER BY 1;
SQL

heading "The seed's sequences (examples/sequences/all.sql): endpoints, the app's tables under RLS, context sources, nine event types"
psql_demo -v base="$base" -f "$build/examples/sequences/all.sql" >/dev/null
psql_demo <<'SQL'
SELECT d.event_type, d.version, string_agg(s->>'name' || CASE WHEN (s->'requires_approval')::boolean THEN ' [approval]' ELSE '' END
                                           || CASE WHEN (s->'ai')::boolean THEN ' [ai]' ELSE '' END, ' -> ' ORDER BY o) AS steps
FROM orchestrator.sequence_definitions d, jsonb_array_elements(d.steps) WITH ORDINALITY AS x(s, o)
WHERE d.event_type NOT LIKE 'orchestrator:%' GROUP BY 1, 2 ORDER BY 1;
SELECT name, tier, COALESCE(function, 'endpoint ' || endpoint) AS source FROM orchestrator.context_sources ORDER BY tier, name;
-- the demo's own helpers: a webhook table for MeetingBaaS, and a timeline formatter
CREATE TABLE app.meetingbaas_webhooks (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	org_id uuid NOT NULL, user_id uuid NOT NULL,
	meeting_id uuid NOT NULL, contact_id uuid, transcript_id uuid, transcript text,
	received_at timestamptz NOT NULL DEFAULT now());
CREATE TRIGGER submit_meeting_ended AFTER INSERT ON app.meetingbaas_webhooks
	FOR EACH ROW EXECUTE FUNCTION orch_enqueue_trigger('meeting_ended', 'webhook:meetingbaas');
CREATE SCHEMA demo;
CREATE FUNCTION demo.describe(entry text, detail jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE
		WHEN detail ? 'execution_metadata' THEN (SELECT format('%s of %s steps done, %s failed, %s approval gate(s), %s follow-up(s), AI $%s, %s ms in steps',
			m->>'steps_completed', m->>'steps_attempted', m->>'steps_failed', m->>'approval_gates_hit',
			m->>'followups_queued', m->>'total_ai_cost', round((m->>'total_duration_ms')::numeric)) FROM (SELECT detail->'execution_metadata' AS m) x)
		WHEN entry LIKE 'approval %' THEN format('%s by %s via %s%s', detail->>'action',
			CASE detail->>'resolved_by' WHEN '00000000-0000-0000-0000-0000000000a1' THEN 'Ada' ELSE detail->>'resolved_by' END,
			detail->>'via', COALESCE(' ' || (detail->'modifications')::text, ''))
		WHEN entry LIKE 'follow-up %' THEN concat_ws(' ', 'job ' || (detail->>'job_id'), 'reason: ' || (detail->>'reason'))
		WHEN entry LIKE 'event %' THEN concat_ws(' ', detail->>'source', 'reason: ' || (detail->>'reason'), 'run at ' || to_char((detail->>'run_at')::timestamptz, 'HH24:MI:SS TZ'))
		WHEN detail ? 'kind' THEN concat_ws(' ', detail->>'kind', (detail->>'duration_ms')::numeric(10,1) || ' ms',
			'error: ' || (detail->>'error'), '-> ' || left((detail->'output')::text, 70))
		ELSE COALESCE(detail->>'note', left(detail::text, 90)) END
$$;
CREATE FUNCTION demo.timeline(p_job uuid) RETURNS TABLE ("+ms" numeric, entry text, step text, detail text) LANGUAGE sql AS $$
	SELECT round((extract(epoch FROM t.at - min(t.at) OVER ()) * 1000)::numeric), t.entry, t.step, demo.describe(t.entry, t.detail)
	FROM orch_job_timeline(p_job) t
$$;
SQL

# wait_job JOB STATUS...: a bounded wait for a job to reach one of the statuses
wait_job() {
	local job=$1 want=" ${*:2} " status deadline=$(($(date +%s) + 60))
	while :; do
		status=$(q "SELECT status FROM orchestrator.sequence_jobs WHERE id = '$job'")
		case "$want" in *" $status "*) return 0 ;; esac
		case $status in failed | cancelled)
			psql_demo -c "SELECT * FROM demo.timeline('$job')"
			orch_die "job $job ended $status" ;;
		esac
		[ "$(date +%s)" -lt "$deadline" ] || orch_die "job $job is still ${status:-missing} after 60 s"
		sleep 0.1
	done
}
# wait_for SQL: a bounded wait for a query to return t
wait_for() {
	local deadline=$(($(date +%s) + 60))
	until [ "$(q "$1")" = t ]; do
		[ "$(date +%s)" -lt "$deadline" ] || orch_die "timed out waiting for: $1"
		sleep 0.1
	done
}
# click JOB ACTION [MODIFICATIONS]: the rep's click on the job's approval
# request, as slack-interactive records it; prints what the engine made of it
click() {
	psql_demo -v job="$1" -v action="$2" -v mods="${3:-}" <<'SQL'
INSERT INTO app.slack_interactions (org_id, user_id, action, pending_action_id, sequence_job_id, resume_step, user_modifications)
SELECT a.org_id, a.user_id, :'action', a.id, a.job_id, a.step_index, NULLIF(:'mods', '')::jsonb
FROM orchestrator.slack_pending_actions a WHERE a.job_id = :'job' ORDER BY a.created_at DESC LIMIT 1;
SELECT event_type, event_source, outcome, reason FROM orchestrator.events ORDER BY id DESC LIMIT 1;
SQL
}
timeline() {
	heading "Timeline: $2, job $1"
	psql_demo -c "SELECT * FROM demo.timeline('$1')"
}
slack_messages() {
	curl -s "$base/_control/requests?path=/api/chat.postMessage" | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    b = r["body"] if isinstance(r["body"], dict) else {}
    buttons = [e["text"]["text"] for blk in b.get("blocks") or [] if blk.get("type") == "actions" for e in blk.get("elements", [])]
    print("  to %-8s %s%s" % (b.get("channel"), (b.get("text") or "").split("\n")[0][:80], ("  [" + "] [".join(buttons) + "]") if buttons else ""))
'
}

heading "1. A meeting ends: MeetingBaaS posts its webhook (a row in app.meetingbaas_webhooks)"
say "The trigger submits meeting_ended in the inserting transaction. The transcript text in the row is dropped: jobs reference transcripts by id."
psql_demo <<'SQL'
INSERT INTO app.meetingbaas_webhooks (org_id, user_id, meeting_id, contact_id, transcript_id, transcript)
VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1',
        '40000000-0000-0000-0000-000000000005', '20000000-0000-0000-0000-000000000001',
        '50000000-0000-0000-0000-000000000001', 'Grace: ...  Ada: I will send you a proposal by Friday ...');
SELECT event_type, event_source, outcome, job_id FROM orchestrator.events ORDER BY id DESC LIMIT 1;
SQL
meeting=$(q "SELECT job_id FROM orchestrator.events WHERE event_type = 'meeting_ended' ORDER BY id DESC LIMIT 1")
wait_job "$meeting" awaiting_approval
say "The job ran extract-action-items, detect-intents (an AI step, budget-checked), suggest-next-actions and draft-tasks, then stopped before create-tasks: task creation from detected intents needs approval."
psql_demo <<SQL
SELECT status, current_step_name AS waiting_at FROM orchestrator.jobs WHERE id = '$meeting';
SELECT c->>'speaker' AS speaker, c->>'intent' AS intent, c->>'confidence' AS confidence, c->>'phrase' AS phrase
FROM orchestrator.sequence_jobs, jsonb_array_elements(context->'outputs'->'detect-intents'->'commitments') c WHERE id = '$meeting';
SELECT id AS pending_action_id, step_name, pattern, effect, status, draft FROM orchestrator.slack_pending_actions WHERE job_id = '$meeting';
SQL
say "The rep's commitment to send a proposal (confidence >= 0.8) chained a proposal_generation job, linked both ways:"
proposal=$(q "SELECT id FROM orchestrator.sequence_jobs WHERE parent_job_id = '$meeting' AND event_type = 'proposal_generation'")
[ -n "$proposal" ] || orch_die "no proposal_generation follow-up"
psql_demo -c "SELECT id, event_type, event_source, chain_depth, trigger_payload->>'trigger_phrase' AS trigger_phrase FROM orchestrator.sequence_jobs WHERE id = '$proposal'" \
	-c "SELECT event_chain FROM orchestrator.sequence_jobs WHERE id = '$meeting'"
wait_for "SELECT count(*) >= 1 FROM orchestrator.sequence_jobs WHERE event_type = 'orchestrator:approval_request' AND status = 'completed'"
say "Slack so far (the approval request carries one button per action; each button's value is the slack_approval_received payload):"
slack_messages

heading "Ada clicks Approve: slack-interactive records the click in app.slack_interactions"
click "$meeting" approve
say "Slack delivers the same click twice: the second changes nothing."
click "$meeting" approve
wait_job "$meeting" completed
psql_demo -c "SELECT title, due_date FROM app.tasks WHERE source_job_id = '$meeting' ORDER BY title"

heading "2. The chained proposal: templates (tier 3) loaded for generate-proposal only; the cover email waits for approval"
wait_job "$proposal" awaiting_approval
psql_demo <<SQL
SELECT jsonb_object_keys(context->'context') AS context_loaded FROM orchestrator.sequence_jobs WHERE id = '$proposal';
SELECT context->'context'->'tier3' ? 'proposal_templates' AS templates_loaded,
       context->'context'->'tier3' ? 'apollo_enrichment' AS enrichment_loaded,
       context->'outputs'->'generate-proposal'->>'title' AS proposal,
       context->'outputs'->'draft-cover-email'->>'to' AS draft_to,
       context->'outputs'->'draft-cover-email'->>'subject' AS draft_subject
FROM orchestrator.sequence_jobs WHERE id = '$proposal';
SQL
say "Ada clicks Edit and shortens the subject; the email goes out as edited (email-send-as-rep only ever runs after approval)."
click "$proposal" edit '{"subject": "Your Globex proposal, as promised"}'
wait_job "$proposal" completed
psql_demo -c "SELECT context->'outputs'->'send-proposal'->>'to' AS sent_to, context->'outputs'->'send-proposal'->>'subject' AS sent_subject, context->'outputs'->'send-proposal'->>'message_id' AS message_id FROM orchestrator.sequence_jobs WHERE id = '$proposal'"

heading "3. An email for Bob, who is in his quiet hours: deferred to the end of them, not dropped"
psql_demo <<'SQL'
SELECT outcome, reason, run_at AT TIME ZONE 'America/New_York' AS runs_at_bobs_time
FROM orch_submit_event('email_received', 'webhook:email', '00000000-0000-0000-0000-00000000000a',
	'00000000-0000-0000-0000-0000000000a2',
	'{"thread_id": "t-77", "from": "art@vandelay.example", "from_name": "Art Vandelay", "subject": "Import volumes",
	  "snippet": "Can you quote 10,000 crates?", "contact_id": "20000000-0000-0000-0000-000000000004"}');
SQL

heading "4. find-available-slots answers 429 Retry-After: 2 once: the step is deferred, not failed, then runs"
curl -s -X POST "$base/_control/behave" -d '{"path": "/functions/v1/find-available-slots", "mode": "429", "retry_after": "2", "times": 1}' >/dev/null
slots=$(q "SELECT job_id FROM orch_submit_event('calendar_find_times', 'webhook:calendar', '00000000-0000-0000-0000-00000000000a',
	'00000000-0000-0000-0000-0000000000a1', '{\"contact_id\": \"20000000-0000-0000-0000-000000000002\", \"window_start\": \"2026-12-01\", \"duration_minutes\": 45}')")
wait_job "$slots" completed
psql_demo -c "SELECT step_name, outcome, http_status, attempt, error FROM orchestrator.step_history WHERE job_id = '$slots' ORDER BY id"

heading "5. Frugal Ltd has spent its AI budget: two coaching digests halt at their AI step, Carol gets one notice"
psql_demo <<'SQL'
INSERT INTO orchestrator.cost_budgets (org_id, monthly_budget_usd) VALUES ('00000000-0000-0000-0000-00000000000c', 1.00);
BEGIN;
-- accepted while the budget holds ...
SELECT outcome FROM orch_submit_event('coaching_digest', 'cron:coaching_weekly', '00000000-0000-0000-0000-00000000000c',
	'00000000-0000-0000-0000-0000000000c1', '{"week": "2026-W47"}');
SELECT outcome FROM orch_submit_event('coaching_digest', 'cron:coaching_weekly', '00000000-0000-0000-0000-00000000000c',
	'00000000-0000-0000-0000-0000000000c1', '{"week": "2026-W48"}');
-- ... and spent in the same transaction, before any step ran
INSERT INTO orchestrator.cost_ledger (org_id, step_name, cost_usd) VALUES ('00000000-0000-0000-0000-00000000000c', 'earlier usage', 1.00);
COMMIT;
SQL
wait_for "SELECT count(*) = 2 FROM orchestrator.sequence_jobs WHERE event_type = 'coaching_digest' AND status = 'failed'"
wait_for "SELECT bool_and(status = 'completed') AND count(*) = 1 FROM orchestrator.sequence_jobs WHERE event_type = 'orchestrator:budget_notice'"
psql_demo <<'SQL'
SELECT trigger_payload->>'week' AS week, status, last_error FROM orchestrator.sequence_jobs WHERE event_type = 'coaching_digest' ORDER BY 1;
SELECT outcome, reason FROM orch_submit_event('coaching_digest', 'cron:coaching_weekly', '00000000-0000-0000-0000-00000000000c',
	'00000000-0000-0000-0000-0000000000c1', '{"week": "2026-W49"}');
SQL

heading "6. The morning brief: pg_cron's fan-out, one event per rep with the feature on"
psql_demo -c "SELECT * FROM orch_fan_out('morning_brief', 'cron:morning')" \
	-c "SELECT u.display_name, e.outcome, e.reason, e.run_at::timestamptz(0) AS run_at FROM orchestrator.events e JOIN orchestrator.users u ON u.id = e.user_id WHERE e.event_type = 'morning_brief' ORDER BY 1"
brief=$(q "SELECT id FROM orchestrator.sequence_jobs WHERE event_type = 'morning_brief' AND user_id = '00000000-0000-0000-0000-0000000000a1'")
wait_job "$brief" completed
say "What Ada reads in Slack (rendered in the seed's enhanced format; RLS kept Bob's meetings and threads out of her steps):"
echo
q "SELECT context->'outputs'->'render'->>'text' FROM orchestrator.sequence_jobs WHERE id = '$brief'" | sed 's/^/    /'

heading "7. A territory review: fan-out and fan-in, a rate-limited endpoint, a signal"
say "The review enriches each of five accounts in a child job of its own (fan_out). The enrichment API allows 2 requests a second, whichever worker calls: orch_set_rate_limit spaces the calls. The review then waits, holding no worker, for the manager's sign-off: a signal sent to the review's key."
psql_demo -v base="$base" <<'SQL'
SELECT orch_define_endpoint('apollo-rated', :'base' || '/functions/v1/apollo-enrichment', 10000, '{}');
SELECT orch_set_rate_limit('apollo-rated', 2);
CREATE FUNCTION demo.territory_accounts(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('companies', '["Globex", "Initech", "Vandelay Industries", "Hooli", "Umbrella"]'::jsonb) $$;
CREATE FUNCTION demo.territory_summary(state jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('accounts', jsonb_array_length(state->'outputs'->'enrich-all'->'results'),
	                          'enriched', state->'outputs'->'enrich-all'->'completed',
	                          'signed_off_by', state->'outputs'->'manager-sign-off'->>'by') $$;
SELECT orch_define_sequence('account_enrichment', '[{"name": "enrich", "kind": "http", "endpoint": "apollo-rated"}]');
SELECT orch_define_sequence('territory_review', '[
  {"name": "accounts", "kind": "sql", "function": "demo.territory_accounts"},
  {"name": "enrich-all", "kind": "fan_out", "sequence": "account_enrichment",
   "for_each": "$.outputs.accounts.companies[*]", "payload": {"company": "@"}, "on_child_failure": "collect"},
  {"name": "manager-sign-off", "kind": "signal", "signal": "review_signed_off", "key": "$.event.payload.review_id",
   "timeout": "1 hour"},
  {"name": "summarise", "kind": "sql", "function": "demo.territory_summary"}]');
SQL
review=$(q "SELECT job_id FROM orch_submit_event('territory_review', 'app:reviews', '00000000-0000-0000-0000-00000000000a',
	'00000000-0000-0000-0000-0000000000a1', '{\"review_id\": \"rev-2026-12\"}')")
wait_for "SELECT count(*) = 1 FROM orchestrator.waits WHERE job_id = '$review' AND kind = 'signal'"
say "The five children ran, each one level deeper in the chain; their outputs came back in the list's order:"
psql_demo -c "SELECT c.ord, r->'outputs'->'enrich'->'company'->>'name' AS company, j.status, j.chain_depth
	FROM orchestrator.sequence_jobs p, jsonb_array_elements(p.context->'outputs'->'enrich-all'->'results') WITH ORDINALITY r(r, ord)
	JOIN orchestrator.fan_children c ON c.job_id = '$review' AND c.ord = r.ord
	JOIN orchestrator.sequence_jobs j ON j.id = c.child_id WHERE p.id = '$review' ORDER BY c.ord"
say "The rate limit spaced the five calls half a second apart (ms after the first):"
curl -s "$base/_control/requests?path=/functions/v1/apollo-enrichment" | python3 -c '
import json, sys
rs = [r for r in json.load(sys.stdin) if isinstance(r.get("body"), dict) and r["body"].get("step") == "enrich"][-5:]
t0 = rs[0]["started"]
print("  " + "  ".join("%d" % round((r["started"] - t0) * 1000) for r in rs))
'
say "The review now waits for the sign-off, pending until its timeout, on no worker:"
psql_demo -c "SELECT j.status, w.kind, w.signal, w.key, (w.until - w.since)::interval(0) AS timeout FROM orchestrator.waits w JOIN orchestrator.sequence_jobs j ON j.id = w.job_id WHERE w.job_id = '$review'"
say "The manager signs off in the app; its trigger (or any SQL) sends the signal to the review's key:"
psql_demo -c "SELECT orch_signal_key('rev-2026-12', 'review_signed_off', '{\"by\": \"Maria (sales manager)\"}') = '$review' AS woke_the_review"
wait_job "$review" completed
psql_demo -c "SELECT context->'outputs'->'summarise' AS summary FROM orchestrator.sequence_jobs WHERE id = '$review'"

heading "What an operator sees: orchestrator.stats (what Prometheus scrapes) and orchestrator.flow_controls"
psql_demo -c "SELECT metric, labels, round(value::numeric, 3) AS value FROM orchestrator.stats
	WHERE metric IN ('jobs', 'jobs_failed', 'oldest_due_pending_seconds', 'deferrals', 'http_in_flight')
	   OR (metric = 'step_duration_ms' AND labels->>'event_type' = 'account_enrichment')
	ORDER BY metric, labels::text" \
	-c "SELECT control, scope, key, setting FROM orchestrator.flow_controls"

heading "Every Slack message the stand-in received"
slack_messages

# every job, in the order they were submitted (the engine's own notices too;
# jobs made in one transaction share created_at, their event log ids do not)
while IFS='|' read -r job what; do
	timeline "$job" "$what"
done < <(q "SELECT j.id, j.event_type || ' for ' || u.display_name || ' (' || j.status || ')'
            FROM orchestrator.sequence_jobs j JOIN orchestrator.users u ON u.id = j.user_id
            ORDER BY (SELECT min(e.id) FROM orchestrator.event_log e WHERE e.job_id = j.id)")

heading "Audit: execution_metadata of every job, and the service-scope steps"
psql_demo <<'SQL'
SELECT event_type, status, context->'execution_metadata'->>'steps_completed' AS done,
       context->'execution_metadata'->>'approval_gates_hit' AS gates,
       context->'execution_metadata'->>'followups_queued' AS followups,
       context->'execution_metadata'->>'total_ai_cost' AS ai_cost,
       context->'execution_metadata'->>'chain_depth' AS depth
FROM orchestrator.sequence_jobs j ORDER BY (SELECT min(e.id) FROM orchestrator.event_log e WHERE e.job_id = j.id);
SELECT event_type, step_name, outcome, run_as FROM orchestrator.service_scope_audit ORDER BY id;
SQL

heading "Nothing secret or private is stored: secrets, transcript text"
psql_demo -c "SELECT count(*) FILTER (WHERE t LIKE '%do-not-print%') AS rows_with_a_secret,
	count(*) FILTER (WHERE t LIKE '%I will send you a proposal by Friday ...%') AS rows_with_transcript_text FROM (
	SELECT context::text || trigger_payload::text AS t FROM orchestrator.sequence_jobs
	UNION ALL SELECT COALESCE(output::text, '') || COALESCE(error, '') FROM orchestrator.step_history
	UNION ALL SELECT COALESCE(payload::text, '') FROM orchestrator.event_log) s"

heading "orchestrator.events: every submit and what became of it"
psql_demo -c "SELECT id, event_type, event_source, outcome, reason, run_at::timestamptz(0) AS run_at FROM orchestrator.events ORDER BY id"

heading "Done: stopping the cluster and removing $work"
