
# Copyright (c) orchestrator authors
#
# The seed's sequences as shipped in examples/sequences, run end to end
# against the stand-in on a cluster with pg_cron and orchestrator preloaded
# (orchestrator.user_role = authenticated, as on Supabase):
#   - every file loads (all.sql; the optional 90_schedules.sql last);
#   - meeting_ended stops at its task-creation gate having queued a
#     proposal_generation follow-up (parent_job_id, orchestrator:chain); a
#     click recorded in app.slack_interactions approves it, the tasks are
#     written and the recap goes out; a second click changes nothing;
#   - proposal_generation loads its tier 3 templates, stops before the email
#     send, and a cancel click cancels it: nothing is sent;
#   - email_received sends nothing before approval; an edit changes the
#     draft the send step sends; an email needing no reply asks for nothing;
#   - morning_brief renders exactly the seed's enhanced format, with RLS
#     keeping Bob's rows out of Ada's user-scoped steps while the service
#     scope pipeline scan sees the org;
#   - campaign_check survives monitor-campaigns answering 500;
#   - pre_meeting (submitted by app.queue_pre_meeting_briefs, what the
#     pg_cron schedule runs), calendar_find_times and coaching_digest
#     complete with what their sources returned (tier 3 enrichment, tier 2
#     contact, AI cost);
#   - no transcript text is anywhere, although the meeting_ended webhook
#     delivered it: job state, history, event log, approvals, or any request
#     the engine sent.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use JSON::PP;
use Time::HiRes qw(time usleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my $examples = "$FindBin::Bin/../../examples/sequences";
my $org = '00000000-0000-0000-0000-00000000000a';
my $ada = '00000000-0000-0000-0000-0000000000a1';
my $bob = '00000000-0000-0000-0000-0000000000a2';
my $grace = '20000000-0000-0000-0000-000000000001';
my $transcript_fragment = 'Our board signed off the budget';
my $json = JSON::PP->new->canonical;

my ($base) = start_standin();
standin_reset();

my $node = start_node(
	'examples',
	workers => 1,
	conf => "shared_preload_libraries = 'pg_cron, orchestrator'\n"
	  . "cron.database_name = 'postgres'\n"
	  . "orchestrator.user_role = 'authenticated'\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub sql_json
{
	my $v = sql($_[0]);
	return $v eq '' ? undef : $json->decode($v);
}

# ---------------------------------------------------------------------------
# the demo org and users (as examples/demo.sh has them), then the examples
# ---------------------------------------------------------------------------
sql(qq{
CREATE EXTENSION orchestrator;
INSERT INTO orchestrator.orgs (id, name) VALUES ('$org', 'Acme Sales');
INSERT INTO orchestrator.users (id, org_id, display_name) VALUES
	('$ada', '$org', 'Ada (London)'), ('$bob', '$org', 'Bob (New York)');
INSERT INTO orchestrator.slack_user_preferences (user_id, org_id, timezone, max_notifications_per_hour) VALUES
	('$ada', '$org', 'Europe/London', 100), ('$bob', '$org', 'America/New_York', 100);
INSERT INTO orchestrator.slack_user_mappings (user_id, org_id, slack_user_id, slack_team_id) VALUES
	('$ada', '$org', 'U0ADA', 'T0ACME'), ('$bob', '$org', 'U0BOB', 'T0ACME');
SELECT orch_set_secret('service_key', 'svc-examples-key');
SELECT orch_set_secret('slack_bot_token', 'xoxb-examples-token');
});

# The seed rows put Ada's meetings on today's date in London, and the brief
# is checked against that date: never start within a minute of London
# midnight (a bounded wait, at most a minute, into the new day).
my $midnight_deadline = time() + 90;
while (sql(q{SELECT (now() AT TIME ZONE 'Europe/London')::time >= '23:59:00'}) eq 't' && time() < $midnight_deadline)
{
	usleep(500_000);
}
$node->safe_psql('postgres', "\\i $examples/all.sql", extra_params => [ '-v', "base=$base" ]);
pass('examples/sequences/all.sql loaded');
is( sql(q{SELECT string_agg(DISTINCT event_type, ',' ORDER BY event_type) FROM orchestrator.sequence_definitions
          WHERE event_type NOT LIKE 'orchestrator:%'}),
	'calendar_find_times,campaign_check,coaching_digest,email_received,meeting_ended,morning_brief,pre_meeting,proposal_generation',
	'the eight sequences are defined');

ok(wait_for_workers($node, 1), 'one orchestrator worker is running');

# submit(TYPE, SOURCE, PAYLOAD_JSON): Ada's event; returns the job id
sub submit
{
	my ($type, $source, $payload) = @_;
	my ($outcome, $job) = split /\|/,
	  sql("SELECT outcome, job_id FROM orch_submit_event('$type', '$source', '$org', '$ada', '$payload')");
	is($outcome, 'accepted', "$type from $source accepted");
	return $job;
}

sub output
{
	my ($job, $step) = @_;
	return sql_json("SELECT context->'outputs'->'$step' FROM orchestrator.sequence_jobs WHERE id = '$job'");
}

sub context_of
{
	my ($job) = @_;
	return sql_json("SELECT context->'context' FROM orchestrator.sequence_jobs WHERE id = '$job'");
}

# the pending approval of a job: id, step name, pattern, draft (json)
sub pending_action
{
	my ($job) = @_;
	my ($id, $step, $pattern, $draft) = split /\|/, sql(
		"SELECT id, step_name, pattern, draft FROM orchestrator.slack_pending_actions
		 WHERE job_id = '$job' AND status = 'pending'");
	return ($id, $step, $pattern, defined $draft && $draft ne '' ? $json->decode($draft) : undef);
}

# a click in Slack, as the interactivity webhook records it
sub click
{
	my ($pa, $action, $mods) = @_;
	my $m = defined $mods ? "'$mods'" : 'NULL';
	sql("INSERT INTO app.slack_interactions (org_id, user_id, action, pending_action_id, sequence_job_id, resume_step, user_modifications)
	     SELECT org_id, user_id, '$action', id, job_id, step_index, $m FROM orchestrator.slack_pending_actions WHERE id = '$pa'");
	return sql("SELECT outcome || ' ' || COALESCE(reason, '') FROM orchestrator.event_log
	            WHERE event_type = 'slack_approval_received' ORDER BY id DESC LIMIT 1");
}

# Slack messages the stand-in received for Ada, in order
sub slack_texts
{
	return [ map { $_->{body}{text} }
		  grep { ref $_->{body} eq 'HASH' && ($_->{body}{channel} // '') eq 'U0ADA' }
		  @{ standin_requests('/api/chat.postMessage') } ];
}

# wait for a Slack message matching RE (its notify job is asynchronous)
sub wait_slack
{
	my ($re) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		my @hit = grep { defined && /$re/ } @{ slack_texts() };
		return $hit[0] if @hit;
		usleep(100_000);
	}
	return undef;
}

# requests to an edge function made for one job
sub requests_for
{
	my ($fn, $job) = @_;
	return [ grep { ref $_->{body} eq 'HASH' && ($_->{body}{sequence_job_id} // '') eq $job }
		  @{ standin_requests("/functions/v1/$fn") } ];
}

# ---------------------------------------------------------------------------
# meeting_ended: gate, follow-up, approval through app.slack_interactions
# ---------------------------------------------------------------------------
# the webhook delivers the transcript too; only its id may be kept
my $transcript = sql(q{SELECT body FROM app.meeting_transcripts WHERE id = '50000000-0000-0000-0000-000000000001'});
like($transcript, qr/\Q$transcript_fragment\E/, 'the transcript of the meeting that ended is in app.meeting_transcripts');
my $meeting = submit('meeting_ended', 'webhook:meetingbaas',
	qq{{"meeting_id": "40000000-0000-0000-0000-000000000005", "contact_id": "$grace",
	    "transcript_id": "50000000-0000-0000-0000-000000000001", "transcript": "$transcript"}});
ok(wait_job_status($node, $meeting, 'awaiting_approval'), 'meeting_ended reached an approval gate');
my ($pa, $gated, $pattern, $draft) = pending_action($meeting);
is($gated, 'create-tasks', 'the gate is before create-tasks');
is($pattern, 'task_creation', 'with the task_creation pattern');
is_deeply([ map { $_->{title} } @{ $draft->{tasks} } ],
	['Send the proposal with updated pricing by Friday'],
	'the draft is the rep\'s commitment from detect-intents');
is(sql('SELECT count(*) FROM app.tasks'), '0', 'no task exists before approval');
is( sql("SELECT string_agg(step_name || ':' || outcome, ' ' ORDER BY id) FROM orchestrator.step_history
         WHERE job_id = '$meeting' AND kind IN ('sql', 'http', 'notify')"),
	'extract-action-items:succeeded detect-intents:succeeded suggest-next-actions:succeeded draft-tasks:succeeded create-tasks:awaiting_approval',
	'the steps before the gate ran, in order');
ok(defined wait_slack(qr/^Create tasks from the meeting\?$/), 'the approval request went to Ada in Slack');

my ($child, $child_type, $child_source, $child_depth, $child_payload) = split /\|/, sql(
	"SELECT id, event_type, event_source, chain_depth, trigger_payload FROM orchestrator.sequence_jobs
	 WHERE parent_job_id = '$meeting'");
is($child_type, 'proposal_generation', 'detect-intents queued a proposal_generation follow-up');
is($child_source, 'orchestrator:chain', 'from orchestrator:chain');
is($child_depth, '2', 'at chain depth 2');
is_deeply(
	$json->decode($child_payload),
	{ meeting_id => '40000000-0000-0000-0000-000000000005', contact_id => $grace,
	  trigger_phrase => 'Send the proposal with updated pricing by Friday' },
	'its payload: the meeting, the contact and the trigger phrase');
is(sql("SELECT event_chain->'children' ? '$child' FROM orchestrator.sequence_jobs WHERE id = '$meeting'"),
	't', 'the parent lists the child in its event_chain');

is(click($pa, 'approve'), 'accepted approved', 'an Approve click, inserted into app.slack_interactions, resolved the gate');
ok(wait_job_status($node, $meeting, 'completed'), 'meeting_ended completed after approval');
is( sql("SELECT format('%s gate, %s follow-up, %s of %s steps', m->>'approval_gates_hit', m->>'followups_queued',
                       m->>'steps_completed', m->>'steps_attempted')
         FROM orchestrator.sequence_jobs, LATERAL (SELECT context->'execution_metadata' AS m) x WHERE id = '$meeting'"),
	'1 gate, 1 follow-up, 6 of 6 steps', 'its audit record counts the gate, the follow-up and six steps');
is( sql("SELECT string_agg(title || ' ' || (user_id = '$ada') || ' ' || (source_job_id = '$meeting'), ',') FROM app.tasks"),
	'Send the proposal with updated pricing by Friday true true',
	'the approved task was created for Ada by this job');
my $recap = wait_slack(qr/^Meeting recap: /);
is($recap, 'Meeting recap: Acme x Globex discovery call', 'the recap went to Slack');
my ($recap_req) = grep { ($_->{body}{text} // '') eq $recap } @{ standin_requests('/api/chat.postMessage') };
like($json->encode($recap_req->{body}{blocks}), qr/Transcript 50000000-0000-0000-0000-000000000001/,
	'the recap links the transcript by id');
is(click($pa, 'approve'), 'duplicate already approved', 'a second click is a duplicate');
is(sql('SELECT count(*) FROM app.tasks'), '1', 'and created nothing');

# ---------------------------------------------------------------------------
# proposal_generation (the follow-up): tier 3 templates, gate, cancel
# ---------------------------------------------------------------------------
ok(wait_job_status($node, $child, 'awaiting_approval'), 'proposal_generation reached its approval gate');
my $ctx = context_of($child);
is($ctx->{tier3}{proposal_templates}{default}, 'tpl_saas_annual', 'tier 3 proposal_templates loaded for generate-proposal');
ok(!exists $ctx->{tier3}{apollo_enrichment}, 'no other tier 3 source was loaded');
is($ctx->{tier2}{crm}{contact}{email}, 'grace@globex.example', 'tier 2 crm context loaded from contact_id');
my ($ppa, $pgated, $ppattern, $pdraft) = pending_action($child);
is($pgated, 'send-proposal', 'the gate is before the email send');
is($ppattern, 'email_draft', 'with the email_draft pattern');
is($pdraft->{to}, 'grace@globex.example', 'the cover email is addressed to the contact');
like($pdraft->{body}, qr/Send the proposal with updated pricing by Friday/, 'and quotes the trigger phrase');
is(click($ppa, 'cancel'), 'accepted cancelled', 'a Cancel click resolved it');
ok(wait_job_status($node, $child, 'cancelled'), 'proposal_generation was cancelled');
is(scalar @{ requests_for('email-send-as-rep', $child) }, 0, 'and its email was never sent');

# ---------------------------------------------------------------------------
# email_received: nothing sent before approval; an edit reaches the send
# ---------------------------------------------------------------------------
my $email = submit('email_received', 'webhook:email',
	q{{"thread_id": "60000000-0000-0000-0000-000000000001", "from": "peter@initech.example", "from_name": "Peter Gibbons",
	   "subject": "Pilot scope", "snippet": "Is SSO included in the pilot? We need to know today.",
	   "contact_id": "20000000-0000-0000-0000-000000000002"}});
ok(wait_job_status($node, $email, 'awaiting_approval'), 'email_received reached its approval gate');
is_deeply([ @{ output($email, 'classify') }{qw(intent urgency)} ], [ 'reply_needed', 'high' ], 'classified: reply needed, urgent');
my ($epa, $egated, $epattern, $edraft) = pending_action($email);
is($egated, 'send-reply', 'the gate is before send-reply');
is_deeply([ @{$edraft}{qw(to subject)} ], [ 'peter@initech.example', 'Re: Pilot scope' ], 'the draft reply is shown');
is(scalar @{ requests_for('email-send-as-rep', $email) }, 0, 'nothing was sent before approval');
is( sql("SELECT outcome || ' ' || reason FROM orch_resolve_approval('$epa', 'edit', '{\"subject\": \"Re: Pilot scope (SSO included)\"}')"),
	'resolved edited', 'orch_resolve_approval: edit');
ok(wait_job_status($node, $email, 'completed'), 'email_received completed');
my $sends = requests_for('email-send-as-rep', $email);
is(scalar @$sends, 1, 'one send request');
is($sends->[0]{body}{outputs}{'draft-reply'}{subject}, 'Re: Pilot scope (SSO included)', 'carrying the edited draft');
is_deeply([ @{ output($email, 'send-reply') }{qw(sent subject)} ], [ JSON::PP::true, 'Re: Pilot scope (SSO included)' ],
	'the edited email was sent');
is(sql("SELECT outcome FROM orch_resolve_approval('$epa', 'approve')"), 'duplicate', 'resolving again is a duplicate');

my $newsletter = submit('email_received', 'webhook:email',
	q{{"thread_id": "t-news", "from": "news@example.com", "from_name": "News", "subject": "Weekly digest",
	   "snippet": "Click here to unsubscribe"}});
ok(wait_job_status($node, $newsletter, 'completed'), 'an email that needs no reply completed');
is( sql("SELECT string_agg(step_name || ':' || outcome, ' ' ORDER BY id) FROM orchestrator.step_history
         WHERE job_id = '$newsletter' AND kind IN ('sql', 'http', 'notify')"),
	'classify:succeeded draft-reply:skipped send-reply:skipped', 'nothing was drafted or sent');
is(sql("SELECT count(*) FROM orchestrator.slack_pending_actions WHERE job_id = '$newsletter'"), '0',
	'and no approval was asked for');

# ---------------------------------------------------------------------------
# morning_brief: the seed's format, exactly; RLS and the service scope
# ---------------------------------------------------------------------------
my $brief = submit('morning_brief', 'cron:morning', '{}');
ok(wait_job_status($node, $brief, 'completed'), 'morning_brief completed');
my $day = sql(q{SELECT to_char(now() AT TIME ZONE 'Europe/London', 'FMDay')});
my $expected = <<"BRIEF";
Good morning, Ada. Here's your $day.

MEETINGS TODAY (3)
  10:00 -- Grace Hopper, Globex (discovery)
  [Prep ready ->]
  14:30 -- Peter Gibbons, Initech (negotiation)
  [Prepping now...]
  16:00 -- Pipeline review (internal)
  No prep needed

NEEDS YOUR ATTENTION (2)
  Peter Gibbons (Initech) -- Asked whether SSO is included in the pilot
  [Draft reply ->] [Open thread ->]
  Grace Hopper (Globex) -- Proposal sent, no reply for 12 days
  [Send nudge ->] [Call ->]

PIPELINE PULSE
  2 deals need action today
  1 deal(s) at risk (Globex expansion -- 12 days no activity)
  \$48,000 in proposals awaiting response

OVERNIGHT UPDATES
  :eyes: Grace Hopper opened the Globex proposal
  :chart_with_upwards_trend: Initech pilot moved to negotiation
  :mega: Q4 outbound: 3 new replies (reply rate 3.0%)

[Expand pipeline ->] [Show full inbox ->]
BRIEF
chomp $expected;
my $text = output($brief, 'render')->{text};
like($text, qr/\AGood morning, Ada\. Here's your $day\.\n/, 'the brief greets Ada by name and weekday');
my @headings = $text =~ /^(MEETINGS TODAY \(\d+\)|NEEDS YOUR ATTENTION \(\d+\)|PIPELINE PULSE|OVERNIGHT UPDATES|\[Expand pipeline ->\] \[Show full inbox ->\])$/mg;
is_deeply(\@headings,
	[ 'MEETINGS TODAY (3)', 'NEEDS YOUR ATTENTION (2)', 'PIPELINE PULSE', 'OVERNIGHT UPDATES',
	  '[Expand pipeline ->] [Show full inbox ->]' ],
	'the sections come in the seed\'s order');
is($text, $expected, 'the brief is exactly the seed\'s enhanced format');
is(wait_slack(qr/^Good morning, Ada\./), $expected, 'and that is what Ada got in Slack');
is(scalar(grep { /^Good morning/ } @{ slack_texts() }), 1, 'once');

my @meeting_ids = map { $_->{id} } @{ output($brief, 'calendar')->{meetings} };
is_deeply(\@meeting_ids,
	[ '40000000-0000-0000-0000-000000000001', '40000000-0000-0000-0000-000000000002', '40000000-0000-0000-0000-000000000003' ],
	'RLS: the user-scoped calendar step saw only Ada\'s meetings');
is_deeply([ map { $_->{subject} } @{ output($brief, 'inbox')->{threads} } ], ['Pilot scope'],
	'RLS: the inbox scan saw only Ada\'s threads');
is_deeply([ map { $_->{name} } @{ output($brief, 'active-campaigns')->{campaigns} } ], ['Q4 outbound'],
	'RLS: only Ada\'s active campaigns');
is_deeply([ map { $_->{name} } @{ output($brief, 'pipeline-snapshot')->{deals} } ],
	[ 'Globex expansion', 'Initech pilot', 'Umbrella renewal', 'Vandelay imports' ],
	'the service-scope pipeline scan saw the whole org, Bob\'s deal included');
is( sql("SELECT string_agg(step_name, ',') FROM orchestrator.service_scope_audit WHERE job_id = '$brief'"),
	'pipeline-snapshot', 'and only that step is in the service-scope audit');
is_deeply(context_of($brief)->{tier3} // {}, {}, 'no tier 3 context was loaded for the brief');

# ---------------------------------------------------------------------------
# campaign_check: monitor-campaigns answers 500, the sequence goes on
# ---------------------------------------------------------------------------
standin_behave('/functions/v1/monitor-campaigns', mode => 'status', status => 500, times => 1);
my $campaign = submit('campaign_check', 'cron:campaign_check', '{}');
ok(wait_job_status($node, $campaign, 'completed'), 'campaign_check completed although monitor-campaigns failed');
is( sql("SELECT string_agg(step_name || ':' || outcome, ' ' ORDER BY id) FROM orchestrator.step_history
         WHERE job_id = '$campaign' AND kind IN ('sql', 'http', 'notify')"),
	'active-campaigns:succeeded campaign-metrics:failed notify-report:succeeded',
	'the metrics step failed, the report still went out');
like(sql("SELECT error FROM orchestrator.step_history WHERE job_id = '$campaign' AND step_name = 'campaign-metrics'"),
	qr/answered HTTP 500/, 'the failure is recorded');
ok(defined wait_slack(qr/^Campaign metrics are unavailable today \(Instantly did not answer\); 1 active campaign\(s\) not checked\.$/),
	'the report says the metrics were unavailable');

# ---------------------------------------------------------------------------
# pre_meeting, calendar_find_times, coaching_digest
# ---------------------------------------------------------------------------
# what the app:pre_meeting schedule runs, 90 minutes before Ada's 10:00 meeting
is( sql(q{SELECT app.queue_pre_meeting_briefs(starts_at - interval '90 minutes') FROM app.calendar_events
          WHERE id = '40000000-0000-0000-0000-000000000001'}),
	'1', 'app.queue_pre_meeting_briefs submitted one pre_meeting, 90 minutes ahead');
my ($prep, $prep_outcome, $prep_payload) = split /\|/,
  sql(q{SELECT e.job_id, e.outcome, j.trigger_payload FROM orchestrator.event_log e
        LEFT JOIN orchestrator.sequence_jobs j ON j.id = e.job_id WHERE e.event_type = 'pre_meeting'});
is($prep_outcome, 'accepted', 'for Ada\'s meeting');
is_deeply($json->decode($prep_payload),
	{ meeting_id => '40000000-0000-0000-0000-000000000001', contact_id => $grace }, 'with its meeting and contact');
ok(wait_job_status($node, $prep, 'completed'), 'pre_meeting completed');
is(context_of($prep)->{tier3}{apollo_enrichment}{company}{name}, 'Globex', 'tier 3 enrichment loaded for meeting-prep');
is(scalar @{ standin_requests('/functions/v1/apollo-enrichment') }, 1, 'and enrichment was fetched for this job only');
is(wait_slack(qr/^Prep for /), 'Prep for Globex: security deep dive at 10:00: Grace Hopper (Globex)',
	'the briefing went to Slack');

my $slots = submit('calendar_find_times', 'webhook:calendar',
	q{{"contact_id": "20000000-0000-0000-0000-000000000003", "window_start": "2026-12-01", "duration_minutes": 45}});
ok(wait_job_status($node, $slots, 'completed'), 'calendar_find_times completed');
is_deeply([ map { $_->{start} } @{ output($slots, 'find-slots')->{slots} } ],
	[ '2026-12-01T10:00:00Z', '2026-12-01T14:00:00Z', '2026-12-02T09:30:00Z' ], 'three slots found');
is(wait_slack(qr/time\(s\) that work for/), '3 time(s) that work for Alice Wu', 'offered in Slack');

my $coaching = submit('coaching_digest', 'cron:coaching_weekly', '{}');
ok(wait_job_status($node, $coaching, 'completed'), 'coaching_digest completed');
is(sql("SELECT sum(cost_usd) FROM orchestrator.cost_ledger WHERE job_id = '$coaching' AND step_name = 'coaching-analysis'"),
	'0.01', 'its AI cost was booked');
like(wait_slack(qr/^Your week in /), qr/^Your week in 4 meetings: talk ratio 46%, 11 questions per meeting\./,
	'the digest went to Slack');

# ---------------------------------------------------------------------------
# privacy: transcripts are referred to by id, never copied
# ---------------------------------------------------------------------------
is( sql("SELECT count(*) FROM (
	SELECT context::text || trigger_payload::text AS t FROM orchestrator.sequence_jobs
	UNION ALL SELECT COALESCE(output::text, '') || COALESCE(error, '') FROM orchestrator.step_history
	UNION ALL SELECT COALESCE(payload::text, '') FROM orchestrator.event_log
	UNION ALL SELECT COALESCE(draft::text, '') || message::text FROM orchestrator.slack_pending_actions) s
	WHERE t LIKE '%$transcript_fragment%'"),
	'0', 'no transcript text in job state, history, event log or approvals');
is(scalar(grep { $json->encode($_->{body} // '') =~ /\Q$transcript_fragment\E/ } @{ standin_requests() }),
	0, 'nor in any request the engine sent');
is(sql("SELECT count(*) FROM orchestrator.sequence_jobs WHERE status = 'failed'"), '0', 'no job failed');

# ---------------------------------------------------------------------------
# the optional pg_cron schedules, loaded last: a tick must not add events
# to the flows above
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', "\\i $examples/90_schedules.sql");
is( sql(q{SELECT string_agg(jobname || ' ' || schedule, ', ' ORDER BY jobname) FROM cron.job}),
	'app:pre_meeting */5 * * * *, orch:campaign_check 30 6 * * *, orch:coaching_weekly 0 16 * * 5, orch:morning_brief 0 7 * * 1-5',
	'90_schedules.sql: four pg_cron schedules');
like(sql(q{SELECT command FROM cron.job WHERE jobname = 'orch:morning_brief'}),
	qr/orch_fan_out\('morning_brief', 'cron:morning'/, 'the morning brief fans out from cron:morning');

$node->stop;
is(stop_standin(), 0, 'stand-in exited cleanly');

done_testing();
