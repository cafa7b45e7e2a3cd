/* lms_backends_resolve over model lists filled in by hand: no network (libcurl is a fake that can start
 * nothing, and the lists are fresh for the whole test). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "llm/backend.h"
#include "llm/curl-load.h"

static int transfers; /* transfers the fake libcurl was asked to start */

static CURL *
no_easy(void)
{
	transfers++;
	return NULL;
}

static CURLM *
no_multi(void)
{
	return NULL;
}

static void
no_slist_free(struct curl_slist *list)
{
	(void)list;
}

static const struct lms_curl_api no_network = {
    .easy_init = no_easy, .multi_init = no_multi, .slist_free_all = no_slist_free};

static char **
strv(const char *const *names)
{
	size_t n = 0;
	while (names[n])
		n++;
	char **v = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		v[i] = xstrdup(names[i]);
	return v;
}

/* ollama, llamacpp, vllm, lab2, with model lists that overlap as test_gateway.py's `routed` fixture's. */
static int
setup(void **state)
{
	static struct lms_backends bs;
	bs = (struct lms_backends){.cache_ms = UINT64_MAX / 2};
	lms_curl_set_api_for_tests(&no_network);
	transfers = 0;
	_cleanup_error_ struct lms_error *err = NULL;
	assert_int_equal(lms_backends_init(&bs, "http://127.0.0.1:1", "http://127.0.0.1:2",
					   "vllm=http://127.0.0.1:3,lab2=http://127.0.0.1:4/", &err),
			 0);
	const char *const *lists[] = {
	    (const char *const[]){"llama3.2:latest", "shared:1b", "hf.co/org/m:q4", "hf.co/org/n:latest", NULL},
	    (const char *const[]){"tiny.gguf", "shared:1b", "dup.gguf", "phi3", NULL},
	    (const char *const[]){"dup.gguf", "x.gguf", "only-vllm", "mistral:latest", NULL},
	    (const char *const[]){"x.gguf", "only-lab2", NULL},
	};
	assert_int_equal(bs.n, 4);
	for (size_t i = 0; i < bs.n; i++) {
		bs.v[i].models = strv(lists[i]);
		bs.v[i].reachable = true;
		bs.v[i].fetched_ms = lms_monotonic_ms();
	}
	*state = &bs;
	return 0;
}

static int
teardown(void **state)
{
	lms_backends_free(*state);
	lms_curl_set_api_for_tests(NULL);
	assert_int_equal(transfers, 0);
	return 0;
}

static void
resolves_to(struct lms_backends *bs, const char *model, const char *backend, const char *bare)
{
	_cleanup_free_ char *got = NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	struct lms_backend *b = lms_backends_resolve(bs, model, &got, &err);
	if (b == NULL)
		fail_msg("%s: %s", model, err->message);
	assert_string_equal(b->name, backend);
	assert_string_equal(got, bare);
	assert_null(err);
}

static void
prefixed_names_go_to_their_backend_as_named(void **state)
{
	struct lms_backends *bs = *state;
	resolves_to(bs, "ollama/llama3.2:latest", "ollama", "llama3.2:latest");
	resolves_to(bs, "llamacpp/shared:1b", "llamacpp", "shared:1b");
	resolves_to(bs, "lab2/x.gguf", "lab2", "x.gguf");
	resolves_to(bs, "ollama/hf.co/org/m:q4", "ollama", "hf.co/org/m:q4");
	/* Not in the list: the backend decides (it may have pulled the model since the list was read). */
	resolves_to(bs, "vllm/not-listed", "vllm", "not-listed");
	resolves_to(bs, "llamacpp/phi3", "llamacpp", "phi3");
}

static void
bare_names_are_looked_up_in_configured_order(void **state)
{
	struct lms_backends *bs = *state;
	resolves_to(bs, "shared:1b", "ollama", "shared:1b"); /* ollama before llamacpp */
	resolves_to(bs, "dup.gguf", "llamacpp", "dup.gguf"); /* llamacpp before the extras */
	resolves_to(bs, "x.gguf", "vllm", "x.gguf");	     /* the extras in the order given */
	resolves_to(bs, "only-lab2", "lab2", "only-lab2");
	resolves_to(bs, "hf.co/org/m:q4", "ollama", "hf.co/org/m:q4"); /* no backend is called "hf.co" */
}

static void
an_untagged_name_means_latest_on_ollama(void **state)
{
	struct lms_backends *bs = *state;
	resolves_to(bs, "llama3.2", "ollama", "llama3.2:latest");
	resolves_to(bs, "ollama/llama3.2", "ollama", "llama3.2:latest");
	resolves_to(bs, "hf.co/org/n", "ollama", "hf.co/org/n:latest"); /* the tag is after the last '/' */
	resolves_to(bs, "ollama/hf.co/org/n", "ollama", "hf.co/org/n:latest");
	/* An untagged name Ollama does not list is still sent as Ollama would read it. */
	resolves_to(bs, "ollama/qwen2.5", "ollama", "qwen2.5:latest");
	/* Only Ollama reads names so: "phi3" is llamacpp's own name, "mistral" is not vllm's "mistral:latest". */
	resolves_to(bs, "phi3", "llamacpp", "phi3");
	resolves_to(bs, "vllm/mistral", "vllm", "mistral");
}

static void
not_found(struct lms_backends *bs, const char *model)
{
	char *got = NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	assert_null(lms_backends_resolve(bs, model, &got, &err));
	assert_null(got);
	assert_non_null(err);
	assert_int_equal(err->kind, LMS_ERR_NOT_FOUND);
	assert_non_null(strstr(err->message, model));
	assert_non_null(strstr(err->message, "GET /v1/models"));
}

static void
unknown_models_are_not_found(void **state)
{
	struct lms_backends *bs = *state;
	not_found(bs, "nope.gguf");
	not_found(bs, "nobody/tiny.gguf");
	not_found(bs, "ollama");
	not_found(bs, "mistral"); /* vllm's mistral:latest: the :latest rule is Ollama's only */
	not_found(bs, "llama3.2:1b");
	not_found(bs, "");
}

static void
refused(const char *extra, const char *words)
{
	struct lms_backends bs = {0};
	_cleanup_error_ struct lms_error *err = NULL;
	assert_int_equal(lms_backends_init(&bs, "http://127.0.0.1:1", "http://127.0.0.1:2", extra, &err), -1);
	assert_int_equal(err->kind, LMS_ERR_INVALID);
	if (strstr(err->message, words) == NULL)
		fail_msg("\"%s\" does not say \"%s\"", err->message, words);
	lms_backends_free(&bs);
}

static void
bad_backend_lists_are_refused_with_a_reason(void **state)
{
	(void)state;
	refused("vllm", "expected NAME=URL");
	refused("=http://x", "expected NAME=URL");
	refused("a/b=http://x", "may not contain '/'");
	refused("ollama=http://x", "configured twice");
	refused("a=ftp://x", "not an http:// or https:// URL");
	refused("a=http://", "has no host");
	refused("a=https:////", "has no host");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(prefixed_names_go_to_their_backend_as_named, setup, teardown),
	    cmocka_unit_test_setup_teardown(bare_names_are_looked_up_in_configured_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(an_untagged_name_means_latest_on_ollama, setup, teardown),
	    cmocka_unit_test_setup_teardown(unknown_models_are_not_found, setup, teardown),
	    cmocka_unit_test(bad_backend_lists_are_refused_with_a_reason),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
