/*-------------------------------------------------------------------------
 *
 * redact.c
 *	  Masking email addresses and bearer tokens: in stored errors and in
 *	  everything a worker writes to the server log.
 *
 * orch_redact replaces each email address (local@domain.tld) with
 * "[email]", and with "[redacted]": the credential after an authentication
 * scheme (Bearer, Basic, Token, in any case; a credential has a digit or is
 * at least 8 characters long), the value of a secret-bearing
 * key (token, access_token, secret, password, api_key, authorization, ...
 * followed by ":" or "="), Slack tokens (xoxb-...) and JWTs (eyJ...).  It is the one implementation: SQL calls it
 * as orchestrator.redact (last_error, step_history.error, context errors),
 * and workers install it as an emit_log_hook, so a step function's RAISE, a
 * failed statement or the engine's own messages reach the log masked.
 *
 * src/redact.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/elog.h"

#include "redact.h"

PG_FUNCTION_INFO_V1(orch_redact_sql);

static emit_log_hook_type prev_emit_log_hook = NULL;

static bool
local_char(char c)
{
	return isalnum((unsigned char) c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

static bool
domain_char(char c)
{
	return isalnum((unsigned char) c) || c == '.' || c == '-';
}

/* strchr finds a string's terminator too: '\0' is never a token character */
static bool
token_char(char c)
{
	return c != '\0' && (isalnum((unsigned char) c) || strchr("._~+/=-", c) != NULL);
}

/*
 * email_end: text[at] is '@'.  Returns the index just past the address
 * whose domain ends in "." and two or more letters, or -1.
 */
static int
email_end(const char *text, int at)
{
	int			end = at + 1;
	int			best = -1;

	while (text[end] != '\0' && domain_char(text[end]))
		end++;
	/* the last "." in the domain followed by 2+ letters ends the address */
	for (int dot = end - 1; dot > at + 1; dot--)
	{
		int			letters = 0;

		if (text[dot] != '.')
			continue;
		while (dot + 1 + letters < end && isalpha((unsigned char) text[dot + 1 + letters]))
			letters++;
		if (letters >= 2)
		{
			best = dot + 1 + letters;
			break;
		}
	}
	return best;
}

/* case-insensitive "word" at s, not followed by a letter or digit */
static bool
word_at(const char *s, const char *word)
{
	size_t		len = strlen(word);

	return pg_strncasecmp(s, word, len) == 0 && !isalnum((unsigned char) s[len]) && s[len] != '_';
}

static bool
value_char(char c)
{
	return c != '\0' && !isspace((unsigned char) c) && strchr("\"',;&})]", c) == NULL;
}

/*
 * looks_like_credential: a run of token characters with a digit in it, or
 * at least 8 long ("the bearer of bad news" keeps its words).
 */
static bool
looks_like_credential(const char *s)
{
	int			len = 0;
	bool		digit = false;

	while (token_char(s[len]))
	{
		digit |= isdigit((unsigned char) s[len]) != 0;
		len++;
	}
	return len > 0 && (digit || len >= 8);
}

/*
 * scheme_word_end: at s + i an authentication scheme word (Bearer, Basic,
 * Token) and whitespace; returns the index just past the whitespace, or 0.
 */
static int
scheme_word_end(const char *s, int i)
{
	static const char *const schemes[] = {"bearer", "basic", "token"};

	for (int k = 0; k < lengthof(schemes); k++)
	{
		int			end = i + strlen(schemes[k]);
		int			j = end;

		if (!word_at(s + i, schemes[k]))
			continue;
		while (isspace((unsigned char) s[j]))
			j++;
		return j > end ? j : 0;
	}
	return 0;
}

/*
 * scheme_end: at s + i a scheme word followed by whitespace and a
 * credential; returns the index just past the word, or 0.
 */
static int
scheme_end(const char *s, int i)
{
	int			j = scheme_word_end(s, i);

	if (j == 0 || !looks_like_credential(s + j))
		return 0;
	while (j > i && isspace((unsigned char) s[j - 1]))
		j--;
	return j;
}

/*
 * key_value_end: at s + i a secret-bearing key (token, access_token,
 * secret, password, api_key, authorization, ...) followed by ":" or "=" and
 * a value; returns the index where the value starts, or 0.  A value that
 * opens with a scheme word ("Authorization: Bearer abc") keeps the word:
 * what follows it is the value, however short, unless that is a scheme
 * word again ("token=basic Bearer abc": the scan goes on to the second).
 */
static int
key_value_end(const char *s, int i)
{
	static const char *const keys[] = {"access_token", "refresh_token", "token", "client_secret",
		"secret", "password", "passwd", "api_key", "apikey", "api-key", "authorization"};

	for (int k = 0; k < lengthof(keys); k++)
	{
		int			j = i + strlen(keys[k]);
		int			cred;

		if (!word_at(s + i, keys[k]))
			continue;
		while (s[j] == '"' || s[j] == '\'')
			j++;
		while (s[j] == ' ' || s[j] == '\t')
			j++;
		if (s[j] != ':' && s[j] != '=')
			return 0;
		j++;
		while (s[j] == ' ' || s[j] == '\t' || s[j] == '"' || s[j] == '\'')
			j++;
		if (!value_char(s[j]))
			return 0;
		cred = scheme_word_end(s, j);
		if (cred > 0 && value_char(s[cred]) && scheme_word_end(s, cred) == 0)
			return cred;
		return j;
	}
	return 0;
}

/*
 * bare_token_end: at s + i a Slack token (xoxb-..., xoxp-...) or a JWT
 * (eyJ... . ... . ...); returns the index just past it, or 0.
 */
static int
bare_token_end(const char *s, int i)
{
	int			j;
	int			dots = 0;

	if (strncmp(s + i, "xox", 3) == 0 && s[i + 3] != '\0' && strchr("abprs", s[i + 3]) && s[i + 4] == '-')
	{
		for (j = i + 5; isalnum((unsigned char) s[j]) || s[j] == '-'; j++)
			;
		return j > i + 5 ? j : 0;
	}
	if (strncmp(s + i, "eyJ", 3) == 0)
	{
		for (j = i + 3; isalnum((unsigned char) s[j]) || s[j] == '-' || s[j] == '_' || s[j] == '.'; j++)
			dots += (s[j] == '.');
		return dots >= 2 ? j : 0;
	}
	return 0;
}

/*
 * orch_redact returns a palloc'd copy of text with emails and tokens masked.
 */
char *
orch_redact(const char *text)
{
	StringInfoData pass1;
	StringInfoData out;
	int			len = strlen(text);
	int			i = 0;

	/* emails */
	initStringInfo(&pass1);
	while (i < len)
	{
		const char *at = strchr(text + i, '@');
		int			a,
					start,
					end;

		if (at == NULL)
		{
			appendStringInfoString(&pass1, text + i);
			break;
		}
		a = at - text;
		start = a;
		while (start > i && local_char(text[start - 1]))
			start--;
		end = (start < a) ? email_end(text, a) : -1;
		if (end < 0)
		{
			appendBinaryStringInfo(&pass1, text + i, a + 1 - i);
			i = a + 1;
			continue;
		}
		appendBinaryStringInfo(&pass1, text + i, start - i);
		appendStringInfoString(&pass1, "[email]");
		i = end;
	}

	/* tokens */
	initStringInfo(&out);
	i = 0;
	while (i < pass1.len)
	{
		const char *d = pass1.data;
		bool		boundary = (i == 0 || !isalnum((unsigned char) d[i - 1]));
		int			n;

		if (boundary && (n = key_value_end(d, i)) > 0)
		{
			/* key: value, key=value, "key": "value": the value goes */
			appendBinaryStringInfo(&out, d + i, n - i);
			appendStringInfoString(&out, "[redacted]");
			i = n;
			while (i < pass1.len && value_char(d[i]))
				i++;
			continue;
		}
		if (boundary && (n = scheme_end(d, i)) > 0)
		{
			/* Bearer abc, basic abc, token abc: the credential goes */
			appendBinaryStringInfo(&out, d + i, n - i);
			appendStringInfoString(&out, " [redacted]");
			i = n;
			while (i < pass1.len && isspace((unsigned char) d[i]))
				i++;
			while (i < pass1.len && token_char(d[i]))
				i++;
			continue;
		}
		if (boundary && (n = bare_token_end(d, i)) > 0)
		{
			/* a Slack token or a JWT, wherever it stands */
			appendStringInfoString(&out, "[redacted]");
			i = n;
			continue;
		}
		appendStringInfoChar(&out, d[i]);
		i++;
	}
	pfree(pass1.data);
	return out.data;
}

/* orchestrator.redact(text) */
Datum
orch_redact_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(orch_redact(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}

static void
redact_field(char **field)
{
	if (*field != NULL)
		*field = orch_redact(*field);
}

/*
 * redact_log masks every text field of a report before it is emitted (runs
 * in ErrorContext, which holds the report).
 */
static void
redact_log(ErrorData *edata)
{
	/* reporting an error about reporting: emit as is, allocate nothing */
	if (in_error_recursion_trouble())
	{
		if (prev_emit_log_hook)
			prev_emit_log_hook(edata);
		return;
	}
	redact_field(&edata->message);
	redact_field(&edata->detail);
	redact_field(&edata->detail_log);
	redact_field(&edata->hint);
	redact_field(&edata->context);
	redact_field(&edata->internalquery);
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * orch_redact_log_init makes this process redact what it logs (workers).
 */
void
orch_redact_log_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = redact_log;
}
