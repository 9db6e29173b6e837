--
-- definitions: orch_define_sequence validates every step and versions sequences
--
CREATE FUNCTION public.step_ok(state jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT '{"ok": true}'::jsonb $$;
CREATE FUNCTION public.step_text(state jsonb) RETURNS text LANGUAGE sql
AS $$ SELECT 'x' $$;
CREATE FUNCTION public.step_int(state int) RETURNS jsonb LANGUAGE sql
AS $$ SELECT '{}'::jsonb $$;

-- a good definition returns version 1, then 2
SELECT orch_define_sequence('def_test', '[{"name": "a", "kind": "sql", "function": "step_ok"}]');
SELECT orch_define_sequence('def_test', '[{"name": "a", "kind": "sql", "function": "public.step_ok", "on_failure": "continue"}]');
-- defaults are filled in and the function is stored schema-qualified
SELECT version, steps FROM orchestrator.sequence_definitions WHERE event_type = 'def_test' ORDER BY version;

-- bad definitions: each error names the step and the field
SELECT test_error($$SELECT orch_define_sequence(NULL, '[]')$$);
SELECT test_error($$SELECT orch_define_sequence('bad type!', '[{"name": "a", "kind": "sql", "function": "step_ok"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '{}')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[42]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"kind": "sql", "function": "step_ok"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "", "kind": "sql", "function": "step_ok"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok"}, {"name": "a", "kind": "sql", "function": "step_ok"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "function": "step_ok"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "carrier_pigeon"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "no_such_fn"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_text"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_int"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "condition": "$.x ==="}]')$$);
SELECT test_error($q$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "expect": "$$$"}]')$q$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "expect": 5}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "on_failure": "explode"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "retry": {"attempts": 0}}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "retry": {"attempts": 101}}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "retry": {"attempts": 1.5}}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "retry": {"backoff_ms": -1}}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "retry": {"tries": 2}}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "retry": 3}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "timeout_ms": 0}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "timeout_ms": 1.5}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "requires_approval": "yes"}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "colour": "blue"}]')$$);
-- nothing was stored for the rejected type
SELECT count(*) FROM orchestrator.sequence_definitions WHERE event_type = 't';
-- a failing definition in the middle of a transaction leaves the version count alone
SELECT max(version) FROM orchestrator.sequence_definitions WHERE event_type = 'def_test';
-- malformed follow-ups, an unknown context source and a non-text description are refused
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "followups": {}}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "followups": [{"for_each": "$.x"}]}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "followups": [{"type": "x", "for_each": "$.x ?("}]}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "followups": [{"type": "x", "payload": {"p": "@.x ==="}}]}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "followups": [{"type": "x", "when": "now"}]}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "requires_context": ["apollo"]}]')$$);
SELECT test_error($$SELECT orch_define_sequence('t', '[{"name": "a", "kind": "sql", "function": "step_ok", "description": 7}]')$$);
-- false is the default and allowed
SELECT orch_define_sequence('def_test', '[{"name": "a", "kind": "sql", "function": "step_ok", "requires_approval": false, "ai": false, "description": "plain"}]');
