/* The route table (server/router.c): exact routes, "/{path}" prefix routes, and 404 vs 405 with Allow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "server/server.h"

static const struct lms_route *
find(const char *method, const char *path, const char *want_allow)
{
	char allow[64];
	const struct lms_route *r = lms_router_find(method, path, allow, sizeof(allow));
	assert_string_equal(allow, want_allow);
	return r;
}

static void
exact_routes(void **state)
{
	(void)state;
	const struct lms_route *r = find("POST", "/v1/exec", "POST");
	assert_non_null(r);
	assert_ptr_equal(r->handler, lms_route_exec);
	assert_true(r->auth && r->json_body && !r->form_ok);
	/* The seed's endpoints, with and without the slash; curl -d's form type accepted. */
	for (const char *const *p = (const char *const[]){"/run-bash/", "/run-bash", NULL}; *p; p++) {
		r = find("POST", *p, "POST");
		assert_non_null(r);
		assert_ptr_equal(r->handler, lms_route_run_bash);
		assert_true(r->form_ok);
	}
	r = find("GET", "/healthz", "GET");
	assert_non_null(r);
	assert_false(r->auth);
	assert_non_null(find("GET", "/v1/models", "GET"));
	assert_true(find("GET", "/metrics", "GET")->auth);
	assert_false(find("GET", "/openapi.json", "GET")->auth);
	assert_false(find("GET", "/docs", "GET")->auth);
	assert_ptr_equal(find("POST", "/v1/chat/completions", "POST")->handler, lms_route_chat_completions);
}

static void
unknown_paths_are_404_without_allow(void **state)
{
	(void)state;
	const char *paths[] = {"/nope", "/", "", "/v1/exec/", "/V1/EXEC", "/v1/exec?x=1", "/healthz/x", "/docs.html"};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		assert_null(find("GET", paths[i], ""));
}

static void
wrong_method_gives_the_allow_list(void **state)
{
	(void)state;
	assert_null(find("GET", "/v1/exec", "POST"));
	assert_null(find("DELETE", "/healthz", "GET"));
	assert_null(find("post", "/v1/exec", "POST")); /* methods are case-sensitive (RFC 9110) */
	assert_null(find("PUT", "/api/tags", "GET, POST, DELETE"));
}

static void
prefix_routes(void **state)
{
	(void)state;
	const char *served[] = {"/api/tags", "/api/chat", "/api/show/x", "/api/a.b", "/api/x/"};
	for (size_t i = 0; i < sizeof(served) / sizeof(served[0]); i++) {
		const struct lms_route *r = find("GET", served[i], "GET, POST, DELETE");
		assert_non_null(r);
		assert_string_equal(r->path, "/api/{path}");
		assert_ptr_equal(r->handler, lms_route_ollama_api);
		assert_string_equal(find("POST", served[i], "GET, POST, DELETE")->method, "POST");
		assert_string_equal(find("DELETE", served[i], "GET, POST, DELETE")->method, "DELETE");
	}
	/* The prefix needs a non-empty rest, and ".." anywhere is refused (never relayed as a path). */
	const char *refused[] = {"/api/",   "/api",	      "/apitags",  "/api/../v1/exec",
				 "/api/..", "/api/a/../../x", "/api/x..y", "/v1/api/tags"};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		assert_null(find("GET", refused[i], ""));
}

/* The port relay: any rest, or none, after the port; the port and the id one segment each. */
static void
port_routes(void **state)
{
	(void)state;
	const char *all = "GET, HEAD, POST, PUT, PATCH, DELETE";
	const char *served[] = {"/v1/sandboxes/sbx_1/ports/8080", "/v1/sandboxes/sbx_1/ports/8080/",
				"/v1/sandboxes/sbx_1/ports/8080/a/b.js", "/v1/sandboxes/sbx_1/ports/x/../..",
				"/v1/sandboxes/sbx_1/ports/1//"};
	for (size_t i = 0; i < sizeof(served) / sizeof(served[0]); i++) {
		const struct lms_route *r = find("PATCH", served[i], all);
		assert_non_null(r);
		assert_ptr_equal(r->handler, lms_route_ports);
		assert_ptr_equal(r->sink, &lms_ports_sink);
		assert_string_equal(find("HEAD", served[i], all)->method, "HEAD");
	}
	assert_null(find("OPTIONS", "/v1/sandboxes/sbx_1/ports/8080/", all));
	const char *refused[] = {"/v1/sandboxes/sbx_1/ports", "/v1/sandboxes/sbx_1/ports/", "/v1/sandboxes//ports/80",
				 "/v1/sandboxes/sbx_1/ports8080"};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		assert_null(find("GET", refused[i], ""));
}

static void
allow_never_overflows(void **state)
{
	(void)state;
	char allow[8];
	assert_null(lms_router_find("PUT", "/api/tags", allow, sizeof(allow)));
	assert_string_equal(allow, "GET, PO");
}

static void
the_table_is_consistent(void **state)
{
	(void)state;
	for (size_t i = 0; i < lms_n_routes; i++) {
		const struct lms_route *r = &lms_routes[i];
		assert_non_null(r->handler);
		assert_non_null(r->summary);
		assert_true(r->path[0] == '/');
		/* Each route is found by its own method and path (a prefix route by an example). */
		char path[128];
		size_t n = strlen(r->path);
		if (n > 7 && strcmp(r->path + n - 7, "/{path}") == 0)
			snprintf(path, sizeof(path), "%.*sexample", (int)(n - 6), r->path);
		else
			snprintf(path, sizeof(path), "%s", r->path);
		char allow[64];
		assert_ptr_equal(lms_router_find(r->method, path, allow, sizeof(allow)), r);
		for (size_t k = 0; k < i; k++)
			assert_false(strcmp(lms_routes[k].method, r->method) == 0 &&
				     strcmp(lms_routes[k].path, r->path) == 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(exact_routes),
	    cmocka_unit_test(unknown_paths_are_404_without_allow),
	    cmocka_unit_test(wrong_method_gives_the_allow_list),
	    cmocka_unit_test(prefix_routes),
	    cmocka_unit_test(port_routes),
	    cmocka_unit_test(allow_never_overflows),
	    cmocka_unit_test(the_table_is_consistent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
