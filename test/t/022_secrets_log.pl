
# Copyright (c) orchestrator authors
#
# A secret's value reaches the endpoint and nowhere else: not the server
# log, not any table (a scan of every table, and pg_dump), whatever the
# call's fate: success, an endpoint that echoes the secret back in its body,
# HTTP 500, a body that is not JSON, a timeout, a 429 deferral, a missing
# secret.  The admin role can set secrets but never read them back.
#
# Then a redirect whose Location header carries the secret: the engine puts
# the Location into the step's error, so it must scrub it there too.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/..";

use IPC::Run;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OrchTest;

my ($org, $user) = ($ORG, $USER);
# unique to this run, so a match can only come from this run
my $secret = sprintf('S3CR3T-%08x%08x-%d', int(rand(2**32)), int(rand(2**32)), $$);

# ---------------------------------------------------------------------------
# the stand-in server (test/standin.py) on a free loopback port
# ---------------------------------------------------------------------------
my ($base, $port) = start_standin();

standin_reset();

# How each endpoint answers.  "echo" and "fail" send the secret back in
# their body; "redirect" (phase 2) sends it back in its Location header.
my %behave = (
	ok => undef,
	echo => { mode => 'json', body => { echo => $secret, auth => "Bearer $secret" } },
	fail => { mode => 'json', status => 500, body => { error => "bad key $secret" } },
	garbage => { mode => 'garbage' },
	timeout => { mode => 'hang' },
	limited => { mode => '429', retry_after => '1', times => 1 },
	redirect => { mode => 'redirect', location => "$base/login?key=$secret" },
);
for my $name (sort keys %behave)
{
	next unless $behave{$name};
	standin_behave("/functions/v1/sec-$name", %{ $behave{$name} });
}
pass("stand-in listens on port $port, endpoints set to misbehave");

# ---------------------------------------------------------------------------
# the node, with the server's default statement logging (the test framework
# turns on log_statement = all, which would log every statement's text)
# ---------------------------------------------------------------------------
my $node = start_node('secrets_log', workers => 1, conf => "log_statement = 'none'\n");
is( $node->safe_psql('postgres', 'SHOW log_statement; SHOW log_min_error_statement'),
	"none\nerror", 'default logging: a statement\'s text is logged only when it fails');

install_extension($node);
$node->safe_psql('postgres', 'CREATE ROLE secret_admin IN ROLE orchestrator_admin');

# The value is in the text of this one statement, which succeeds, so it is
# not logged.
$node->safe_psql('postgres', "SELECT orch_set_secret('svc', '$secret')");

# Every endpoint carries the secret in two headers: as a bearer token
# (which orchestrator.redact would mask in an error) and bare.
my $headers = '{"Authorization": "Bearer {{secret:svc}}", "X-Api-Key": "{{secret:svc}}"}';
my $sql = '';
for my $name (sort keys %behave)
{
	my $timeout = $name eq 'timeout' ? 300 : 5000;
	$sql .= "SELECT orch_define_endpoint('sec-$name', '$base/functions/v1/sec-$name', $timeout, '$headers');\n";
}
# the same, plus a secret that was never set: nothing may be sent
$sql .= qq{SELECT orch_define_endpoint('sec-missing', '$base/functions/v1/sec-missing', 5000,
	'{"Authorization": "Bearer {{secret:svc}}", "X-Other": "{{secret:never_set}}"}');\n};
for my $name (sort(keys %behave), 'missing')
{
	$sql .= "SELECT orch_define_sequence('sec_$name', '[{\"name\": \"call\", \"kind\": \"http\", \"endpoint\": \"sec-$name\"}]');\n";
}
$node->safe_psql('postgres', $sql);

# The admin role sets secrets but cannot read them back.  These statements
# fail, so they are logged; they name the secret only.
for my $q ("SELECT value FROM orchestrator.secrets WHERE name = 'svc'",
	'SELECT * FROM orchestrator.secrets',
	"SELECT orch_set_secret('svc', NULL)")
{
	my ($rc, $out, $err) = $node->psql('postgres', "SET ROLE secret_admin; $q");
	isnt($rc, 0, "as orchestrator_admin, fails: $q");
	unlike($err, qr/\Q$secret\E/, '... and its error does not show the value');
}
like( scalar(($node->psql('postgres', 'SET ROLE secret_admin; SELECT value FROM orchestrator.secrets'))[2]),
	qr/permission denied for table secrets/,
	'orchestrator_admin is denied SELECT value FROM orchestrator.secrets');
is( $node->safe_psql(
		'postgres',
		"SET ROLE secret_admin; SELECT orch_set_secret('admin_set', 'not-the-secret'); RESET ROLE; SELECT count(*) FROM orchestrator.secrets"),
	"\n2",
	'orchestrator_admin can set a secret');

# ---------------------------------------------------------------------------
# where the value must not be
# ---------------------------------------------------------------------------

# absent: ok when the secret is not in the text; shows where it is otherwise
sub absent
{
	my ($text, $name) = @_;
	my $at = index($text, $secret);
	return ok(1, $name) if $at < 0;
	my $from = $at > 200 ? $at - 200 : 0;
	return ok(0, $name) || diag('found in: ...' . substr($text, $from, 200 + length($secret) + 100) . '...');
}

# tables_holding: every table in the database but orchestrator.secrets,
# row by row; returns how many were scanned and those with the secret
sub tables_holding
{
	my ($rc, $out, $err) = $node->psql(
		'postgres', qq{
DO \$\$
DECLARE
	t regclass;
	n bigint;
	found text := '';
	scanned integer := 0;
BEGIN
	FOR t IN SELECT c.oid FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
	         WHERE c.relkind IN ('r', 'p') AND ns.nspname NOT IN ('pg_catalog', 'information_schema')
	           AND c.oid <> 'orchestrator.secrets'::regclass
	LOOP
		EXECUTE format('SELECT count(*) FROM %s x WHERE strpos(x::text, %L) > 0', t, '$secret') INTO n;
		scanned := scanned + 1;
		IF n > 0 THEN found := found || t::text || ' '; END IF;
	END LOOP;
	RAISE NOTICE 'scanned % tables; with the secret: [%]', scanned, rtrim(found);
END \$\$});
	my ($scanned, $found) = $err =~ /scanned (\d+) tables; with the secret: \[(.*)\]/
	  or die "table scan failed: $err";
	return ($scanned, $found);
}

# dumps: a data-only dump (orchestrator.secrets excluded) and a full one
sub dumps
{
	my ($data, $full, $err) = ('', '', '');
	my @conn = ('-h', $node->host, '-p', $node->port, '-d', 'postgres');
	IPC::Run::run([ 'pg_dump', @conn, '--data-only', '--exclude-table-data=orchestrator.secrets' ],
		'>', \$data, '2>', \$err)
	  or die "pg_dump --data-only failed: $err";
	IPC::Run::run([ 'pg_dump', @conn ], '>', \$full, '2>', \$err)
	  or die "pg_dump failed: $err";
	return ($data, $full);
}

# run_cases: one job per case; waits (bounded) until all have finished
sub run_cases
{
	my @cases = @_;
	$node->safe_psql(
		'postgres', 'INSERT INTO public.sec_jobs SELECT c, (orch_submit_event(\'sec_\' || c, \'test\', '
		  . "'$org', '$user', jsonb_build_object('case', c))).job_id FROM unnest(ARRAY['"
		  . join("', '", @cases) . "']) c");
	return $node->poll_query_until(
		'postgres', q{
SELECT count(*) FILTER (WHERE j.status IN ('completed', 'failed')) = count(*)
FROM public.sec_jobs s JOIN orchestrator.sequence_jobs j ON j.id = s.job_id});
}

# ---------------------------------------------------------------------------
# 1. every way a call can go, but a redirect
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE TABLE public.sec_jobs (c text, job_id uuid)');
my @cases = qw(echo fail garbage limited missing ok timeout);
ok(run_cases(@cases), 'every job finished');

is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(s.c || ' ' || j.status, ', ' ORDER BY s.c)
FROM public.sec_jobs s JOIN orchestrator.sequence_jobs j ON j.id = s.job_id}),
	'echo completed, fail failed, garbage failed, limited completed, missing failed, ok completed, timeout failed',
	'each call went its way');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(s.c || ':' || h.outcome || COALESCE(':' || h.http_status, ''), ', ' ORDER BY s.c, h.id)
FROM public.sec_jobs s JOIN orchestrator.step_history h ON h.job_id = s.job_id}),
	'echo:succeeded:200, fail:failed:500, garbage:failed:200, limited:deferred:429, limited:succeeded:200, '
	  . 'missing:failed, ok:succeeded:200, timeout:failed',
	'step history: the 429 deferred then succeeded, the others once');
like( $node->safe_psql(
		'postgres',
		"SELECT h.error FROM public.sec_jobs s JOIN orchestrator.step_history h ON h.job_id = s.job_id WHERE s.c = 'missing'"),
	qr/^secret "never_set" used by endpoint "sec-missing" is not set$/,
	'the missing secret is named in the error, and nothing else');
like( $node->safe_psql(
		'postgres',
		"SELECT h.error FROM public.sec_jobs s JOIN orchestrator.step_history h ON h.job_id = s.job_id WHERE s.c = 'timeout'"),
	qr/^request to endpoint "sec-timeout" timed out after 300 ms$/,
	'the timeout is recorded as one');
is( $node->safe_psql(
		'postgres', q{
SELECT j.context->'outputs'->'call'->>'echo', j.context->'outputs'->'call'->>'auth'
FROM public.sec_jobs s JOIN orchestrator.sequence_jobs j ON j.id = s.job_id WHERE s.c = 'echo'}),
	('*' x length($secret)) . '|Bearer ' . ('*' x length($secret)),
	'a secret echoed in a response body is scrubbed from the stored output');

# the endpoints did get the secret: the test would mean nothing otherwise
my $records = standin_requests();
my %sent;
for my $r (@$records)
{
	my ($case) = $r->{path} =~ m{^/functions/v1/sec-(.*)$} or next;
	$sent{$case}++
	  if ($r->{headers}{authorization} // '') eq "Bearer $secret"
	  && ($r->{headers}{'x-api-key'} // '') eq $secret;
}
is( join(', ', map { "$_:" . ($sent{$_} // 0) } @cases),
	'echo:1, fail:1, garbage:1, limited:2, missing:0, ok:1, timeout:1',
	'every request carried the secret in both headers; with a secret missing, nothing was sent');
is(scalar(@$records), 7, 'and no other request was made');

is($node->safe_psql('postgres', "SELECT count(*) FROM orchestrator.secrets WHERE value = '$secret'"),
	'1', 'the secret is stored in orchestrator.secrets');
my ($scanned, $found) = tables_holding();
cmp_ok($scanned, '>=', 10, "scanned every table of the database ($scanned)");
is($found, '', 'no table but orchestrator.secrets holds the secret value');
my ($dump_data, $dump_full) = dumps();
like($dump_data, qr/^COPY orchestrator\.step_history .*\n(.*\n)*.*never_set/m,
	'the data-only dump has the step history (so it is a dump worth searching)');
like($dump_data, qr/^COPY orchestrator\.sequence_jobs /m, 'and the jobs');
absent($dump_data, 'the secret value is not in the data-only dump');
absent($dump_full, 'nor in a full dump (orchestrator.secrets is never dumped)');
my $log = slurp_file($node->logfile);
like($log, qr/permission denied for table secrets\n.*STATEMENT:.*orchestrator\.secrets/,
	'the server log has the failed statements (so it is a log worth searching)');
absent($log, 'the secret value is not in the server log');

# ---------------------------------------------------------------------------
# 2. a redirect whose Location carries the secret
# ---------------------------------------------------------------------------
ok(run_cases('redirect'), 'the redirect job finished');
like( $node->safe_psql(
		'postgres',
		"SELECT j.status || ' ' || h.http_status FROM public.sec_jobs s JOIN orchestrator.step_history h ON h.job_id = s.job_id
		 JOIN orchestrator.sequence_jobs j ON j.id = s.job_id WHERE s.c = 'redirect'"),
	qr/^failed 302$/, 'the redirect was not followed: the step failed');
is(scalar(@{ standin_requests('/functions/v1/sec-redirect') }), 1,
	'the redirect endpoint got one request');
{
	unlike( $node->safe_psql(
			'postgres',
			"SELECT h.error FROM public.sec_jobs s JOIN orchestrator.step_history h ON h.job_id = s.job_id WHERE s.c = 'redirect'"),
		qr/\Q$secret\E/,
		'the step error shows the Location with the secret scrubbed');
	($scanned, $found) = tables_holding();
	is($found, '', 'after the redirect, still no table but orchestrator.secrets holds the secret value');
	($dump_data, $dump_full) = dumps();
	absent($dump_data, 'after the redirect, the secret value is not in the data-only dump');
}
$log = slurp_file($node->logfile);
absent($log, 'after the redirect, the secret value is not in the server log');

$node->stop;
is(stop_standin(), 0, 'stand-in exited cleanly');

done_testing();
