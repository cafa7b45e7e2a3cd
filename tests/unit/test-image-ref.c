#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/platform.h"
#include "image/reference.h"

/* "registry|repository|reference|tag|digest|loopback|name" of a reference that parses. */
static char *
parsed(const char *text)
{
	struct lms_image_ref r;
	struct lms_error *err = NULL;
	if (lms_image_ref_parse(text, &r, &err) < 0) {
		fail_msg("%s: %s", text, err->message);
		return NULL;
	}
	char *name = lms_image_ref_default_name(&r);
	char *out = NULL;
	if (asprintf(&out, "%s|%s|%s|%s|%s|%d|%s", r.registry, r.repository, r.reference, r.tag ? r.tag : "-",
		     r.digest ? r.digest : "-", r.loopback, name) < 0)
		abort();
	free(name);
	lms_image_ref_clear(&r);
	return out;
}

static void
expect(const char *text, const char *want)
{
	char *got = parsed(text);
	assert_string_equal(got, want);
	free(got);
}

#define HEX "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void
test_docker_hub_short_names(void **state)
{
	(void)state;
	expect("ubuntu:22.04", "registry-1.docker.io|library/ubuntu|22.04|22.04|-|0|ubuntu:22.04");
	expect("ubuntu", "registry-1.docker.io|library/ubuntu|latest|-|-|0|ubuntu");
	expect("owner/tool:1.0", "registry-1.docker.io|owner/tool|1.0|1.0|-|0|tool:1.0");
	expect("docker.io/library/python:3.12", "registry-1.docker.io|library/python|3.12|3.12|-|0|python:3.12");
}

static void
test_other_registries_digests_and_loopback(void **state)
{
	(void)state;
	expect("ghcr.io/owner/name:tag", "ghcr.io|owner/name|tag|tag|-|0|name:tag");
	expect("127.0.0.1:5000/a/b@sha256:" HEX, "127.0.0.1:5000|a/b|sha256:" HEX "|-|sha256:" HEX "|1|b");
	expect("localhost/x:1", "localhost|x|1|1|-|1|x:1");
	expect("[::1]:5000/x", "[::1]:5000|x|latest|-|-|1|x");
	expect("host:5000/x:t@sha256:" HEX, "host:5000|x|sha256:" HEX "|t|sha256:" HEX "|0|x:t");
}

static void
test_bad_references(void **state)
{
	(void)state;
	static const char md5[] = "name@md5:" HEX;
	const char *bad[] = {"",  "UPPER",	 "a//b", "a/",	  "/a",	      "name:", "name:-x", "name@sha256:abc",
			     md5, "host:port/x", "a b",	 "x:a/b", "ho$t.io/x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct lms_image_ref r;
		struct lms_error *err = NULL;
		if (lms_image_ref_parse(bad[i], &r, &err) == 0)
			fail_msg("'%s' parsed", bad[i]);
		assert_non_null(err);
		lms_error_free(err);
	}
}

static void
test_platform_pick(void **state)
{
	(void)state;
	json_t *index = json_loads(
	    "{\"manifests\": [{\"digest\": \"att\", \"platform\": {\"os\": \"unknown\", \"architecture\": "
	    "\"unknown\"}},"
	    " {\"digest\": \"s390x\", \"platform\": {\"os\": \"linux\", \"architecture\": \"s390x\"}},"
	    " {\"digest\": \"other\", \"platform\": {\"os\": \"linux\", \"architecture\": \"" LMS_IMAGE_HOST_ARCH
	    "\", \"variant\": \"v9\"}},"
	    " {\"digest\": \"host\", \"platform\": {\"os\": \"linux\", \"architecture\": \"" LMS_IMAGE_HOST_ARCH
	    "\"}}]}",
	    0, NULL);
	assert_non_null(index);
	const json_t *m = lms_image_pick_manifest(index);
	assert_string_equal(json_string_value(json_object_get(m, "digest")), "host");
	json_array_remove(json_object_get(index, "manifests"), 3);
	m = lms_image_pick_manifest(index);
	assert_string_equal(json_string_value(json_object_get(m, "digest")), "other");
	json_array_remove(json_object_get(index, "manifests"), 2);
	assert_null(lms_image_pick_manifest(index));
	json_decref(index);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_docker_hub_short_names),
	    cmocka_unit_test(test_other_registries_digests_and_loopback),
	    cmocka_unit_test(test_bad_references),
	    cmocka_unit_test(test_platform_pick),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
