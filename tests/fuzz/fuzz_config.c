/* tests/fuzz/fuzz_config.c - fuzz configuration parsing and the merging of two files */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "config.h"
#include "fuzz.h"
#include "mg-err.h"

static bool str_ok(const char *s, bool may_be_empty)
{
	return s != NULL && (may_be_empty || s[0] != '\0');
}

/* What a successful parse promises (the table of keys in lib/config.c). */
static void check_config(const struct mg_config *cfg)
{
	/* required, or with a default */
	FUZZ_CHECK(str_ok(cfg->gnupg_home, false));
	FUZZ_CHECK(str_ok(cfg->signing_key, true));
	FUZZ_CHECK(str_ok(cfg->db_name, false));
	FUZZ_CHECK(str_ok(cfg->template_dir, false));
	FUZZ_CHECK(str_ok(cfg->sender, false));
	FUZZ_CHECK(str_ok(cfg->smtp_host, false));
	FUZZ_CHECK(str_ok(cfg->control_socket, false));
	FUZZ_CHECK(str_ok(cfg->notify_channel, false));
	FUZZ_CHECK(strlen(cfg->notify_channel) <= 63);
	FUZZ_CHECK(strspn(cfg->notify_channel, "abcdefghijklmnopqrstuvwxyz0123456789_") ==
		   strlen(cfg->notify_channel));
	/* optional strings: NULL or non-empty, except the two that may be "" */
	FUZZ_CHECK(cfg->db_user == NULL || cfg->db_user[0] != '\0');
	FUZZ_CHECK(cfg->db_host == NULL || cfg->db_host[0] != '\0');
	if (cfg->db_port != NULL) {
		long port = strtol(cfg->db_port, NULL, 10);

		FUZZ_CHECK(port >= 1 && port <= 65535);
	}
	FUZZ_CHECK(!cfg->always_sign || cfg->signing_key[0] != '\0');
	FUZZ_CHECK(cfg->log_level >= LOG_EMERG && cfg->log_level <= LOG_DEBUG);
	FUZZ_CHECK(cfg->smtp_port >= 1 && cfg->smtp_port <= 65535);
	FUZZ_CHECK(cfg->mails_per_session >= 1 && cfg->mails_per_session <= 64);
	FUZZ_CHECK(cfg->smtp_timeout_sec >= 1 && cfg->smtp_timeout_sec <= 3600);
	FUZZ_CHECK(cfg->max_mail_bytes >= 65536 && cfg->max_mail_bytes <= 1073741824);
	FUZZ_CHECK(cfg->recipient_max_mails >= 0 && cfg->recipient_max_mails <= 1000000);
	FUZZ_CHECK(cfg->recipient_window_sec >= 1 && cfg->recipient_window_sec <= 31 * 86400);
	FUZZ_CHECK(cfg->debounce_quiet_ms >= 0 && cfg->debounce_quiet_ms <= 3600000);
	FUZZ_CHECK(cfg->debounce_max_ms >= 0 && cfg->debounce_max_ms <= 3600000);
	FUZZ_CHECK(cfg->rescan_interval_sec >= 1 && cfg->rescan_interval_sec <= 86400);
	FUZZ_CHECK(cfg->workers >= 0 && cfg->workers <= 64);
	FUZZ_CHECK(cfg->retry_min_sec >= 1 && cfg->retry_max_sec <= 86400);
	FUZZ_CHECK(cfg->retry_min_sec <= cfg->retry_max_sec);
	FUZZ_CHECK(cfg->db_ping_sec >= 1 && cfg->db_ping_sec <= 3600);
	FUZZ_CHECK(cfg->shutdown_timeout_sec >= 1 && cfg->shutdown_timeout_sec <= 3600);
	FUZZ_CHECK(cfg->n_warnings == 0 || cfg->warnings != NULL);
	for (size_t i = 0; i < cfg->n_warnings; i++)
		FUZZ_CHECK(cfg->warnings[i] != NULL &&
			   strstr(cfg->warnings[i], "unknown key") != NULL);
}

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *u = p;

	for (size_t i = 0; i < n; i++)
		if (u[i] != 0)
			return false;
	return true;
}

static void parse(const struct mg_config_src *srcs, size_t n)
{
	struct mg_config cfg;
	struct mg_err err = { 0 };
	int r;

	fuzz_dirty_stack();
	r = mg_config_parse(&cfg, srcs, n, &err);
	/* no allocation fails here: anything but ECONFIG is a bug */
	FUZZ_CHECK(r == MG_OK || r == MG_ECONFIG);
	if (r == MG_OK)
		check_config(&cfg);
	else
		FUZZ_CHECK(err.msg[0] != '\0' && all_zero(&cfg, sizeof(cfg)));
	mg_config_release(&cfg);
	FUZZ_CHECK(all_zero(&cfg, sizeof(cfg)));
	mg_config_release(NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct mg_config_src srcs[2] = {
		{ .path = "/etc/intelmq/intelmq-mailgen.conf", .text = text, .len = size },
		{ .path = "/home/u/.intelmq/intelmq-mailgen.conf" },
	};
	size_t cut;

	/* one file */
	parse(srcs, 1);

	/* two files, system then user, split at the first NUL or 0xff */
	for (cut = 0; cut < size; cut++)
		if (data[cut] == 0x00 || data[cut] == 0xff)
			break;
	if (cut < size) {
		srcs[0].len = cut;
		srcs[1].text = text + cut + 1;
		srcs[1].len = size - cut - 1;
		parse(srcs, 2);
	}
	return 0;
}
