/* lib/config.h - intelmq-mailgen.conf: parsing, merging and validation */
#ifndef MG_CONFIG_H
#define MG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "mg-err.h"

struct mg_rules;
struct mg_plugins;

#define MG_CONFIG_SYSTEM_PATH "/etc/intelmq/intelmq-mailgen.conf"
#define MG_CONFIG_USER_PATH   ".intelmq/intelmq-mailgen.conf" /* below $HOME */

/*
 * A further libpq connection keyword of database.event (sslmode, service,
 * passfile, ...), passed to libpq as it is.  The value may be secret
 * (sslpassword): never log it.
 */
struct mg_db_param {
	char *keyword;
	char *value; /* an integer in the file is stored as its decimal text */
	char *file;  /* the file that set it, for messages */
};

/*
 * The settings.  Keys of the original keep their meaning (docs/config.md);
 * our own settings live in new top-level objects ("delivery").  Strings
 * are owned by the struct; NULL means "not set" where the key is optional.
 */
struct mg_config {
	/* database.event.* and database.additional_directive_where */
	char *db_name; /* required unless database.event.service is set */
	char *db_user;
	char *db_password; /* never logged */
	char *db_host;
	char *db_port; /* libpq takes the port as text; checked 1..65535 */
	char *additional_directive_where;
	/*
	 * Every other key of database.event: a libpq connection keyword, in
	 * the order of the file.  mg_config_parse() only checks the form;
	 * mg_config_load() checks the names against libpq (PQconndefaults).
	 */
	struct mg_db_param *db_params;
	size_t n_db_params;
	/* openpgp.* (all three required, as in the original) */
	char *gnupg_home;
	bool always_sign;
	char *signing_key;
	/*
	 * delivery.sign_via_agent: build the signature packet here and ask
	 * gpg-agent only for the private-key operation, instead of starting
	 * gpg per mail (lib/sign.c; docs/signing.md).
	 */
	bool sign_via_agent;
	/* top level */
	char *template_dir;
	char *sender;
	/*
	 * Format rules (docs/format-rules.md): the directory, from
	 * format_rules_dir or, as an alias, the original's script_directory;
	 * "FILE: 'KEY'" for messages; the parsed set (loaded by
	 * mg_config_load(), NULL: the built-in fallback rule).
	 */
	char *format_rules_dir;
	char *script_directory;
	const char *rules_dir; /* one of the two above, or NULL */
	char *rules_dir_origin;
	struct mg_rules *rules;
	/*
	 * Format plugins (docs/format-rules.md, "Plugins"): the directory, and
	 * the plugins loaded from it.  mg_config_load() does not load them:
	 * the program does, once at start (mg_plugins_load, lib/plugin.h), and
	 * hands the same set to every later configuration.  Borrowed:
	 * mg_config_release() leaves them alone.  NULL: none.
	 */
	char *format_plugin_dir;
	struct mg_plugins *plugins;
	int log_level; /* syslog priority, from logging_level */
	/* smtp.* */
	char *smtp_host;
	int smtp_port;
	/* smtp.* transport security and AUTH (ours; docs/smtp.md) */
	char *smtp_tls_name;		/* "off", "starttls", "starttls-required", "smtps" */
	int smtp_tls;			/* enum mg_smtp_tls, from smtp_tls_name */
	bool smtp_tls_verify;		/* check certificate and host name (default true) */
	char *smtp_tls_ca_file;		/* NULL: the system trust store */
	char *smtp_tls_ca_dir;		/* NULL: the system trust store */
	char *smtp_tls_server_name;	/* name to verify; NULL: smtp.host */
	char *smtp_username;		/* NULL: no AUTH */
	char *smtp_password_file;	/* the password's only line */
	char *smtp_password_credential; /* a file name in $CREDENTIALS_DIRECTORY */
	bool smtp_auth_allow_plaintext; /* AUTH without TLS */
	char *smtp_password_origin;	/* the config file that named the password */
	char *smtp_tls_origin;		/* the config file that named the CAs */
	/* delivery.* (ours) */
	int mails_per_session;	   /* mails handed to one SMTP connection */
	int smtp_timeout_sec;	   /* per SMTP command / data block */
	long max_mail_bytes;	   /* cap on one rendered mail */
	int max_events_per_mail;   /* a larger group is split into several mails */
	bool csv_spreadsheet_safe; /* neutralise cells a spreadsheet would run */
	int recipient_max_mails;   /* per recipient and window; 0: no limit */
	int recipient_window_sec;
	int group_retry_min_sec; /* a group's first retry after a temporary failure ... */
	int group_retry_max_sec; /* ... doubling up to this */
	int group_give_up_sec;	 /* temporary failures for this long: failed; 0: never */
	/* daemon.* (ours, mailgend only) */
	char *notify_channel;	  /* LISTEN channel, as the directives trigger uses */
	int debounce_quiet_ms;	  /* scan this long after the last notification ... */
	int debounce_max_ms;	  /* ... but at most this long after the first */
	int rescan_interval_sec;  /* safety rescan */
	int workers;		  /* worker threads; 0: two per CPU */
	char *control_socket;	  /* mailgenctl's unix socket */
	int retry_min_sec;	  /* back-off after an SMTP or database failure ... */
	int retry_max_sec;	  /* ... doubling up to this */
	int db_ping_sec;	  /* liveness check of the LISTEN connection */
	int shutdown_timeout_sec; /* how long SIGTERM waits for mails in flight */

	/* Warnings found while parsing (unknown keys), for the caller to log. */
	char **warnings;
	size_t n_warnings;
};

/* smtp.tls */
enum mg_smtp_tls {
	MG_SMTP_TLS_OFF = 0,	       /* plain SMTP, as the original */
	MG_SMTP_TLS_STARTTLS,	       /* STARTTLS when the server offers it */
	MG_SMTP_TLS_STARTTLS_REQUIRED, /* STARTTLS or no mail */
	MG_SMTP_TLS_SMTPS,	       /* TLS from the first byte (RFC 8314), port 465 */
};

/* One configuration file's text, with the path used in messages. */
struct mg_config_src {
	const char *path;
	const char *text;
	size_t len;
};

/*
 * Parse config files given in increasing precedence (system file first, user
 * file last).  As in the original, a later file overrides an earlier one per
 * top-level key, except that two objects under the same top-level key are
 * merged one level deep (the user's "smtp": {"port": 2525} keeps the
 * system's smtp.host).  Then every key is checked against the table of
 * known keys; errors name the file, the key path and what was expected:
 *   "/etc/x.conf: 'smtp.port': expected an integer 1..65535, got "x""
 * and JSON syntax errors name file, line and column.  Unknown keys only add
 * warnings (the file is shared with other tools).
 *
 * On success *cfg holds the settings (release with mg_config_release).  On
 * failure returns MG_ECONFIG (or MG_ENOMEM) and *cfg is left released.
 * Pure.
 */
int mg_config_parse(struct mg_config *cfg, const struct mg_config_src *srcs, size_t n_srcs,
		    struct mg_err *err);

/* Free everything the struct owns and zero it.  NULL-safe. */
void mg_config_release(struct mg_config *cfg);

/*
 * Read the files and parse them: path_override (from -c) alone when given,
 * else /etc/intelmq/intelmq-mailgen.conf and $HOME/.intelmq/... (each only
 * if it exists; none at all is an error).  Then check the names of the
 * further database.event keys against the keywords the linked libpq knows
 * (PQconndefaults), so that a typo such as "sslmod" stops the start with
 * file and key instead of failing at the first connection.  Does I/O
 * (lib/config-load.c).
 */
int mg_config_load(struct mg_config *cfg, const char *path_override, struct mg_err *err);

/* The value of a database.event keyword other than the original five, or NULL.  Borrowed. */
const char *mg_config_db_param(const struct mg_config *cfg, const char *keyword);

/* syslog priority for a logging_level name ("DEBUG", "INFO", ...), or -1. */
int mg_config_level(const char *name);

/*
 * Whether format rules or plugins decide about groups; else the built-in
 * interval rule does (an empty plugin set is never put into cfg->plugins,
 * see mg_plugins_active()).  Pure.
 */
bool mg_config_has_formats(const struct mg_config *cfg);

#endif /* MG_CONFIG_H */
