#pragma once
/*
 * libcurl, loaded on first use (dlopen) rather than linked: a daemon that only runs commands never maps
 * it, nor the TLS stack it brings (gnutls, nettle, and libcrypto through libssh2: about 5 MiB resident).
 * The gateway (relay.c) calls libcurl only through this table.
 */
#include <curl/curl.h>

#include "core/error.h"

struct lms_curl_api {
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *easy, CURLoption option, ...);
	CURLcode (*easy_getinfo)(CURL *easy, CURLINFO info, ...);
	const char *(*easy_strerror)(CURLcode code);
	void (*easy_cleanup)(CURL *easy);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_add_handle)(CURLM *multi, CURL *easy);
	CURLMcode (*multi_remove_handle)(CURLM *multi, CURL *easy);
	CURLMcode (*multi_perform)(CURLM *multi, int *running);
	CURLMsg *(*multi_info_read)(CURLM *multi, int *left);
	CURLMcode (*multi_poll)(CURLM *multi, struct curl_waitfd extra[], unsigned n_extra, int timeout_ms,
				int *numfds);
	CURLMcode (*multi_cleanup)(CURLM *multi);
	struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
	void (*slist_free_all)(struct curl_slist *list);
};

/* The table, loading libcurl and running curl_global_init the first time (once, from any thread); NULL
 * with LMS_ERR_INTERNAL when libcurl cannot be loaded, which only the gateway's routes then report. */
const struct lms_curl_api *lms_curl(struct lms_error **err);

/* For unit tests only: makes lms_curl() return `api` (a fake table; NULL: load libcurl again as usual)
 * without loading libcurl. Not thread-safe: call it before any transfer starts. */
void lms_curl_set_api_for_tests(const struct lms_curl_api *api);

/* curl_global_cleanup when libcurl was loaded; for the daemon's exit, after every transfer ended. */
void lms_curl_cleanup(void);
