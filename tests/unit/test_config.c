/* tests/unit/test_config.c - config parsing, merging and errors */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "config.h"
#include "mg-alloc.h"

#define GOOD                                                                                        \
	"{\"openpgp\": {\"gnupg_home\": \"/g\", \"always_sign\": true, \"signing_key\": \"K\"},\n"  \
	" \"database\": {\"event\": {\"name\": \"ev\", \"username\": \"u\", \"password\": \"p\",\n" \
	"   \"host\": \"localhost\", \"port\": 5432}, \"additional_directive_where\": \"\"},\n"     \
	" \"template_dir\": \"/t\", \"sender\": \"CERT <cert@example.org>\",\n"                     \
	" \"smtp\": {\"host\": \"mx\", \"port\": 25}, \"logging_level\": \"DEBUG\"}\n"

static int parse1(struct mg_config *cfg, const char *text, struct mg_err *err)
{
	struct mg_config_src src = { "/etc/m.conf", text, strlen(text) };

	return mg_config_parse(cfg, &src, 1, err);
}

static void test_good(void **state)
{
	struct mg_config cfg;
	struct mg_err err = { 0 };

	assert_int_equal(parse1(&cfg, GOOD, &err), MG_OK);
	assert_string_equal(cfg.db_name, "ev");
	assert_string_equal(cfg.db_user, "u");
	assert_string_equal(cfg.db_password, "p");
	assert_string_equal(cfg.db_port, "5432");
	assert_string_equal(cfg.additional_directive_where, "");
	assert_string_equal(cfg.gnupg_home, "/g");
	assert_true(cfg.always_sign);
	assert_string_equal(cfg.signing_key, "K");
	assert_string_equal(cfg.template_dir, "/t");
	assert_string_equal(cfg.sender, "CERT <cert@example.org>");
	assert_string_equal(cfg.smtp_host, "mx");
	assert_int_equal(cfg.smtp_port, 25);
	assert_int_equal(cfg.log_level, LOG_DEBUG);
	assert_int_equal(cfg.mails_per_session, 32);	  /* default */
	assert_int_equal(cfg.max_events_per_mail, 10000); /* default */
	assert_true(cfg.sign_via_agent);		  /* default */
	assert_int_equal(cfg.n_warnings, 0);
	mg_config_release(&cfg);
}

/* The user file overrides per top-level key, merging objects one level deep. */
static void test_merge(void **state)
{
	static const char user[] = "{\"smtp\": {\"port\": \"2525\"}, \"sender\": \"x@y.example\","
				   " \"database\": {\"event\": {\"name\": \"other\"}}}";
	struct mg_config_src srcs[2] = { { "/etc/m.conf", GOOD, strlen(GOOD) },
					 { "/home/u/.intelmq/m.conf", user, strlen(user) } };
	struct mg_config cfg;
	struct mg_err err = { 0 };

	assert_int_equal(mg_config_parse(&cfg, srcs, 2, &err), MG_OK);
	assert_string_equal(cfg.smtp_host, "mx");
	assert_int_equal(cfg.smtp_port, 2525);
	assert_string_equal(cfg.sender, "x@y.example");
	/* database.event was replaced as a whole: one level deep only */
	assert_string_equal(cfg.db_name, "other");
	assert_null(cfg.db_user);
	mg_config_release(&cfg);
}

static const struct {
	const char *text;
	const char *want; /* substring of the error */
} bad[] = {
	{ "{\"template_dir\": \"/t\"}", "'openpgp': missing" },
	{ "{\"openpgp\": {\"gnupg_home\": \"/g\", \"always_sign\": true}, \"template_dir\": \"/t\","
	  " \"sender\": \"a@b\", \"database\": {\"event\": {\"name\": \"e\"}}}",
	  "/etc/m.conf: 'openpgp.signing_key': missing, required" },
	{ "{\"openpgp\": {\"gnupg_home\": \"/g\", \"always_sign\": \"yes\", \"signing_key\": \"K\"}}",
	  "/etc/m.conf: 'openpgp.always_sign': expected true or false, got a string" },
	{ "{\"openpgp\": 5}", "'openpgp': expected an object" },
	{ "{\n  \"openpgp\": {\n    \"x\": 1,,\n", "/etc/m.conf:3:12: invalid JSON" },
	{ "{\"openpgp\": {}} trailing", "/etc/m.conf:1:17: invalid JSON" },
	{ "[1, 2]", "expected a JSON object at the top level" },
	{ "", "invalid JSON: unexpected end of file" },
};

static void test_bad(void **state)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mg_config cfg;
		struct mg_err err = { 0 };

		print_message("case %zu: %s\n", i, bad[i].text);
		assert_int_equal(parse1(&cfg, bad[i].text, &err), MG_ECONFIG);
		if (strstr(err.msg, bad[i].want) == NULL)
			fail_msg("got \"%s\", want \"%s\"", err.msg, bad[i].want);
	}
}

/* Wrong values name the file, the key path and what was expected. */
static void test_bad_values(void **state)
{
	static const struct {
		const char *key_json; /* replaces the smtp object */
		const char *want;
	} cases[] = {
		{ "\"smtp\": {\"port\": \"x\"}",
		  "/etc/m.conf: 'smtp.port': expected an integer 1..65535, got \"x\"" },
		{ "\"smtp\": {\"port\": 70000}", "'smtp.port': expected an integer 1..65535" },
		{ "\"smtp\": {\"port\": 25.5}",
		  "'smtp.port': expected an integer 1..65535, got a number" },
		{ "\"smtp\": {\"host\": \"\"}", "'smtp.host': expected a non-empty string" },
		{ "\"smtp\": {\"host\": [1]}", "'smtp.host': expected a string, got an array" },
		{ "\"logging_level\": \"LOUD\"", "'logging_level': expected DEBUG, INFO" },
		{ "\"delivery\": {\"mails_per_session\": 0}",
		  "'delivery.mails_per_session': expected an integer 1..64, got \"0\"" },
		{ "\"delivery\": {\"max_events_per_mail\": 0}",
		  "'delivery.max_events_per_mail': expected an integer 1..1000000, got \"0\"" },
		{ "\"delivery\": {\"max_events_per_mail\": 1000001}",
		  "'delivery.max_events_per_mail': expected an integer 1..1000000" },
		{ "\"delivery\": {\"max_events_per_mail\": -5}",
		  "'delivery.max_events_per_mail': expected an integer 1..1000000" },
		{ "\"delivery\": {\"max_events_per_mail\": \"100\"}",
		  "'delivery.max_events_per_mail': expected an integer 1..1000000, got a string" },
		{ "\"delivery\": {\"sign_via_agent\": \"no\"}",
		  "'delivery.sign_via_agent': expected true or false, got a string" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[2048];
		struct mg_config cfg;
		struct mg_err err = { 0 };

		(void)snprintf(
			text, sizeof(text),
			"{\"openpgp\": {\"gnupg_home\": \"/g\", \"always_sign\": false,"
			" \"signing_key\": \"\"}, \"database\": {\"event\": {\"name\": \"e\"}},"
			" \"template_dir\": \"/t\", \"sender\": \"a@b.example\", %s}",
			cases[i].key_json);
		print_message("case %zu: %s\n", i, cases[i].key_json);
		assert_int_equal(parse1(&cfg, text, &err), MG_ECONFIG);
		if (strstr(err.msg, cases[i].want) == NULL)
			fail_msg("got \"%s\", want \"%s\"", err.msg, cases[i].want);
	}
}

/* delivery.max_events_per_mail: the bounds and values between are accepted. */
static void test_max_events_per_mail(void **state)
{
	static const struct {
		const char *value;
		int want;
	} cases[] = {
		{ "1", 1 },
		{ "1000", 1000 },
		{ "2500", 2500 },
		{ "1000000", 1000000 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[2048];
		struct mg_config cfg;
		struct mg_err err = { 0 };

		(void)snprintf(
			text, sizeof(text),
			"{\"openpgp\": {\"gnupg_home\": \"/g\", \"always_sign\": false,"
			" \"signing_key\": \"\"}, \"database\": {\"event\": {\"name\": \"e\"}},"
			" \"template_dir\": \"/t\", \"sender\": \"a@b.example\","
			" \"delivery\": {\"max_events_per_mail\": %s}}",
			cases[i].value);
		print_message("case %zu: %s\n", i, cases[i].value);
		if (parse1(&cfg, text, &err) != MG_OK)
			fail_msg("got \"%s\"", err.msg);
		assert_int_equal(cfg.max_events_per_mail, cases[i].want);
		assert_int_equal(cfg.n_warnings, 0);
		mg_config_release(&cfg);
	}
}

static void test_unknown_keys_warn(void **state)
{
	static const char text[] =
		"{\"openpgp\": {\"gnupg_home\": \"/g\", \"always_sign\": false, \"signing_key\": \"\"},"
		" \"database\": {\"event\": {\"name\": \"e\"}, \"other\": 1},"
		" \"template_dir\": \"/t\", \"sender\": \"a@b.example\", \"script_directory\": \"/s\","
		" \"colour\": 1}";
	struct mg_config cfg;
	struct mg_err err = { 0 };

	assert_int_equal(parse1(&cfg, text, &err), MG_OK);
	assert_int_equal(cfg.n_warnings, 2);
	assert_string_equal(cfg.warnings[0], "/etc/m.conf: unknown key 'database.other', ignoring");
	assert_string_equal(cfg.warnings[1], "/etc/m.conf: unknown key 'colour', ignoring");
	assert_false(cfg.always_sign);
	mg_config_release(&cfg);
}

/*
 * A long unknown key warns like a short one, shown cut.  Key paths and
 * warnings had a 1024-byte cap, and a longer key failed the parse as "out
 * of memory" (MG_EINPUT or MG_ENOMEM; fuzz_config checks the return code).
 */
static void test_unknown_long_keys(void **state)
{
	static const char base[] =
		"{\"openpgp\": {\"gnupg_home\": \"/g\", \"always_sign\": false, \"signing_key\": \"\"},"
		" \"database\": {\"event\": {\"name\": \"e\"}}, \"template_dir\": \"/t\","
		" \"sender\": \"a@b.example\"";
	char key[2001], text[4096], user[2100], path[3001], want[4096];
	struct mg_config_src srcs[2];
	struct mg_config cfg;
	struct mg_err err = { 0 };

	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	/* "ü" across the cut: the warning must not end in half a character */
	memcpy(key + 127, "\xc3\xbc", 2);
	(void)snprintf(text, sizeof(text), "%s, \"%s\": 1}", base, key);
	assert_int_equal(parse1(&cfg, text, &err), MG_OK);
	assert_int_equal(cfg.n_warnings, 1);
	(void)snprintf(want, sizeof(want), "/etc/m.conf: unknown key '%.127s...', ignoring", key);
	assert_string_equal(cfg.warnings[0], want);
	mg_config_release(&cfg);

	/* merged one level deep from a second file */
	(void)snprintf(text, sizeof(text), "%s}", base);
	(void)snprintf(user, sizeof(user), "{\"openpgp\": {\"%s\": 1}}", key);
	srcs[0] = (struct mg_config_src){ "/etc/m.conf", text, strlen(text) };
	srcs[1] = (struct mg_config_src){ "/home/u/m.conf", user, strlen(user) };
	assert_int_equal(mg_config_parse(&cfg, srcs, 2, &err), MG_OK);
	assert_int_equal(cfg.n_warnings, 1);
	(void)snprintf(want, sizeof(want),
		       "/home/u/m.conf: unknown key 'openpgp.%.120s...', ignoring", key);
	assert_string_equal(cfg.warnings[0], want);
	mg_config_release(&cfg);

	/* a long file name */
	memset(path, 'p', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	(void)snprintf(text, sizeof(text), "%s, \"colour\": 1}", base);
	srcs[0] = (struct mg_config_src){ path, text, strlen(text) };
	assert_int_equal(mg_config_parse(&cfg, srcs, 1, &err), MG_OK);
	assert_int_equal(cfg.n_warnings, 1);
	(void)snprintf(want, sizeof(want), "%s: unknown key 'colour', ignoring", path);
	assert_string_equal(cfg.warnings[0], want);
	mg_config_release(&cfg);
}

#define DB_BASE                                                                                  \
	"{\"openpgp\": {\"gnupg_home\": \"/g\", \"always_sign\": false, \"signing_key\": \"\"}," \
	" \"template_dir\": \"/t\", \"sender\": \"a@b.example\", \"database\": {\"event\": {"

/*
 * Further keys of database.event are libpq keywords, kept in file order with
 * their file; strings and integers are accepted, and no warning is given
 * (whether libpq knows the name is checked by mg_config_load).
 */
static void test_db_params(void **state)
{
	static const char text[] =
		DB_BASE "\"name\": \"ev\", \"port\": 5433, \"sslmode\": \"verify-full\","
			" \"sslrootcert\": \"/etc/ssl/ca.pem\", \"connect_timeout\": 10,"
			" \"passfile\": \"/p\", \"options\": \"-c statement_timeout=5s\","
			" \"target_session_attrs\": \"read-write\", \"gssencmode\": \"disable\","
			" \"sslpassword\": \"\"}}}";
	static const char *const want[][2] = {
		{ "sslmode", "verify-full" },
		{ "sslrootcert", "/etc/ssl/ca.pem" },
		{ "connect_timeout", "10" },
		{ "passfile", "/p" },
		{ "options", "-c statement_timeout=5s" },
		{ "target_session_attrs", "read-write" },
		{ "gssencmode", "disable" },
		{ "sslpassword", "" },
	};
	struct mg_config cfg;
	struct mg_err err = { 0 };

	assert_int_equal(parse1(&cfg, text, &err), MG_OK);
	assert_string_equal(cfg.db_name, "ev");
	assert_string_equal(cfg.db_port, "5433");
	assert_int_equal(cfg.n_warnings, 0);
	assert_int_equal(cfg.n_db_params, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < cfg.n_db_params; i++) {
		assert_string_equal(cfg.db_params[i].keyword, want[i][0]);
		assert_string_equal(cfg.db_params[i].value, want[i][1]);
		assert_string_equal(cfg.db_params[i].file, "/etc/m.conf");
	}
	assert_string_equal(mg_config_db_param(&cfg, "connect_timeout"), "10");
	assert_null(mg_config_db_param(&cfg, "service"));
	mg_config_release(&cfg);
}

/* With a service, the database name may come from the service file. */
static void test_db_service(void **state)
{
	static const char user[] = "{\"database\": {\"event\": {\"service\": \"mg\"}}}";
	static const char text[] = DB_BASE "\"service\": \"mg\"}}}";
	struct mg_config_src srcs[2] = { { "/etc/m.conf", GOOD, strlen(GOOD) },
					 { "/home/u/m.conf", user, strlen(user) } };
	struct mg_config cfg;
	struct mg_err err = { 0 };

	assert_int_equal(parse1(&cfg, text, &err), MG_OK);
	assert_null(cfg.db_name);
	assert_string_equal(mg_config_db_param(&cfg, "service"), "mg");
	mg_config_release(&cfg);

	/* merged one level deep: the user file's database.event replaces the system's */
	assert_int_equal(mg_config_parse(&cfg, srcs, 2, &err), MG_OK);
	assert_null(cfg.db_name);
	assert_null(cfg.db_user);
	assert_int_equal(cfg.n_db_params, 1);
	assert_string_equal(cfg.db_params[0].file, "/home/u/m.conf");
	mg_config_release(&cfg);
}

static void test_db_params_bad(void **state)
{
	static const struct {
		const char *keys;
		const char *want;
	} cases[] = {
		{ "\"sslmode\": \"x\"", "/etc/m.conf: 'database.event.name': missing, required" },
		{ "\"name\": \"e\", \"sslmode\": true",
		  "/etc/m.conf: 'database.event.sslmode': expected a string or an integer (a libpq "
		  "connection parameter), got a boolean" },
		{ "\"name\": \"e\", \"connect_timeout\": 1.5",
		  "'database.event.connect_timeout': expected a string or an integer" },
		{ "\"name\": \"e\", \"options\": [\"-c\"]",
		  "'database.event.options': expected a string or an integer (a libpq connection "
		  "parameter), got an array" },
		{ "\"name\": \"e\", \"sslkey\": \"a\\u0000b\"",
		  "'database.event.sslkey': string contains a NUL byte" },
		{ "\"name\": \"e\", \"dbname\": \"x\"",
		  "/etc/m.conf: 'database.event.dbname': write the database name as "
		  "'database.event.name'" },
		{ "\"name\": \"e\", \"user\": \"x\"", "'database.event.user': write the role as" },
		{ "\"name\": \"e\", \"client_encoding\": \"LATIN1\"",
		  "'database.event.client_encoding': mailgen always talks UTF8" },
		{ "\"name\": \"e\", \"port\": \"54x\"",
		  "'database.event.port': expected an integer 1..65535" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[1024];
		struct mg_config cfg;
		struct mg_err err = { 0 };

		(void)snprintf(text, sizeof(text), DB_BASE "%s}}}", cases[i].keys);
		print_message("case %zu: %s\n", i, cases[i].keys);
		assert_int_equal(parse1(&cfg, text, &err), MG_ECONFIG);
		if (strstr(err.msg, cases[i].want) == NULL)
			fail_msg("got \"%s\", want \"%s\"", err.msg, cases[i].want);
	}
}

static void test_always_sign_needs_key(void **state)
{
	static const char text[] =
		"{\"openpgp\": {\"gnupg_home\": \"/g\", \"always_sign\": true, \"signing_key\": \"\"},"
		" \"database\": {\"event\": {\"name\": \"e\"}}, \"template_dir\": \"/t\","
		" \"sender\": \"a@b.example\"}";
	struct mg_config cfg;
	struct mg_err err = { 0 };

	assert_int_equal(parse1(&cfg, text, &err), MG_ECONFIG);
	assert_non_null(strstr(err.msg, "'openpgp.signing_key': must name a key"));
}

/* Every allocation failing in turn gives MG_ENOMEM or success, never a crash or leak. */
static void test_torture(void **state)
{
	for (long n = 0; n < 400; n++) {
		struct mg_config cfg;
		struct mg_err err = { 0 };
		int r;

		mg_alloc_fail_after(n);
		r = parse1(&cfg,
			   DB_BASE
			   "\"name\": \"e\", \"sslmode\": \"require\", \"connect_timeout\": 5}}}",
			   &err);
		mg_alloc_fail_after(-1);
		if (r == MG_OK) {
			mg_config_release(&cfg);
			return;
		}
		assert_int_equal(r, MG_ENOMEM);
	}
	fail_msg("never succeeded");
}

/* GOOD with its smtp object replaced by smtp (a JSON object's inside). */
static int parse_smtp(struct mg_config *cfg, const char *smtp, struct mg_err *err)
{
	static char text[4096];
	const char *at = strstr(GOOD, "\"smtp\": {");
	const char *end = strchr(at, '}');

	(void)snprintf(text, sizeof(text), "%.*s\"smtp\": {\"host\": \"mx\", %s%s",
		       (int)(at - GOOD), GOOD, smtp, end);
	return parse1(cfg, text, err);
}

static void test_smtp_tls_defaults(void **state)
{
	struct mg_config cfg;
	struct mg_err err = { 0 };

	assert_int_equal(parse1(&cfg, GOOD, &err), MG_OK);
	assert_string_equal(cfg.smtp_tls_name, "off");
	assert_int_equal(cfg.smtp_tls, MG_SMTP_TLS_OFF);
	assert_true(cfg.smtp_tls_verify); /* on unless switched off */
	assert_null(cfg.smtp_tls_ca_file);
	assert_null(cfg.smtp_tls_ca_dir);
	assert_null(cfg.smtp_tls_server_name);
	assert_null(cfg.smtp_username);
	assert_false(cfg.smtp_auth_allow_plaintext);
	mg_config_release(&cfg);
}

static const struct {
	const char *smtp;
	int want_rc;
	const char *want; /* substring of the error, or of the one warning; NULL: none */
	int want_tls;
} smtp_cases[] = {
	{ "\"tls\": \"starttls\"", MG_OK, NULL, MG_SMTP_TLS_STARTTLS },
	{ "\"tls\": \"starttls-required\", \"tls_ca_file\": \"/ca.pem\"", MG_OK, NULL,
	  MG_SMTP_TLS_STARTTLS_REQUIRED },
	{ "\"tls\": \"smtps\", \"port\": 465", MG_OK, NULL, MG_SMTP_TLS_SMTPS },
	{ "\"tls\": \"STARTTLS\"", MG_ECONFIG,
	  "/etc/m.conf: 'smtp.tls': expected \"off\", \"starttls\", \"starttls-required\" or "
	  "\"smtps\", got \"STARTTLS\"",
	  0 },
	{ "\"tls\": true", MG_ECONFIG, "'smtp.tls': expected a string, got a boolean", 0 },
	{ "\"tls\": \"smtps\", \"tls_verify\": false", MG_OK,
	  "/etc/m.conf: 'smtp.tls_verify' is false: the SMTP server's certificate and name are "
	  "NOT checked",
	  MG_SMTP_TLS_SMTPS },
	{ "\"tls_verify\": \"no\"", MG_ECONFIG, "'smtp.tls_verify': expected true or false", 0 },
	{ "\"tls\": \"starttls\", \"username\": \"u\", \"password_file\": \"/pw\"", MG_OK, NULL,
	  MG_SMTP_TLS_STARTTLS },
	{ "\"tls\": \"smtps\", \"username\": \"u\", \"password_credential\": \"smtp\"", MG_OK, NULL,
	  MG_SMTP_TLS_SMTPS },
	{ "\"tls\": \"smtps\", \"username\": \"u\"", MG_ECONFIG,
	  "/etc/m.conf: 'smtp.username': needs 'smtp.password_file' or 'smtp.password_credential'",
	  0 },
	{ "\"tls\": \"smtps\", \"password_file\": \"/pw\"", MG_ECONFIG,
	  "/etc/m.conf: 'smtp.password_file': set, but 'smtp.username' is not", 0 },
	{ "\"tls\": \"smtps\", \"username\": \"u\", \"password_file\": \"/pw\", "
	  "\"password_credential\": \"c\"",
	  MG_ECONFIG, "give either it or 'smtp.password_file', not both", 0 },
	{ "\"tls\": \"smtps\", \"username\": \"u\", \"password_credential\": \"../x\"", MG_ECONFIG,
	  "'smtp.password_credential': expected a credential name", 0 },
	{ "\"tls\": \"smtps\", \"username\": \"u\", \"password_credential\": \"..\"", MG_ECONFIG,
	  "'smtp.password_credential': expected a credential name", 0 },
	{ "\"username\": \"u\", \"password_file\": \"/pw\"", MG_ECONFIG,
	  "/etc/m.conf: 'smtp.username': AUTH would send the password unencrypted", 0 },
	{ "\"username\": \"u\", \"password_file\": \"/pw\", \"auth_allow_plaintext\": true", MG_OK,
	  "the SMTP password crosses the network unencrypted", MG_SMTP_TLS_OFF },
	{ "\"username\": \"\", \"password_file\": \"/pw\"", MG_ECONFIG,
	  "'smtp.username': expected a non-empty string", 0 },
	{ "\"password\": \"secret\"", MG_OK, "unknown key 'smtp.password'", MG_SMTP_TLS_OFF },
};

static void test_smtp_tls_auth(void **state)
{
	for (size_t i = 0; i < sizeof(smtp_cases) / sizeof(smtp_cases[0]); i++) {
		struct mg_config cfg;
		struct mg_err err = { 0 };
		int rc = parse_smtp(&cfg, smtp_cases[i].smtp, &err);

		print_message("case %zu: %s\n", i, smtp_cases[i].smtp);
		assert_int_equal(rc, smtp_cases[i].want_rc);
		if (rc < 0) {
			assert_non_null(strstr(err.msg, smtp_cases[i].want));
			continue;
		}
		assert_int_equal(cfg.smtp_tls, smtp_cases[i].want_tls);
		if (smtp_cases[i].want == NULL) {
			assert_int_equal(cfg.n_warnings, 0);
		} else {
			assert_int_equal(cfg.n_warnings, 1);
			assert_non_null(strstr(cfg.warnings[0], smtp_cases[i].want));
		}
		if (cfg.smtp_username != NULL)
			assert_string_equal(cfg.smtp_password_origin, "/etc/m.conf");
		mg_config_release(&cfg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_smtp_tls_defaults),
		cmocka_unit_test(test_smtp_tls_auth),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_max_events_per_mail),
		cmocka_unit_test(test_unknown_keys_warn),
		cmocka_unit_test(test_unknown_long_keys),
		cmocka_unit_test(test_db_params),
		cmocka_unit_test(test_db_service),
		cmocka_unit_test(test_db_params_bad),
		cmocka_unit_test(test_always_sign_needs_key),
		cmocka_unit_test(test_torture),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
