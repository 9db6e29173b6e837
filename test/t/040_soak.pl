
# Copyright (c) orchestrator authors
#
# The soak (issue 12): many jobs of four sequences (sql steps with a
# follow-up, http steps answering 500 to a share and 429 with Retry-After
# to another, http steps hanging past their timeout or dropping the
# connection, an approval gate) are submitted in waves while an
# orchestrator worker is killed with SIGKILL at random moments, each kill
# a crash restart of every backend.  The test resolves the approvals
# while the run is under way, some of them twice.  At the end every job
# must be final, and the data and the stand-in's recorded requests must
# show: nothing lost, nothing run past its job's final state, each step
# committed at most once, every re-sent request with its first
# Idempotency-Key, each approval asked for and resolved once, each
# follow-up child queued exactly once.
#
# Size and seed, from the environment (defaults: the short form, in CI):
#   ORCH_SOAK_JOBS     events submitted (default 4000)
#   ORCH_SOAK_KILLS    SIGKILLs of a worker (default 3; the long form >= 20)
#   ORCH_SOAK_SEED     seed of the random kill moments and targets
#                      (default: from the clock; printed at start)
#   ORCH_SOAK_TIMEOUT  hard bound in seconds on the whole run (default
#                      240 + 0.05 s per job); past it the test fails
# The long form: ORCH_SOAK_JOBS=100000 ORCH_SOAK_KILLS=25 test/soak.sh
#
# Recovery time of a kill: from the restarted server accepting connections
# (the time stamp of its "database system is ready to accept connections"
# log line) to the moment the last job leased to the killed workers
# (durably in_progress under their pid at the crash) was taken back (the
# time of its step_history "lease_expired" row, "lease of worker pid N
# ended with its process").  Also reported: "progress", from the same
# moment to the last of those jobs finishing its next step attempt.
# The last line of the test's output is, for the caller to parse:
#   # soak: jobs=N kills=K recovery_p50_ms=X recovery_worst_ms=Y progress_p50_ms=.. ...
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use List::Util qw(max sum);
use Time::HiRes qw(time usleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

# an environment setting, or DEFAULT when it is unset or empty
sub setting { my ($name, $default) = @_; return length($ENV{$name} // '') ? $ENV{$name} : $default; }
my $jobs = setting('ORCH_SOAK_JOBS', 4000);
my $kills = setting('ORCH_SOAK_KILLS', 3);
my $seed = setting('ORCH_SOAK_SEED', int(time() * 1000) % 1_000_000_000);
my $timeout = setting('ORCH_SOAK_TIMEOUT', 240 + 0.05 * $jobs);
die "ORCH_SOAK_JOBS must be an integer >= 100" unless $jobs =~ /^\d+$/ && $jobs >= 100;
die "ORCH_SOAK_KILLS must be an integer >= 1" unless $kills =~ /^\d+$/ && $kills >= 1;
srand($seed);
my $t0 = time();
my $deadline = $t0 + $timeout;
diag("soak: seed=$seed jobs=$jobs kills=$kills timeout_s=$timeout "
	  . "(replay: ORCH_SOAK_SEED=$seed ORCH_SOAK_JOBS=$jobs ORCH_SOAK_KILLS=$kills)");

my ($base, $port) = start_standin(lean => 1);
standin_reset();
my $node = start_node(
	'soak',
	workers => 2,
	lease_duration => '20s',
	conf => "orchestrator.max_reclaims = 10\nrestart_after_crash = on\n");
install_extension($node);

# ---------------------------------------------------------------------------
# the sequences
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', qq{
SELECT orch_set_secret('slack_bot_token', 'xoxb-soak');
SELECT orch_define_endpoint('slack', '$base/api/chat.postMessage', 5000, '{"Authorization": "Bearer {{secret:slack_bot_token}}"}');
INSERT INTO orchestrator.slack_user_mappings (user_id, org_id, slack_user_id, slack_team_id) VALUES ('$USER', '$ORG', 'U0ANN', 'T0ACME');
INSERT INTO orchestrator.slack_user_preferences (user_id, org_id, max_notifications_per_hour) VALUES ('$USER', '$ORG', 1000000000);
SELECT orch_define_endpoint(e, '$base/functions/v1/' || e, 5000, '{}')
FROM unnest(ARRAY['soak-flaky', 'soak-limited', 'soak-hang', 'soak-drop', 'soak-gated']) e;

-- what the test submitted, as orch_submit_events answered
CREATE TABLE public.submitted (n integer PRIMARY KEY, event_type text, outcome text, job_id uuid);
-- every sql step's commit, written in the step's own transaction
CREATE TABLE public.ran (job_id uuid, step text, at timestamptz DEFAULT clock_timestamp());
-- every approval decision the test made, and what it got back
CREATE TABLE public.resolutions (pending_action_id uuid, job_id uuid, attempt integer, action text,
	outcome text, reason text, PRIMARY KEY (pending_action_id, attempt));
-- the kills, and the stand-in's requests at the end
CREATE TABLE public.kills (k integer PRIMARY KEY, dead_pids integer[], in_flight integer, ready_at timestamptz);
CREATE TABLE public.requests (seq bigint, path text, status integer, started float8, finished float8,
	idem_key text, job_id uuid, step text);

CREATE FUNCTION public.soak_mark(s jsonb, step text) RETURNS jsonb LANGUAGE sql AS \$\$
	INSERT INTO public.ran (job_id, step) VALUES ((s->'execution_metadata'->>'sequence_job_id')::uuid, step);
	SELECT jsonb_build_object('step', step) \$\$;
CREATE FUNCTION public.soak_a(s jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT public.soak_mark(s, 'a') \$\$;
CREATE FUNCTION public.soak_b(s jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT public.soak_mark(s, 'b') \$\$;
CREATE FUNCTION public.soak_d(s jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT public.soak_mark(s, 'd') \$\$;
-- fails for one event in 50 (n divisible by 50), every attempt
CREATE FUNCTION public.soak_c(s jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	IF (s->'event'->'payload'->>'n')::int % 50 = 0 THEN
		RAISE EXCEPTION 'soak: planned failure of event %', s->'event'->'payload'->>'n';
	END IF;
	RETURN public.soak_mark(s, 'c');
END \$\$;
CREATE FUNCTION public.soak_draft(s jsonb) RETURNS jsonb LANGUAGE sql AS \$\$
	SELECT public.soak_mark(s, 'a') || jsonb_build_object('to', 'x\@example.com', 'body', 'hi') \$\$;

-- sql steps; b queues one follow-up (a soak_child job) for every 4th event
SELECT orch_define_sequence('soak_sql', '[
	{"name": "a", "kind": "sql", "function": "soak_a"},
	{"name": "b", "kind": "sql", "function": "soak_b", "condition": "\$.event.payload.n % 4 == 0",
	 "followups": [{"type": "soak_child", "payload": {"parent_n": "\$.event.payload.n"}}]},
	{"name": "c", "kind": "sql", "function": "soak_c", "on_failure": "retry", "retry": {"attempts": 2, "backoff_ms": 50}}]');
SELECT orch_define_sequence('soak_child', '[{"name": "a", "kind": "sql", "function": "soak_a"}]');
-- http: one request in 7 answers 500 (retried), one in 10 answers 429 Retry-After: 1
SELECT orch_define_sequence('soak_http', '[
	{"name": "a", "kind": "sql", "function": "soak_a"},
	{"name": "flaky", "kind": "http", "endpoint": "soak-flaky", "on_failure": "retry", "retry": {"attempts": 4, "backoff_ms": 20}},
	{"name": "limited", "kind": "http", "endpoint": "soak-limited"},
	{"name": "d", "kind": "sql", "function": "soak_d"}]');
-- http: one request in 25 hangs past the 1.5 s timeout, one in 15 has its connection closed
SELECT orch_define_sequence('soak_net', '[
	{"name": "hang", "kind": "http", "endpoint": "soak-hang", "timeout_ms": 1500, "on_failure": "retry", "retry": {"attempts": 3, "backoff_ms": 20}},
	{"name": "drop", "kind": "http", "endpoint": "soak-drop", "on_failure": "retry", "retry": {"attempts": 3, "backoff_ms": 20}},
	{"name": "d", "kind": "sql", "function": "soak_d"}]');
-- an approval gate before an http step
SELECT orch_define_sequence('soak_approval', '[
	{"name": "a", "kind": "sql", "function": "soak_draft"},
	{"name": "gated", "kind": "http", "endpoint": "soak-gated", "requires_approval": true, "approval": {"draft": "a"}},
	{"name": "d", "kind": "sql", "function": "soak_d"}]');

-- submits the events lo..hi whose n % 10 is in mods, as one batch
CREATE FUNCTION public.soak_submit(t text, lo integer, hi integer, mods integer[]) RETURNS integer LANGUAGE plpgsql AS \$\$
DECLARE ns integer[];
BEGIN
	SELECT array_agg(g ORDER BY g) INTO ns FROM generate_series(lo, hi) g WHERE g % 10 = ANY (mods);
	IF ns IS NULL THEN RETURN 0; END IF;
	INSERT INTO public.submitted (n, event_type, outcome, job_id)
	SELECT ns[r.ord], t, r.outcome, r.job_id
	FROM orch_submit_events(t, 'soak', '$ORG', array_fill('$USER'::uuid, ARRAY[cardinality(ns)]),
	                        ARRAY(SELECT jsonb_build_object('n', x) FROM unnest(ns) x ORDER BY x)) r;
	RETURN cardinality(ns);
END \$\$;

-- the test's decision on the approval of event n (n % 10 = 9 for soak_approval):
-- cancel 1 in 20, skip 1 in 20, else approve
CREATE FUNCTION public.soak_decision(n integer) RETURNS text LANGUAGE sql IMMUTABLE AS \$\$
	SELECT CASE (n / 10) % 20 WHEN 7 THEN 'cancel' WHEN 13 THEN 'skip' ELSE 'approve' END \$\$;
});

standin_behave('/functions/v1/soak-flaky', mode => 'status', status => 500, every => 7);
standin_behave('/functions/v1/soak-limited', mode => '429', retry_after => '1', every => 10);
standin_behave('/functions/v1/soak-hang', mode => 'hang', every => 25);
standin_behave('/functions/v1/soak-drop', mode => 'close', every => 15);
# an approved send takes 200 ms, so kills find some in flight
standin_behave('/functions/v1/soak-gated', mode => 'ok', delay_ms => 200);

ok(wait_for_workers($node, 2), 'two workers run');

# ---------------------------------------------------------------------------
# helpers: a bounded wait against the soak's own deadline, and approvals
# ---------------------------------------------------------------------------
my $OPEN = q{status IN ('pending', 'in_progress')};
my $WORKER_PIDS = q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'orchestrator worker'};

# polls QUERY until it returns EXPECTED or the soak's deadline passes
sub soak_wait
{
	my ($query, $expected, $what) = @_;
	my $last;
	while (time() < $deadline)
	{
		$last = $node->safe_psql('postgres', $query);
		return 1 if $last eq $expected;
		usleep(100_000);
	}
	diag("soak: deadline of $timeout s passed waiting for $what (last: $last)");
	return 0;
}

# resolves every pending approval of the soak's jobs once, then tries a
# second decision on one in four of those it just resolved
sub resolve_approvals
{
	# each decision in its own transaction, as Slack clicks arrive: one
	# statement deciding many gates would lock their jobs in its own order
	# and could deadlock with a worker, which locks its batch in id order
	$node->safe_psql('postgres', q{
DO $$
DECLARE
	a record;
	r record;
BEGIN
	FOR a IN
		SELECT pa.id, pa.job_id, public.soak_decision((j.context->'event'->'payload'->>'n')::int) AS act
		FROM orchestrator.slack_pending_actions pa JOIN orchestrator.sequence_jobs j ON j.id = pa.job_id
		WHERE pa.status = 'pending' AND j.event_type = 'soak_approval'
	LOOP
		SELECT * INTO r FROM orch_resolve_approval(a.id, a.act);
		INSERT INTO public.resolutions VALUES (a.id, a.job_id, 1, a.act, r.outcome, r.reason);
		COMMIT;
	END LOOP;
	FOR a IN
		SELECT r1.pending_action_id AS id, r1.job_id
		FROM public.resolutions r1
		WHERE r1.attempt = 1 AND hashtext(r1.pending_action_id::text) % 4 = 0
		  AND NOT EXISTS (SELECT 1 FROM public.resolutions r2 WHERE r2.pending_action_id = r1.pending_action_id AND r2.attempt = 2)
	LOOP
		SELECT * INTO r FROM orch_resolve_approval(a.id, 'approve');
		INSERT INTO public.resolutions VALUES (a.id, a.job_id, 2, 'approve', r.outcome, r.reason);
		COMMIT;
	END LOOP;
END
$$;
});
	return;
}

# ---------------------------------------------------------------------------
# the run: waves of submits, approvals resolved, kills at random moments
# ---------------------------------------------------------------------------
my $waves = max(2 * $kills, int(($jobs + 1999) / 2000));
my $wave_size = int(($jobs + $waves - 1) / $waves);
my ($submitted, $kills_done, $wave) = (0, 0, 0);
my @recovery;    # per kill: [ms to reclaim all, jobs reclaimed]
my $ok_run = 1;

while ($submitted < $jobs && $ok_run)
{
	# keep the backlog bounded: the next wave once most of the last has run
	$ok_run &&= soak_wait(
		"SELECT count(*) < $wave_size FROM orchestrator.sequence_jobs WHERE $OPEN",
		't', "the backlog to drop below $wave_size");
	my ($lo, $hi) = ($submitted + 1, ($submitted + $wave_size < $jobs ? $submitted + $wave_size : $jobs));
	$node->safe_psql('postgres', qq{
SELECT public.soak_submit('soak_sql', $lo, $hi, '{0,1,2,3}'), public.soak_submit('soak_http', $lo, $hi, '{4,5,6}'),
       public.soak_submit('soak_net', $lo, $hi, '{7,8}'), public.soak_submit('soak_approval', $lo, $hi, '{9}')});
	$submitted = $hi;
	$wave++;
	resolve_approvals();

	# the kills due after this wave: spread evenly over the waves
	my $due = int($wave * $kills / $waves) - $kills_done;
	$due = $kills - $kills_done if $submitted >= $jobs;
	for (1 .. $due)
	{
		last unless $ok_run;
		# a random moment while the wave runs: up to 0.6 s in, and only
		# once some job is in flight on a worker
		usleep(int(rand(600_000)));
		resolve_approvals();
		$ok_run &&= soak_wait(
			"SELECT count(*) > 0 FROM orchestrator.sequence_jobs WHERE status = 'in_progress' AND lease_owner IN ($WORKER_PIDS)",
			't', 'a job in flight on a worker');
		my @pids = split /\n/, $node->safe_psql('postgres', $WORKER_PIDS);
		my $in_flight = $node->safe_psql('postgres',
			"SELECT count(*) FROM orchestrator.sequence_jobs WHERE status = 'in_progress' AND lease_owner IN ($WORKER_PIDS)");
		my $victim = $pids[ int(rand(@pids)) ];
		my $offset = -s $node->logfile;
		kill('KILL', $victim) or die "cannot kill worker $victim: $!";
		wait_for_crash_restart($node, $victim, $offset);
		$node->wait_for_log(qr/database system is ready to accept connections/, $offset);
		my ($ready_at) = slurp_file($node->logfile, $offset)
		  =~ /^(\S+ \S+ \S+) \[\d+\] LOG:  database system is ready to accept connections/m;
		$kills_done++;
		my $dead = join(',', @pids);
		$node->safe_psql('postgres',
			"INSERT INTO public.kills VALUES ($kills_done, '{$dead}', $in_flight, '$ready_at')");
		# every job durably leased to a killed worker is taken back
		$ok_run &&= soak_wait(
			"SELECT count(*) FROM orchestrator.sequence_jobs WHERE status = 'in_progress' AND lease_owner IN ($dead)",
			'0', "the jobs of the killed workers ($dead) to be taken back");
		$ok_run &&= wait_for_workers($node, 2);
		note("soak: kill $kills_done of worker $victim with $in_flight jobs in flight, after wave $wave ($submitted submitted)");
	}
}
ok($ok_run, "$jobs events submitted in $wave waves, $kills_done kills, within the time bound");
is($kills_done, $kills, "the worker was killed $kills times");

# ---------------------------------------------------------------------------
# the end: every job final (approvals resolved as they come up)
# ---------------------------------------------------------------------------
my $all_final = 0;
while ($ok_run && time() < $deadline)
{
	resolve_approvals();
	last if $all_final = $node->safe_psql('postgres',
		"SELECT count(*) = 0 FROM orchestrator.sequence_jobs WHERE status NOT IN ('completed', 'failed', 'cancelled')") eq 't';
	usleep(200_000);
}
ok($all_final, 'every job reached a final state within the time bound')
  or diag($node->safe_psql('postgres',
	"SELECT event_type, status, count(*) FROM orchestrator.sequence_jobs WHERE status NOT IN ('completed', 'failed', 'cancelled') GROUP BY 1, 2"));
my $run_s = time() - $t0;
note($node->safe_psql('postgres',
	"SELECT string_agg(event_type || ' ' || status || ' ' || n, ', ' ORDER BY event_type, status) FROM "
	  . "(SELECT event_type, status, count(*) n FROM orchestrator.sequence_jobs GROUP BY 1, 2) s"));

# the stand-in's requests, into a table
$node->safe_psql('postgres',
	"COPY public.requests FROM PROGRAM 'curl -sf http://127.0.0.1:$port/_control/requests?format=tsv'");

$node->safe_psql('postgres',
	'CREATE INDEX ON public.ran (job_id); CREATE INDEX ON public.requests (job_id, step); ANALYZE');
my $q = sub { $node->safe_psql('postgres', $_[0]) };

# ---------------------------------------------------------------------------
# nothing lost
# ---------------------------------------------------------------------------
is( $q->(q{
SELECT count(*), count(*) FILTER (WHERE outcome = 'accepted'), count(DISTINCT job_id) FROM public.submitted}),
	"$jobs|$jobs|$jobs", "all $jobs events accepted, each with its own job");
is( $q->(q{
SELECT count(*) FROM public.submitted s
LEFT JOIN orchestrator.sequence_jobs j ON j.id = s.job_id AND j.event_type = s.event_type
     AND (j.context->'event'->'payload'->>'n')::int = s.n
LEFT JOIN orchestrator.event_log e ON e.job_id = s.job_id AND e.outcome = 'accepted'
WHERE j.id IS NULL OR e.job_id IS NULL}),
	'0', 'every submitted event has its job and its event_log row: none lost');
is( $q->(q{
SELECT count(*) FROM orchestrator.sequence_jobs WHERE status NOT IN ('completed', 'failed', 'cancelled') OR finished_at IS NULL}),
	'0', 'every job is final, with its finished_at');
is( $q->(q{
SELECT count(*) FROM orchestrator.sequence_jobs WHERE last_error LIKE 'given up:%'}),
	'0', 'no job given up because its workers kept dying');
is( $q->(q{
SELECT count(*) FROM public.submitted s JOIN orchestrator.sequence_jobs j ON j.id = s.job_id
WHERE s.event_type = 'soak_sql' AND j.status <> CASE WHEN s.n % 50 = 0 THEN 'failed' ELSE 'completed' END}),
	'0', 'soak_sql jobs: those planned to fail failed, all others completed');
is( $q->(q{
SELECT count(*) FROM public.submitted s JOIN orchestrator.sequence_jobs j ON j.id = s.job_id
WHERE s.event_type = 'soak_approval'
  AND j.status <> CASE public.soak_decision(s.n) WHEN 'cancel' THEN 'cancelled' ELSE 'completed' END}),
	'0', 'soak_approval jobs: cancelled as decided, all others completed');

# ---------------------------------------------------------------------------
# nothing run past its final state, nothing committed twice
# ---------------------------------------------------------------------------
is( $q->(q{
SELECT count(*) FROM orchestrator.step_history h JOIN orchestrator.sequence_jobs j ON j.id = h.job_id
WHERE h.kind IN ('sql', 'http', 'notify') AND h.started_at > j.finished_at}),
	'0', 'no step attempt started after its job was final');
is( $q->(q{
SELECT count(*) FROM public.ran r JOIN orchestrator.sequence_jobs j ON j.id = r.job_id
WHERE r.at > j.finished_at OR j.status NOT IN ('completed', 'failed', 'cancelled')}),
	'0', 'no sql step committed after its job was final');
is( $q->(q{
SELECT count(*) FROM public.requests r JOIN orchestrator.sequence_jobs j ON j.id = r.job_id
WHERE r.started > extract(epoch FROM j.finished_at)}),
	'0', 'no request reached the stand-in after its job was final');
is( $q->(q{
SELECT count(*) FROM (SELECT job_id, step FROM public.ran GROUP BY 1, 2 HAVING count(*) > 1) d}),
	'0', 'each sql step committed at most once per job');
is( $q->(q{
SELECT count(*) FROM (SELECT job_id, step_index FROM orchestrator.step_history
                      WHERE kind IN ('sql', 'http', 'notify') AND outcome = 'succeeded'
                      GROUP BY 1, 2 HAVING count(*) > 1) d}),
	'0', 'each step succeeded at most once per job');
is( $q->(q{
SELECT count(*) FROM orchestrator.sequence_jobs j
WHERE j.status = 'completed' AND j.event_type LIKE 'soak%'
  AND (SELECT count(*) FROM public.ran r WHERE r.job_id = j.id)
      <> (SELECT count(*) FROM orchestrator.step_history h
          WHERE h.job_id = j.id AND h.kind = 'sql' AND h.outcome = 'succeeded')}),
	'0', "every completed job's sql steps each committed their writes exactly once");

# ---------------------------------------------------------------------------
# idempotency keys
# ---------------------------------------------------------------------------
is( $q->(q{
SELECT count(*) FROM public.requests r
JOIN orchestrator.sequence_jobs j ON j.id = r.job_id
JOIN orchestrator.sequence_definitions d ON d.event_type = j.event_type AND d.version = j.sequence_version
CROSS JOIN LATERAL (SELECT i - 1 AS idx FROM jsonb_array_elements(d.steps) WITH ORDINALITY s(st, i)
                    WHERE st->>'name' = r.step) s
WHERE r.path LIKE '/functions/v1/soak-%' AND r.idem_key IS DISTINCT FROM 'orch-' || r.job_id || '-' || s.idx}),
	'0', 'every request to an edge function carried Idempotency-Key orch-<job>-<step index>');
is( $q->(q{
SELECT count(*) FROM public.requests WHERE path LIKE '/functions/v1/soak-%' AND (job_id IS NULL OR step IS NULL)}),
	'0', 'and named its job and step');
my ($resent, $keys_bad, $resent_after_loss) = split /\|/, $q->(q{
SELECT count(*) FILTER (WHERE n > 1), count(*) FILTER (WHERE keys > 1),
       count(*) FILTER (WHERE n > 1 AND lost)
FROM (SELECT job_id, step, count(*) n, count(DISTINCT idem_key) keys, bool_or(status IS NULL) lost
      FROM public.requests WHERE job_id IS NOT NULL GROUP BY 1, 2) g});
is($keys_bad, '0', "every re-sent request carried its first try's Idempotency-Key ($resent steps re-sent)");
cmp_ok($resent_after_loss, '>', 0,
	"some requests were re-sent after being lost to a hang, a dropped connection or a kill ($resent_after_loss)");
is( $q->(q{
SELECT count(*) FROM public.requests WHERE path = '/api/chat.postMessage' AND idem_key !~ '^orch-[0-9a-f-]{36}-[0-9]+$'}),
	'0', 'every Slack message carried an Idempotency-Key too');

# ---------------------------------------------------------------------------
# approvals
# ---------------------------------------------------------------------------
my $n_approval = $q->(q{SELECT count(*) FROM public.submitted WHERE event_type = 'soak_approval'});
is( $q->(q{
SELECT count(*), count(DISTINCT a.job_id) FROM orchestrator.slack_pending_actions a
JOIN public.submitted s ON s.job_id = a.job_id}),
	"$n_approval|$n_approval", "each of the $n_approval gated jobs asked for approval exactly once");
is( $q->(q{
SELECT count(*) FROM orchestrator.slack_pending_actions a JOIN public.submitted s ON s.job_id = a.job_id
WHERE a.status <> CASE public.soak_decision(s.n) WHEN 'approve' THEN 'approved' WHEN 'skip' THEN 'skipped' ELSE 'cancelled' END
   OR a.resolved_at IS NULL}),
	'0', 'each approval resolved, as decided');
is( $q->(q{
SELECT count(*) FILTER (WHERE attempt = 1), count(*) FILTER (WHERE attempt = 1 AND outcome = 'resolved'),
       count(*) FILTER (WHERE attempt = 2) > 0, count(*) FILTER (WHERE attempt = 2 AND outcome IS DISTINCT FROM 'duplicate')
FROM public.resolutions}),
	"$n_approval|$n_approval|t|0", 'the first decision on each approval applied; every second one refused as a duplicate');
is( $q->(q{
SELECT count(*) FROM public.submitted s
WHERE s.event_type = 'soak_approval'
  AND (SELECT count(*) FROM orchestrator.step_history h WHERE h.job_id = s.job_id AND h.kind = 'approval') <> 1}),
	'0', 'the history of each gated job records exactly one decision');
is( $q->(q{
SELECT count(*) FROM public.submitted s
WHERE s.event_type = 'soak_approval' AND public.soak_decision(s.n) <> 'approve'
  AND EXISTS (SELECT 1 FROM public.requests r WHERE r.job_id = s.job_id AND r.step = 'gated')}),
	'0', 'no gated request was sent for a skipped or cancelled approval');
is( $q->(q{
SELECT count(*) FROM public.submitted s
WHERE s.event_type = 'soak_approval' AND public.soak_decision(s.n) = 'approve'
  AND NOT EXISTS (SELECT 1 FROM public.requests r WHERE r.job_id = s.job_id AND r.step = 'gated' AND r.status = 200)}),
	'0', 'every approved gated request was answered');

# ---------------------------------------------------------------------------
# follow-ups
# ---------------------------------------------------------------------------
my ($parents, $bad_children, $orphans) = split /\|/, $q->(q{
WITH p AS (SELECT s.job_id, EXISTS (SELECT 1 FROM orchestrator.step_history h
                                    WHERE h.job_id = s.job_id AND h.step_name = 'b' AND h.outcome = 'succeeded') AS queued
           FROM public.submitted s WHERE s.event_type = 'soak_sql')
SELECT count(*) FILTER (WHERE queued),
       count(*) FILTER (WHERE (SELECT count(*) FROM orchestrator.sequence_jobs c WHERE c.parent_job_id = p.job_id)
                              <> CASE WHEN queued THEN 1 ELSE 0 END),
       (SELECT count(*) FROM orchestrator.sequence_jobs c WHERE c.event_type = 'soak_child'
          AND NOT EXISTS (SELECT 1 FROM p WHERE p.job_id = c.parent_job_id AND p.queued))
FROM p});
cmp_ok($parents, '>', 0, "some soak_sql steps queued a follow-up ($parents)");
is($bad_children, '0', 'each parent whose follow-up step committed has exactly one child, the others none');
is($orphans, '0', 'no child without such a parent');
is( $q->(q{
SELECT count(*) FROM orchestrator.sequence_jobs c JOIN orchestrator.sequence_jobs p ON p.id = c.parent_job_id
WHERE c.event_type = 'soak_child'
  AND ((c.context->'event'->'payload'->>'parent_n')::int IS DISTINCT FROM (p.context->'event'->'payload'->>'n')::int
       OR c.status <> 'completed')}),
	'0', "every child carries its parent's n and completed");

# ---------------------------------------------------------------------------
# recovery after each kill
# ---------------------------------------------------------------------------
my @rec = map { [ split /\|/ ] } split /\n/, $q->(q{
WITH le AS (SELECT id, job_id, started_at,
                   substring(error FROM '^lease of worker pid (\d+) ended with its process')::int AS pid
            FROM orchestrator.step_history WHERE outcome = 'lease_expired')
SELECT k.k, k.in_flight, count(h.id),
       COALESCE(round(extract(epoch FROM max(h.started_at) - k.ready_at) * 1000), 0),
       COALESCE(round(extract(epoch FROM max(nxt.finished_at) - k.ready_at) * 1000), 0)
FROM public.kills k
LEFT JOIN le h ON h.started_at >= k.ready_at AND h.pid = ANY (k.dead_pids)
      AND h.started_at < COALESCE((SELECT min(k2.ready_at) FROM public.kills k2 WHERE k2.k > k.k), 'infinity')
LEFT JOIN LATERAL (SELECT min(n.finished_at) AS finished_at FROM orchestrator.step_history n
                   WHERE n.job_id = h.job_id AND n.id > h.id AND n.kind IN ('sql', 'http', 'notify', 'approval', 'engine')) nxt ON true
GROUP BY k.k, k.in_flight, k.ready_at ORDER BY k.k});
is(scalar(@rec), $kills, 'every kill recorded');
my $reclaimed_total = sum(0, map { $_->[2] } @rec);
cmp_ok($reclaimed_total, '>', 0, "jobs were taken back from killed workers ($reclaimed_total)");
note(sprintf('soak: kill %d: %d in flight, %d taken back, reclaim %d ms, progress %d ms', @$_)) for @rec;

sub pct
{
	my ($p, @v) = @_;
	return 0 unless @v;
	@v = sort { $a <=> $b } @v;
	return $v[ int(($#v) * $p + 0.5) ];
}
my @with = grep { $_->[2] > 0 } @rec;
my @reclaim = map { $_->[3] } @with;
my @progress = map { $_->[4] } @with;
my ($requests_total) = $q->('SELECT count(*) FROM public.requests');
my ($jobs_total) = $q->('SELECT count(*) FROM orchestrator.sequence_jobs');
my $lost = $q->(q{
SELECT count(*) FROM public.submitted s LEFT JOIN orchestrator.sequence_jobs j ON j.id = s.job_id
WHERE j.id IS NULL OR j.status NOT IN ('completed', 'failed', 'cancelled')});
diag(sprintf(
		'soak: jobs=%d all_jobs=%d requests=%d resent_steps=%d kills=%d kills_with_reclaims=%d reclaimed=%d '
		  . 'recovery_p50_ms=%d recovery_worst_ms=%d progress_p50_ms=%d progress_worst_ms=%d lost=%d seconds=%d seed=%s',
		$jobs, $jobs_total, $requests_total, $resent, $kills_done, scalar(@with), $reclaimed_total,
		pct(0.5, @reclaim), max(0, @reclaim), pct(0.5, @progress), max(0, @progress), $lost, $run_s, $seed));

$node->stop;
is(stop_standin(), 0, 'stand-in exited cleanly');
done_testing();
