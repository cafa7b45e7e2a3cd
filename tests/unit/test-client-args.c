/* The command line of `lm-sandbox sandbox ...` (client/args.c), the times of `ls` (client/age.c) and the
 * base64 of exec's output (core/base64.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "client/age.h"
#include "client/args.h"
#include "client/http.h"
#include "core/base64.h"

#define ARGC(v) ((int)(sizeof(v) / sizeof((v)[0])) - 1)

/* Parses a NULL-terminated argv (after "lm-sandbox-client"); the body as compact JSON with sorted keys. */
static int
parse(char **argv, struct lms_client_args *a, char **body, char **message)
{
	int argc = 0;
	while (argv[argc] != NULL)
		argc++;
	struct lms_error *err = NULL;
	int r = lms_client_parse(argc, argv, a, &err);
	if (body != NULL)
		*body = a->body ? json_dumps(a->body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	if (message != NULL)
		*message = err ? strdup(err->message) : NULL;
	lms_error_free(err);
	return r;
}

static void
expect_body(char **argv, enum lms_client_cmd cmd, const char *want)
{
	struct lms_client_args a;
	char *body, *message;
	int r = parse(argv, &a, &body, &message);
	if (r != 0)
		fail_msg("%s", message);
	assert_int_equal(a.cmd, cmd);
	assert_string_equal(body, want);
	free(body);
	lms_client_args_free(&a);
}

static void
expect_usage_error(char **argv, const char *needle)
{
	struct lms_client_args a;
	char *message;
	assert_int_equal(parse(argv, &a, NULL, &message), -1);
	if (strstr(message, needle) == NULL)
		fail_msg("'%s' does not say '%s'", message, needle);
	free(message);
	lms_client_args_free(&a);
}

static void
create_takes_docker_style_limits_env_and_labels(void **state)
{
	(void)state;
	char *argv[] = {"c",	 "create", "--memory", "1g",	      "--pids", "64",	 "--disk",
			"512m",	 "--cpus", "0.5",      "--ttl",	      "10m",	"-e",	 "A=1",
			"--env", "B=x=y",  "--label",  "owner=alice", "-l",	"task=", NULL};
	expect_body(argv, LMS_CLIENT_CREATE,
		    "{\"env\":{\"A\":\"1\",\"B\":\"x=y\"},\"limits\":{\"cpus\":0.5,\"disk_mb\":512,\"memory_mb\":1024,"
		    "\"pids\":64},\"metadata\":{\"owner\":\"alice\",\"task\":\"\"},\"ttl_s\":600}");
	char *bare[] = {"c", "create", NULL};
	expect_body(bare, LMS_CLIENT_CREATE, "{}");
}

static void
env_without_a_value_comes_from_our_environment(void **state)
{
	(void)state;
	setenv("LMS_TEST_FROM_HERE", "here", 1);
	unsetenv("LMS_TEST_NOT_SET");
	char *argv[] = {"c", "create", "-e", "LMS_TEST_FROM_HERE", "-e", "LMS_TEST_NOT_SET", NULL};
	expect_body(argv, LMS_CLIENT_CREATE, "{\"env\":{\"LMS_TEST_FROM_HERE\":\"here\"}}");
}

static void
global_options_go_before_or_after_the_command(void **state)
{
	(void)state;
	struct lms_client_args a;
	char *before[] = {"c", "--url", "http://h:1", "--token-file", "/t", "ls", NULL};
	assert_int_equal(parse(before, &a, NULL, NULL), 0);
	assert_int_equal(a.cmd, LMS_CLIENT_LS);
	assert_string_equal(a.url, "http://h:1");
	assert_string_equal(a.token_file, "/t");
	lms_client_args_free(&a);
	char *after[] = {"c", "ls", "--url=http://h:2", "-q", NULL};
	assert_int_equal(parse(after, &a, NULL, NULL), 0);
	assert_string_equal(a.url, "http://h:2");
	assert_true(a.quiet);
	lms_client_args_free(&a);
}

static void
ls_filters_become_the_metadata_query(void **state)
{
	(void)state;
	struct lms_client_args a;
	char *argv[] = {"c", "ls", "--filter", "label=owner=alice", "-f", "label=a b=x&y", NULL};
	assert_int_equal(parse(argv, &a, NULL, NULL), 0);
	assert_string_equal(a.query, "?metadata.owner=alice&metadata.a%20b=x%26y");
	lms_client_args_free(&a);
	char *none[] = {"c", "ls", NULL};
	assert_int_equal(parse(none, &a, NULL, NULL), 0);
	assert_string_equal(a.query, "");
	lms_client_args_free(&a);
	char *bad[] = {"c", "ls", "--filter", "status=running", NULL};
	expect_usage_error(bad, "label=KEY=VALUE");
}

static void
exec_takes_the_id_then_the_command(void **state)
{
	(void)state;
	char *argv[] = {"c",   "exec",	"-e", "K=V", "-w", "/tmp",	 "--timeout",
			"90s", "sbx_1", "--", "sh",  "-c", "echo -n hi", NULL};
	struct lms_client_args a;
	char *body;
	assert_int_equal(parse(argv, &a, &body, NULL), 0);
	assert_string_equal(a.id, "sbx_1");
	assert_false(a.no_stdin);
	assert_string_equal(body, "{\"argv\":[\"sh\",\"-c\",\"echo -n hi\"],\"cwd\":\"/tmp\",\"encoding\":\"base64\","
				  "\"env\":{\"K\":\"V\"},\"stream\":true,\"timeout_ms\":90000}");
	free(body);
	lms_client_args_free(&a);
	/* Without `--`, and the command's own options stay its own. */
	char *plain[] = {"c", "exec", "-n", "sbx_2", "ls", "-l", "--all", NULL};
	assert_int_equal(parse(plain, &a, &body, NULL), 0);
	assert_string_equal(a.id, "sbx_2");
	assert_true(a.no_stdin);
	assert_string_equal(body, "{\"argv\":[\"ls\",\"-l\",\"--all\"],\"encoding\":\"base64\",\"stream\":true}");
	free(body);
	lms_client_args_free(&a);
}

static void
chat_takes_the_model_the_sandbox_and_yes(void **state)
{
	(void)state;
	char *argv[] = {"c",	     "chat",  "--model", "ollama/q:7b", "--image",    "deb", "--network",
			"--sandbox", "sbx_3", "-y",	 "--url",	"http://h:1", NULL};
	struct lms_client_args a;
	char *body;
	assert_int_equal(parse(argv, &a, &body, NULL), 0);
	assert_int_equal(a.cmd, LMS_CLIENT_CHAT);
	assert_string_equal(a.id, "sbx_3");
	assert_true(a.yes);
	assert_string_equal(a.url, "http://h:1");
	assert_string_equal(body, "{\"image\":\"deb\",\"model\":\"ollama/q:7b\",\"network\":true}");
	free(body);
	lms_client_args_free(&a);
	char *plain[] = {"c", "chat", NULL};
	assert_int_equal(parse(plain, &a, &body, NULL), 0);
	assert_false(a.yes);
	assert_null(a.id);
	free(body);
	lms_client_args_free(&a);
	char *extra[] = {"c", "chat", "hello", NULL};
	expect_usage_error(extra, "lm-sandbox chat --help");
	char *empty[] = {"c", "chat", "--model", "", NULL};
	expect_usage_error(empty, "--model needs");
}

static void
mistakes_are_usage_errors_that_say_what_to_type(void **state)
{
	(void)state;
	char *no_cmd[] = {"c", "exec", "sbx_1", "--", NULL};
	expect_usage_error(no_cmd, "no command given");
	char *no_id[] = {"c", "exec", NULL};
	expect_usage_error(no_id, "no sandbox id");
	char *rm[] = {"c", "rm", NULL};
	expect_usage_error(rm, "no sandbox id");
	char *cp[] = {"c", "cp", "a", NULL};
	expect_usage_error(cp, "SRC and DST");
	char *unknown[] = {"c", "start", NULL};
	expect_usage_error(unknown, "unknown command 'start'");
	char *option[] = {"c", "create", "--memroy", "1g", NULL};
	expect_usage_error(option, "unknown option --memroy");
	char *value[] = {"c", "create", "--memory", NULL};
	expect_usage_error(value, "--memory needs a value");
	char *size[] = {"c", "create", "--memory", "lots", NULL};
	expect_usage_error(size, "512m");
	char *label[] = {"c", "create", "--label", "novalue", NULL};
	expect_usage_error(label, "KEY=VALUE");
	char *timeout[] = {"c", "exec", "--timeout", "0", "sbx_1", "true", NULL};
	expect_usage_error(timeout, "more than 0");
	char *extra[] = {"c", "ls", "sbx_1", NULL};
	expect_usage_error(extra, "unexpected argument");
	char *cpus[] = {"c", "create", "--cpus", "many", NULL};
	expect_usage_error(cpus, "--cpus");
}

static void
help_is_asked_for_in_every_way(void **state)
{
	(void)state;
	struct lms_client_args a;
	char *none[] = {"c", NULL};
	assert_int_equal(parse(none, &a, NULL, NULL), 0);
	assert_int_equal(a.cmd, LMS_CLIENT_HELP);
	lms_client_args_free(&a);
	char *cmd[] = {"c", "cp", "--help", NULL};
	assert_int_equal(parse(cmd, &a, NULL, NULL), 0);
	assert_int_equal(a.cmd, LMS_CLIENT_CP);
	assert_true(a.help);
	assert_non_null(strstr(lms_client_usage(a.cmd), "docker cp"));
	lms_client_args_free(&a);
	char *word[] = {"c", "help", NULL};
	assert_int_equal(parse(word, &a, NULL, NULL), 0);
	assert_int_equal(a.cmd, LMS_CLIENT_HELP);
	lms_client_args_free(&a);
}

static void
sizes_read_as_docker_writes_them(void **state)
{
	(void)state;
	struct {
		const char *text;
		uint64_t mib;
	} ok[] = {{"512", 512}, {"512m", 512}, {"512M", 512}, {"2g", 2048},    {"1GiB", 1024}, {"1gb", 1024},
		  {"1k", 1},	{"1b", 1},     {"2048k", 2},  {"1t", 1 << 20}, {"0", 0}};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t mib = 99;
		assert_int_equal(lms_client_parse_mib("--memory", ok[i].text, &mib, NULL), 0);
		assert_int_equal(mib, ok[i].mib);
	}
	const char *bad[] = {"", "m", "-1", "1.5g", "1x", "1 g", "99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t mib;
		assert_int_equal(lms_client_parse_mib("--memory", bad[i], &mib, NULL), -1);
	}
}

static void
durations_take_units_and_bare_seconds(void **state)
{
	(void)state;
	struct {
		const char *text;
		uint64_t ms;
	} ok[] = {{"90", 90000},   {"1.5", 1500},    {"500ms", 500},	 {"30s", 30000}, {"10m", 600000},
		  {"2h", 7200000}, {"1d", 86400000}, {"1h30m", 5400000}, {"0.0005s", 1}};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t ms = 0;
		assert_int_equal(lms_client_parse_duration_ms("--ttl", ok[i].text, &ms, NULL), 0);
		assert_int_equal(ms, ok[i].ms);
	}
	const char *bad[] = {"", "s", "-5", "10x", "1h30", "5 m", "inf", "nan"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t ms;
		assert_int_equal(lms_client_parse_duration_ms("--ttl", bad[i], &ms, NULL), -1);
	}
}

static void
times_read_and_print_as_docker_ps_shows_them(void **state)
{
	(void)state;
	long long t = lms_client_parse_time_ms("2024-05-01T12:00:00.250Z");
	assert_true(t == 1714564800250LL);
	assert_true(lms_client_parse_time_ms("2024-05-01T14:00:00+02:00") == 1714564800000LL);
	assert_true(lms_client_parse_time_ms("2024-05-01 12:00:00") == -1);
	assert_true(lms_client_parse_time_ms("2024-05-01T12:00:00.1Zjunk") == -1);
	assert_true(lms_client_parse_time_ms(NULL) == -1);
	struct {
		long long ms;
		const char *ago, *in;
	} cases[] = {
	    {400, "Less than a second ago", "in less than a second"},
	    {1000, "1 second ago", "in 1 second"},
	    {45000, "45 seconds ago", "in 45 seconds"},
	    {90000, "About a minute ago", "in about a minute"},
	    {180000, "3 minutes ago", "in 3 minutes"},
	    {3600000, "About an hour ago", "in about an hour"},
	    {5 * 3600000LL, "5 hours ago", "in 5 hours"},
	    {3 * 86400000LL, "3 days ago", "in 3 days"},
	    {21 * 86400000LL, "3 weeks ago", "in 3 weeks"},
	};
	char buf[64];
	long long now = 1714564800000LL;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		lms_client_relative_time(now - cases[i].ms, now, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].ago);
		lms_client_relative_time(now + cases[i].ms, now, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].in);
	}
	lms_client_relative_time(-1, now, buf, sizeof(buf));
	assert_string_equal(buf, "");
}

static void
urls_are_escaped_byte_by_byte(void **state)
{
	(void)state;
	char *s = lms_client_escape("/work/a b/ü?#%", true);
	assert_string_equal(s, "/work/a%20b/%C3%BC%3F%23%25");
	free(s);
	s = lms_client_escape("a/b", false);
	assert_string_equal(s, "a%2Fb");
	free(s);
}

static void
base64_decodes_what_the_daemon_encodes(void **state)
{
	(void)state;
	unsigned char out[16];
	assert_int_equal(lms_base64_decode("aGkK", 4, out), 3);
	assert_memory_equal(out, "hi\n", 3);
	assert_int_equal(lms_base64_decode("/w==", 4, out), 1);
	assert_int_equal(out[0], 0xFF);
	assert_int_equal(lms_base64_decode("AAE", 3, out), 2);
	assert_int_equal(lms_base64_decode("", 0, out), 0);
	assert_int_equal(lms_base64_decode("a", 1, out), -1);
	assert_int_equal(lms_base64_decode("aGk*", 4, out), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(create_takes_docker_style_limits_env_and_labels),
	    cmocka_unit_test(env_without_a_value_comes_from_our_environment),
	    cmocka_unit_test(global_options_go_before_or_after_the_command),
	    cmocka_unit_test(ls_filters_become_the_metadata_query),
	    cmocka_unit_test(exec_takes_the_id_then_the_command),
	    cmocka_unit_test(chat_takes_the_model_the_sandbox_and_yes),
	    cmocka_unit_test(mistakes_are_usage_errors_that_say_what_to_type),
	    cmocka_unit_test(help_is_asked_for_in_every_way),
	    cmocka_unit_test(sizes_read_as_docker_writes_them),
	    cmocka_unit_test(durations_take_units_and_bare_seconds),
	    cmocka_unit_test(times_read_and_print_as_docker_ps_shows_them),
	    cmocka_unit_test(urls_are_escaped_byte_by_byte),
	    cmocka_unit_test(base64_decodes_what_the_daemon_encodes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
