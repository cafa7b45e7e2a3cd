#include "llm/curl-load.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The libcurl ABI (soname 4) is the same in Debian's GnuTLS and OpenSSL builds; the first found wins. */
static const char *const sonames[] = {"libcurl-gnutls.so.4", "libcurl.so.4"};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct lms_curl_api api;
static const struct lms_curl_api *loaded;
static void (*global_cleanup)(void);
static char failure[512];
static const struct lms_curl_api *test_api;

static bool
resolve(void *lib, const char *soname, const char *name, void *slot)
{
	void *sym = dlsym(lib, name);
	if (sym == NULL) {
		snprintf(failure, sizeof(failure), "%s has no %s (libcurl 7.73 or later is needed)", soname, name);
		return false;
	}
	memcpy(slot, &sym, sizeof(sym)); /* a data pointer into a function pointer, as dlsym(3) documents */
	return true;
}

static void
load(void)
{
	void *lib = NULL;
	const char *soname = NULL;
	char first[256] = "";
	for (size_t i = 0; i < sizeof(sonames) / sizeof(sonames[0]) && lib == NULL; i++) {
		lib = dlopen(soname = sonames[i], RTLD_NOW | RTLD_LOCAL);
		if (lib == NULL && i == 0)
			snprintf(first, sizeof(first), "%s", dlerror());
	}
	if (lib == NULL) {
		snprintf(failure, sizeof(failure),
			 "the LLM gateway cannot load libcurl (%s); install it (Debian and Ubuntu: apt-get install "
			 "libcurl3-gnutls)",
			 first);
		return;
	}
	CURLcode (*global_init)(long) = NULL;
	struct {
		const char *name;
		void *slot;
	} table[] = {
	    {"curl_global_init", &global_init},
	    {"curl_global_cleanup", &global_cleanup},
	    {"curl_easy_init", &api.easy_init},
	    {"curl_easy_setopt", &api.easy_setopt},
	    {"curl_easy_getinfo", &api.easy_getinfo},
	    {"curl_easy_strerror", &api.easy_strerror},
	    {"curl_easy_cleanup", &api.easy_cleanup},
	    {"curl_multi_init", &api.multi_init},
	    {"curl_multi_add_handle", &api.multi_add_handle},
	    {"curl_multi_remove_handle", &api.multi_remove_handle},
	    {"curl_multi_perform", &api.multi_perform},
	    {"curl_multi_info_read", &api.multi_info_read},
	    {"curl_multi_poll", &api.multi_poll},
	    {"curl_multi_cleanup", &api.multi_cleanup},
	    {"curl_slist_append", &api.slist_append},
	    {"curl_slist_free_all", &api.slist_free_all},
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (!resolve(lib, soname, table[i].name, table[i].slot))
			goto fail;
	/* Thread-safe since libcurl 7.84, and the once-guard keeps every other caller out meanwhile. */
	if (global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(failure, sizeof(failure), "curl_global_init of %s failed", soname);
		goto fail;
	}
	loaded = &api;
	return;
fail:
	global_cleanup = NULL;
	dlclose(lib);
}

void
lms_curl_set_api_for_tests(const struct lms_curl_api *fake)
{
	test_api = fake;
}

const struct lms_curl_api *
lms_curl(struct lms_error **err)
{
	if (test_api != NULL)
		return test_api;
	pthread_once(&once, load);
	if (loaded == NULL)
		lms_error_set(err, LMS_ERR_INTERNAL, 0, "%s", failure);
	return loaded;
}

void
lms_curl_cleanup(void)
{
	if (loaded != NULL && global_cleanup != NULL)
		global_cleanup();
}
