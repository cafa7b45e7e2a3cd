/* lms_relay_start against a fake libcurl table (lms_curl_set_api_for_tests): a refused option is named in
 * the error, and the relay is freed only after its message was made (ASan in `make check` would see a
 * use after free). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "llm/backend.h"
#include "llm/curl-load.h"

static CURLoption refused; /* the option the fake easy_setopt fails on */
static int handles;	   /* easy and multi handles alive */
static int dummy_easy, dummy_multi;
static struct curl_slist dummy_slist;

static CURL *
fake_easy_init(void)
{
	handles++;
	return &dummy_easy;
}

static CURLcode
fake_easy_setopt(CURL *easy, CURLoption option, ...)
{
	assert_ptr_equal(easy, &dummy_easy);
	return option == refused ? CURLE_UNKNOWN_OPTION : CURLE_OK;
}

static CURLcode
fake_easy_getinfo(CURL *easy, CURLINFO info, ...)
{
	(void)easy;
	(void)info;
	return CURLE_OK;
}

static const char *
fake_easy_strerror(CURLcode code)
{
	return code == CURLE_UNKNOWN_OPTION ? "fake: option refused" : "fake: other";
}

static void
fake_easy_cleanup(CURL *easy)
{
	assert_ptr_equal(easy, &dummy_easy);
	handles--;
}

static CURLM *
fake_multi_init(void)
{
	handles++;
	return &dummy_multi;
}

static CURLMcode
fake_multi_handle(CURLM *multi, CURL *easy)
{
	(void)multi;
	(void)easy;
	return CURLM_OK;
}

static CURLMcode
fake_multi_cleanup(CURLM *multi)
{
	assert_ptr_equal(multi, &dummy_multi);
	handles--;
	return CURLM_OK;
}

static struct curl_slist *
fake_slist_append(struct curl_slist *list, const char *s)
{
	(void)list;
	(void)s;
	return &dummy_slist;
}

static void
fake_slist_free_all(struct curl_slist *list)
{
	(void)list;
}

static const struct lms_curl_api fake = {
    .easy_init = fake_easy_init,
    .easy_setopt = fake_easy_setopt,
    .easy_getinfo = fake_easy_getinfo,
    .easy_strerror = fake_easy_strerror,
    .easy_cleanup = fake_easy_cleanup,
    .multi_init = fake_multi_init,
    .multi_add_handle = fake_multi_handle,
    .multi_remove_handle = fake_multi_handle,
    .multi_cleanup = fake_multi_cleanup,
    .slist_append = fake_slist_append,
    .slist_free_all = fake_slist_free_all,
};

static struct lms_backends bs = {.connect_timeout_ms = 2000, .timeout_ms = 1000, .first_byte_timeout_ms = 1000};
static struct lms_backend ollama = {.name = "ollama", .kind = LMS_BACKEND_OLLAMA, .url = "http://127.0.0.1:1"};

static int
setup(void **state)
{
	(void)state;
	lms_curl_set_api_for_tests(&fake);
	handles = 0;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	lms_curl_set_api_for_tests(NULL);
	return 0;
}

static void
start_fails_with(CURLoption option, const char *message)
{
	refused = option;
	struct lms_relay *r = NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	assert_int_equal(lms_relay_start(&bs, &ollama, "POST", "/v1/chat/completions", "{}", 2, -1, &r, &err), -1);
	assert_null(r);
	assert_non_null(err);
	assert_string_equal(err->message, message);
	assert_int_equal(err->kind, LMS_ERR_INTERNAL);
	assert_int_equal(handles, 0); /* both handles were cleaned up */
}

static void
refused_url_is_named(void **state)
{
	(void)state;
	start_fails_with(CURLOPT_URL, "backend ollama: set CURLOPT_URL: fake: option refused");
}

static void
refused_later_option_is_named(void **state)
{
	(void)state;
	start_fails_with(CURLOPT_PROTOCOLS_STR, "backend ollama: set CURLOPT_PROTOCOLS_STR: fake: option refused");
	start_fails_with(CURLOPT_POSTFIELDSIZE_LARGE,
			 "backend ollama: set CURLOPT_POSTFIELDSIZE_LARGE: fake: option refused");
}

static void
accepted_options_start_a_relay(void **state)
{
	(void)state;
	refused = (CURLoption)-1;
	struct lms_relay *r = NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	assert_int_equal(lms_relay_start(&bs, &ollama, "GET", "/v1/models", NULL, 0, -1, &r, &err), 0);
	assert_non_null(r);
	assert_null(err);
	assert_int_equal(handles, 2);
	lms_relay_free(r);
	assert_int_equal(handles, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(refused_url_is_named, setup, teardown),
	    cmocka_unit_test_setup_teardown(refused_later_option_is_named, setup, teardown),
	    cmocka_unit_test_setup_teardown(accepted_options_start_a_relay, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
