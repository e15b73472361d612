/* tests/integration/plugins/bad_abi_plugin.c - a plugin built for another ABI version (refused) */
#include <mailgen-plugin.h>

static enum mg_plugin_verdict never(void *state, const struct mg_plugin_group *g,
				    struct mg_plugin_answer *a)
{
	return MG_PLUGIN_NOT_MINE;
}

const struct mg_plugin mailgen_plugin = {
	.abi_version = MG_PLUGIN_ABI_VERSION + 1,
	.name = "bad-abi",
	.decide = never,
};
