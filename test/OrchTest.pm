
# Copyright (c) orchestrator authors

=head1 NAME

OrchTest - scaffolding shared by orchestrator's TAP tests (test/t/*.pl)

=head1 SYNOPSIS

  use FindBin;
  use lib "$FindBin::Bin/..";
  use OrchTest;

  my ($base, $port) = start_standin();        # only tests that need HTTP
  my $node = start_node('name', workers => 1, lease_duration => '3s');
  install_extension($node);                   # + org $ORG and user $USER
  ok(wait_for_workers($node, 1), 'one orchestrator worker is running');
  my $job = submit_job($node, 'event_type', '{"n": 1}');
  ...
  is(stop_standin(), 0, 'stand-in exited cleanly');

=head1 DESCRIPTION

Starting a node with the extension preloaded, installing it with one org and
one user, finding and waiting for the worker, and running the stand-in
server (test/standin.py) with its control API.  Every helper makes the same
calls the tests used to make inline; none of them asserts anything, so the
tests' assertions stay in the tests.

The stand-in, when started, is one per test script; it is killed at exit
whatever happens to the test.

=cut

package OrchTest;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time usleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(
  $ORG $USER
  start_node install_extension add_org_user
  worker_pid wait_for_workers wait_for_new_worker wait_idle_worker
  wait_for_crash_restart
  submit_job wait_job_status wait_step_blocked
  start_standin stop_standin control
  standin_reset standin_behave standin_requests standin_stats
  wait_standin_in_flight
);

# the org and the user the tests submit events as
our $ORG = '00000000-0000-0000-0000-00000000000a';
our $USER = '00000000-0000-0000-0000-0000000000b1';

my $WORKERS = "FROM pg_stat_activity WHERE backend_type = 'orchestrator worker'";

# ---------------------------------------------------------------------------
# the node
# ---------------------------------------------------------------------------

=head2 start_node(NAME, %conf)

Creates, initialises and starts a node with orchestrator in
shared_preload_libraries.  %conf: database (orchestrator.database, default
'postgres'), workers and lease_duration (orchestrator.*, left out when not
given), conf (more postgresql.conf lines, appended last).  Returns the node.

=cut

sub start_node
{
	my ($name, %conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $lines = "\nshared_preload_libraries = 'orchestrator'\n"
	  . "orchestrator.database = '" . ($conf{database} // 'postgres') . "'\n";
	$lines .= "orchestrator.workers = $conf{workers}\n" if defined $conf{workers};
	$lines .= "orchestrator.lease_duration = '$conf{lease_duration}'\n"
	  if defined $conf{lease_duration};
	$lines .= $conf{conf} if defined $conf{conf};
	$node->append_conf('postgresql.conf', $lines);
	$node->start;
	return $node;
}

=head2 install_extension(NODE, %opt)

CREATE EXTENSION orchestrator, then add_org_user with the same %opt
(db, default 'postgres', is the database for both).

=head2 add_org_user(NODE, %opt)

Inserts org $ORG ('Acme') and a user in it.  %opt: db (default 'postgres'),
user (default $USER), display_name (default 'Ann'; undef leaves it null).

=cut

sub install_extension
{
	my ($node, %opt) = @_;
	$node->safe_psql($opt{db} // 'postgres', 'CREATE EXTENSION orchestrator');
	add_org_user($node, %opt);
	return;
}

sub add_org_user
{
	my ($node, %opt) = @_;
	my $user = $opt{user} // $USER;
	my $name = exists $opt{display_name} ? $opt{display_name} : 'Ann';
	my $insert_user =
	  defined $name
	  ? "INSERT INTO orchestrator.users (id, org_id, display_name) VALUES ('$user', '$ORG', '$name');"
	  : "INSERT INTO orchestrator.users (id, org_id) VALUES ('$user', '$ORG');";
	$node->safe_psql($opt{db} // 'postgres',
		"INSERT INTO orchestrator.orgs (id, name) VALUES ('$ORG', 'Acme');\n$insert_user");
	return;
}

# ---------------------------------------------------------------------------
# the worker and its jobs
# ---------------------------------------------------------------------------

=head2 worker_pid(NODE)

The pid of the orchestrator worker (the pids, one a line, if there are
several).

=head2 wait_for_workers(NODE, N)

Polls until N orchestrator workers run; true if they do in time.

=head2 wait_for_new_worker(NODE, OLD_PID)

Polls until one worker other than OLD_PID runs (after a crash restart).

=head2 wait_idle_worker(NODE)

Polls until the worker's state is idle.

=cut

sub worker_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres', "SELECT pid $WORKERS");
}

sub wait_for_workers
{
	my ($node, $n) = @_;
	return $node->poll_query_until('postgres', "SELECT count(*) $WORKERS", $n);
}

sub wait_for_new_worker
{
	my ($node, $old_pid) = @_;
	return $node->poll_query_until('postgres',
		"SELECT count(*) $WORKERS AND pid <> $old_pid", '1');
}

sub wait_idle_worker
{
	my ($node) = @_;
	return $node->poll_query_until('postgres', "SELECT state $WORKERS", 'idle');
}

=head2 wait_for_crash_restart(NODE, PID, LOG_OFFSET)

After worker PID was sent SIGKILL: waits until the server log (from
LOG_OFFSET) shows it terminated by signal 9 and the postmaster
reinitialising.

=cut

sub wait_for_crash_restart
{
	my ($node, $pid, $offset) = @_;
	$node->wait_for_log(
		qr/background worker "orchestrator worker" \(PID $pid\) was terminated by signal 9/,
		$offset);
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
	return;
}

=head2 submit_job(NODE, EVENT_TYPE, PAYLOAD_JSON)

orch_submit_event(EVENT_TYPE, 'test', $ORG, $USER, PAYLOAD_JSON); returns the
job id.

=head2 wait_job_status(NODE, JOB, STATUS)

Polls until the job has STATUS.

=head2 wait_step_blocked(NODE, JOB)

Polls until the job is in progress and a worker waits on an advisory lock
(a step blocked on a lock the test holds).

=cut

sub submit_job
{
	my ($node, $type, $payload) = @_;
	return $node->safe_psql('postgres',
		"SELECT job_id FROM orch_submit_event('$type', 'test', '$ORG', '$USER', '$payload')");
}

sub wait_job_status
{
	my ($node, $job, $status) = @_;
	return $node->poll_query_until('postgres',
		"SELECT status FROM orchestrator.sequence_jobs WHERE id = '$job'", $status);
}

sub wait_step_blocked
{
	my ($node, $job) = @_;
	return $node->poll_query_until(
		'postgres', qq{
SELECT (SELECT status FROM orchestrator.sequence_jobs WHERE id = '$job') = 'in_progress'
   AND EXISTS (SELECT 1 $WORKERS
                 AND wait_event_type = 'Lock' AND wait_event = 'advisory')});
}

# ---------------------------------------------------------------------------
# the stand-in server
# ---------------------------------------------------------------------------

my ($standin, $standin_base);
my ($standin_out, $standin_err) = ('', '');
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->canonical;
my $standin_py = $ENV{ORCH_STANDIN}
  || File::Spec->rel2abs(dirname(__FILE__) . '/standin.py');

=head2 start_standin(%opt)

Starts test/standin.py (or $ENV{ORCH_STANDIN}) on a free loopback port and
waits (bounded) for its port file; bails out if it does not come up.
Returns its base URL (http://127.0.0.1:PORT) and the port.  %opt: lean
(true: start it with --lean, recording only what a long soak needs).

=head2 stop_standin()

Sends it SIGTERM, waits for it, returns its exit status.

=cut

sub start_standin
{
	my (%opt) = @_;
	my $tmp = PostgreSQL::Test::Utils::tempdir;
	$standin = IPC::Run::start(
		[ 'python3', $standin_py, '--port', '0', '--port-file', "$tmp/port", ($opt{lean} ? ('--lean') : ()) ],
		'<', \undef, '>', \$standin_out, '2>', \$standin_err);
	my $port;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		if (-s "$tmp/port")
		{
			($port) = slurp_file("$tmp/port") =~ /^(\d+)$/m;
			last if $port;
		}
		$standin->pump_nb;
		BAIL_OUT("stand-in exited: $standin_err") unless $standin->pumpable;
		usleep(20_000);
	}
	BAIL_OUT("stand-in did not write its port file: $standin_err") unless $port;
	$standin_base = "http://127.0.0.1:$port";
	return ($standin_base, $port);
}

# never leave the stand-in behind, whatever happens to the test
END { local $?; $standin->kill_kill(grace => 5) if $standin && $standin->pumpable; }

sub stop_standin
{
	$standin->signal('TERM');
	$standin->finish;
	return $standin->full_result(0);
}

=head2 control(METHOD, WHAT, [BODY])

One call to the stand-in's control API (BODY, if any, sent as JSON); dies
unless it succeeds; returns the decoded answer.

=head2 standin_reset(), standin_behave(PATH, %how), standin_requests([PATH]), standin_stats()

POST /_control/reset; POST /_control/behave for PATH; GET
/_control/requests (of PATH only, if given), an array ref of records; GET
/_control/stats, a hash ref.

=cut

sub control
{
	my ($method, $what, $body) = @_;
	my %opt;
	%opt = (headers => { 'content-type' => 'application/json' }, content => $json->encode($body))
	  if defined $body;
	my $r = $http->request($method, "$standin_base$what", \%opt);
	die "stand-in $method $what: $r->{status} $r->{content}" unless $r->{success};
	return $json->decode($r->{content});
}

sub standin_reset { return control('POST', '/_control/reset'); }

sub standin_behave
{
	my ($path, %how) = @_;
	return control('POST', '/_control/behave', { path => $path, %how });
}

sub standin_requests
{
	my ($path) = @_;
	return control('GET', defined $path ? "/_control/requests?path=$path" : '/_control/requests');
}

sub standin_stats { return control('GET', '/_control/stats'); }

=head2 wait_standin_in_flight(N)

Polls (bounded by the test timeout) until the stand-in holds at least N
requests in flight; returns its last stats, for the caller to assert on.

=cut

sub wait_standin_in_flight
{
	my ($n) = @_;
	my $stats;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		$stats = standin_stats();
		last if $stats->{in_flight} >= $n;
		usleep(20_000);
	}
	return $stats;
}

1;
