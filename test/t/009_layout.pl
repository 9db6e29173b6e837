# The source layout keeps its promises (src/README.md): one owner of job
# state, no cycle between files, a header per module that other files use,
# and an install script whose every source is joined exactly once.  Reads
# the sources only; starts no server.
use strict;
use warnings;
use FindBin;
use Test::More;

my $src = "$FindBin::Bin/../../src";

sub slurp
{
	my ($path) = @_;
	open(my $fh, '<', $path) or die "could not open $path: $!";
	local $/;
	my $text = <$fh>;
	close $fh;
	return $text;
}

opendir(my $dh, $src) or die "could not open $src: $!";
my @files = sort grep { /\.(c|h|sql)$/ } readdir($dh);
closedir $dh;
my @c = grep { /\.c$/ } @files;
my @sql = grep { /\.sql$/ } @files;
ok(@c > 10 && @sql > 10, 'the C and SQL sources are found');

# --- one owner of job state
my %writers;
for my $f (@c, @sql)
{
	my $text = slurp("$src/$f");
	$writers{$f} = 1
	  if $text =~ /UPDATE\s+orchestrator\.sequence_jobs\b/i
	  || $text =~ /INSERT\s+INTO\s+orchestrator\.step_history\b/i;
}
is(join(', ', sort keys %writers), 'job_state.c',
	'only job_state.c writes sequence_jobs or inserts step_history rows');

# --- who includes whom: a.c including "b.h" uses b.c; no cycle
my %uses;
for my $f (@c)
{
	(my $mod = $f) =~ s/\.c$//;
	my $text = slurp("$src/$f");
	while ($text =~ /^#include "([a-z_]+)\.h"/mg)
	{
		$uses{$mod}{$1} = 1 if $1 ne $mod;
	}
}
# headers including headers count for the file that includes them
for my $h (grep { /\.h$/ } @files)
{
	(my $mod = $h) =~ s/\.h$//;
	my $text = slurp("$src/$h");
	while ($text =~ /^#include "([a-z_]+)\.h"/mg)
	{
		$uses{$mod}{$1} = 1 if $1 ne $mod;
	}
}
my (%state, @cycle);

sub visit
{
	my ($m, @path) = @_;
	return if @cycle;
	if (($state{$m} // 0) == 1)
	{
		@cycle = (@path, $m);
		return;
	}
	return if ($state{$m} // 0) == 2;
	$state{$m} = 1;
	visit($_, @path, $m) for sort keys %{ $uses{$m} // {} };
	$state{$m} = 2;
}
visit($_) for sort keys %uses;
is(join(' -> ', @cycle), '', 'no file uses another that uses it back, directly or round a cycle');

# every header names a module with a C file
my @orphans = grep { my $m = $_; $m =~ s/\.h$/.c/; !-e "$src/$m" } grep { /\.h$/ } @files;
is(join(', ', @orphans), '', 'every header belongs to a C file of the same name');

# --- the install script: every source once, in load_order.txt
my @order = grep { length } split /\n/, slurp("$src/load_order.txt");
my %seen;
$seen{$_}++ for @order;
is(join(', ', grep { $seen{$_} > 1 } sort keys %seen), '', 'load_order.txt names no source twice');
is(join(', ', sort @order), join(', ', sort @sql), 'load_order.txt names every src/*.sql, and only those');
like(slurp("$src/$order[0]"), qr/^\\echo Use "CREATE EXTENSION orchestrator"/m,
	'the first source refuses to run outside CREATE EXTENSION');

done_testing();
