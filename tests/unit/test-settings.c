/* The daemon's settings table (server/settings.c): defaults, precedence, bounds, booleans, lists,
 * --help, and the env file as `lm-sandbox serve --env-file` reads it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "server/settings.h"

/* Every setting `lm-sandbox serve` documents (API-NOTES.md, README.md). */
static const char *const all_flags[] = {
    "listen",
    "state-dir",
    "token-file",
    "env-file",
    "log-level",
    "max-concurrent",
    "pool-size",
    "max-timeout-ms",
    "max-body-bytes",
    "max-sandboxes",
    "max-ttl-s",
    "max-upload-bytes",
    "max-body-bytes-in-flight",
    "max-connections",
    "max-connections-per-ip",
    "header-timeout-ms",
    "idle-timeout-ms",
    "allow-network",
    "network-dns",
    "network-allow-private",
    "network-allow",
    "insecure-no-auth",
    "sandbox-optional",
    "ollama-url",
    "llamacpp-url",
    "backend",
    "node-id",
    "peers",
    "cors-origin",
    "ollama-model",
    "llamacpp-model",
    "backend-connect-timeout-ms",
    "backend-first-byte-timeout-ms",
    "backend-timeout-ms",
    "models-cache-ms",
    "timeout-ms",
    "memory-mb",
    "pids",
    "cpu-ms",
    "cpus",
    "output-bytes",
    "disk-mb",
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* A file holding text, named /proc/self/fd/N (caller frees the name; the fd stays open for the test). */
static char *
file_with(const char *text)
{
	int fd = memfd_create("env-file", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, 0600), 0); /* a file that holds the token must be its owner's alone */
	return xasprintf("/proc/self/fd/%d", fd);
}

struct load {
	struct lms_config cfg;
	struct lms_error *err;
	int rc;
};

/* Loads argv (NULL-terminated, the words after `serve`) and envp (NULL-terminated, may be NULL). */
static void
load(struct load *l, const char *const *argv, const char *const *envp)
{
	int argc = 0;
	while (argv && argv[argc])
		argc++;
	l->err = NULL;
	l->rc = lms_config_load(&l->cfg, argc, (char **)argv, (char **)envp, &l->err);
}

static void
unload(struct load *l)
{
	lms_config_free(&l->cfg);
	lms_error_free(l->err);
	l->err = NULL;
}

/* Loading fails with an LMS_ERR_INVALID whose message is `want`. */
static void
fails_with(const char *const *argv, const char *const *envp, const char *want)
{
	struct load l;
	load(&l, argv, envp);
	assert_int_equal(l.rc, -1);
	assert_non_null(l.err);
	assert_int_equal(l.err->kind, LMS_ERR_INVALID);
	assert_string_equal(l.err->message, want);
	unload(&l);
}

static void
defaults(void **state)
{
	(void)state;
	struct load l;
	load(&l, NULL, NULL);
	assert_int_equal(l.rc, 0);
	const struct lms_config *c = &l.cfg;
	assert_string_equal(c->listen, "127.0.0.1:8000");
	assert_string_equal(c->state_dir, "/var/lib/lm-sandbox");
	assert_null(c->token_file);
	assert_null(c->token);
	assert_null(c->backends);
	assert_int_equal(c->log_level, LMS_LOG_INFO);
	assert_int_equal(c->max_concurrent, 16);
	assert_int_equal(c->pool_size, 4);
	assert_int_equal(c->max_body_bytes, 8 << 20);
	assert_int_equal(c->max_upload_bytes, 256 << 20);
	assert_false(c->allow_network);
	assert_false(c->insecure_no_auth);
	assert_string_equal(c->ollama_url, "http://127.0.0.1:11434");
	assert_string_equal(c->llamacpp_url, "http://127.0.0.1:8080");
	assert_int_equal(c->backend_first_byte_timeout_ms, 0);
	/* The request defaults are the sandbox's (sandbox.h), the same as `lm-sandbox run`'s. */
	assert_int_equal(c->defaults.timeout_ms, LMS_DEFAULT_TIMEOUT_MS);
	assert_int_equal(c->defaults.memory_mb, LMS_DEFAULT_MEMORY_MB);
	assert_int_equal(c->defaults.pids, LMS_DEFAULT_PIDS);
	assert_int_equal(c->defaults.cpu_ms, 0);
	assert_int_equal(c->defaults.millicpus, 0);
	assert_int_equal(c->defaults.output_bytes, LMS_DEFAULT_OUTPUT_BYTES);
	assert_int_equal(c->defaults.disk_mb, LMS_DEFAULT_DISK_MB);
	unload(&l);
}

static void
flag_beats_variable_beats_file_beats_default(void **state)
{
	(void)state;
	_cleanup_free_ char *file = file_with("LM_SANDBOX_PIDS=10\nLM_SANDBOX_DISK_MB=11\nLM_SANDBOX_MEMORY_MB=12\n");
	_cleanup_free_ char *file_var = xasprintf("LM_SANDBOX_ENV_FILE=%s", file);
	const char *argv[] = {"--pids", "30", NULL};
	const char *envp[] = {"LM_SANDBOX_PIDS=20", "LM_SANDBOX_DISK_MB=21", file_var, NULL};
	struct load l;
	load(&l, argv, envp);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.cfg.defaults.pids, 30);				 /* flag */
	assert_int_equal(l.cfg.defaults.disk_mb, 21);				 /* variable */
	assert_int_equal(l.cfg.defaults.memory_mb, 12);				 /* file */
	assert_int_equal(l.cfg.defaults.output_bytes, LMS_DEFAULT_OUTPUT_BYTES); /* default */
	unload(&l);

	/* --env-file names the file as well, and --flag=value is the same as --flag value. */
	const char *argv2[] = {"--env-file", file, "--disk-mb=31", NULL};
	load(&l, argv2, NULL);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.cfg.defaults.pids, 10);
	assert_int_equal(l.cfg.defaults.disk_mb, 31);
	unload(&l);
}

static void
bounds_and_numbers_name_the_flag_or_variable(void **state)
{
	(void)state;
	fails_with((const char *[]){"--pids", "0", NULL}, NULL, "--pids: 0 is outside 1..1000000");
	fails_with((const char *[]){"--max-concurrent=4097", NULL}, NULL, "--max-concurrent: 4097 is outside 1..4096");
	fails_with((const char *[]){"--memory-mb", "-5", NULL}, NULL,
		   "--memory-mb: '-5' is not a non-negative integer");
	fails_with((const char *[]){"--timeout-ms", "12x", NULL}, NULL,
		   "--timeout-ms: '12x' is not a non-negative integer");
	fails_with((const char *[]){"--pids", "99999999999999999999", NULL}, NULL,
		   "--pids: '99999999999999999999' is not a non-negative integer");
	fails_with(NULL, (const char *[]){"LM_SANDBOX_POOL_SIZE=65", NULL},
		   "environment variable LM_SANDBOX_POOL_SIZE: 65 is outside 0..64");
	fails_with(NULL, (const char *[]){"LM_SANDBOX_MAX_BODY_BYTES=", NULL},
		   "environment variable LM_SANDBOX_MAX_BODY_BYTES: '' is not a non-negative integer");
	fails_with((const char *[]){"--log-level", "loud", NULL}, NULL,
		   "--log-level: 'loud' is not debug, info, warning or error");
	fails_with((const char *[]){"--pids", NULL}, NULL, "option --pids needs a value");
	fails_with((const char *[]){"--cpus", "half", NULL}, NULL,
		   "--cpus must be a number of cores such as 0.5 or 2 (at most three decimals), not 'half'");
	fails_with(NULL, (const char *[]){"LM_SANDBOX_CPUS=2000", NULL},
		   "environment variable LM_SANDBOX_CPUS must be 0 (no limit) or between 0.01 and 1024, not 2000");
	fails_with((const char *[]){"--no-such", NULL}, NULL,
		   "unknown option '--no-such' (see lm-sandbox serve --help)");
	fails_with((const char *[]){"serve", NULL}, NULL, "unexpected argument 'serve'");
	fails_with(NULL, (const char *[]){"LM_SANDBOX_NO_SUCH=1", NULL},
		   "environment variable: unknown setting LM_SANDBOX_NO_SUCH (see lm-sandbox serve --help)");

	/* The bounds themselves are allowed. */
	const char *argv[] = {"--pool-size", "0", "--pids", "1000000", "--log-level", "debug", "--cpus", "1.5", NULL};
	struct load l;
	load(&l, argv, (const char *[]){"OTHER_THING=1", "PATH=/bin", "LM_SANDBOXED=1", NULL});
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.cfg.pool_size, 0);
	assert_int_equal(l.cfg.defaults.pids, 1000000);
	assert_int_equal(l.cfg.log_level, LMS_LOG_DEBUG);
	assert_int_equal(l.cfg.defaults.millicpus, 1500);
	unload(&l);
}

static void
booleans(void **state)
{
	(void)state;
	const struct {
		const char *arg;
		bool want;
	} cases[] = {
	    {"--allow-network", true},	   {"--allow-network=true", true},   {"--allow-network=1", true},
	    {"--allow-network=yes", true}, {"--allow-network=false", false}, {"--allow-network=0", false},
	    {"--allow-network=no", false},
	};
	for (size_t i = 0; i < N(cases); i++) {
		struct load l;
		load(&l, (const char *[]){cases[i].arg, NULL}, (const char *[]){"LM_SANDBOX_ALLOW_NETWORK=yes", NULL});
		assert_int_equal(l.rc, 0);
		assert_int_equal(l.cfg.allow_network, cases[i].want);
		unload(&l);
	}
	/* A boolean flag takes no separate value: the next word is not eaten. */
	fails_with((const char *[]){"--insecure-no-auth", "false", NULL}, NULL, "unexpected argument 'false'");
	fails_with((const char *[]){"--allow-network=maybe", NULL}, NULL,
		   "--allow-network: 'maybe' is not true or false");
	fails_with(NULL, (const char *[]){"LM_SANDBOX_INSECURE_NO_AUTH=on", NULL},
		   "environment variable LM_SANDBOX_INSECURE_NO_AUTH: 'on' is not true or false");
}

static void
repeated_list_flags_join_and_replace_the_variable(void **state)
{
	(void)state;
	const char *envp[] = {"LM_SANDBOX_BACKEND=env=http://e:1", NULL};
	struct load l;
	load(&l, NULL, envp);
	assert_int_equal(l.rc, 0);
	assert_string_equal(l.cfg.backends, "env=http://e:1");
	unload(&l);
	load(&l, (const char *[]){"--backend", "a=http://a:1", "--pids", "3", "--backend=b=http://b:2", NULL}, envp);
	assert_int_equal(l.rc, 0);
	assert_string_equal(l.cfg.backends, "a=http://a:1,b=http://b:2");
	unload(&l);
}

static void
help_lists_every_setting(void **state)
{
	(void)state;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	lms_config_help(f);
	assert_int_equal(fclose(f), 0);
	for (size_t i = 0; i < N(all_flags); i++) {
		_cleanup_free_ char *flag = xasprintf("\n  --%s ", all_flags[i]);
		assert_non_null(strstr(text, flag));
		char var[64] = "LM_SANDBOX_";
		for (size_t k = 0; all_flags[i][k]; k++)
			var[11 + k] = all_flags[i][k] == '-' ? '_' : (char)(all_flags[i][k] - 'a' + 'A');
		assert_non_null(strstr(text, var));
	}
	/* ... and nothing else: every --flag the help shows is accepted. */
	size_t shown = 0;
	for (const char *p = text; (p = strstr(p, "\n  --")) != NULL; p++)
		shown++;
	assert_int_equal(shown, N(all_flags));
	assert_non_null(strstr(text, "LM_SANDBOX_API_TOKEN"));
	assert_non_null(strstr(text, "default: 127.0.0.1:8000"));
	assert_non_null(strstr(text, "default: info"));
	free(text);

	struct load l;
	load(&l, (const char *[]){"--pids", "2", "--help", NULL}, NULL);
	assert_int_equal(l.rc, 1);
	unload(&l);
}

static void
env_file_syntax(void **state)
{
	(void)state;
	_cleanup_free_ char *file = file_with("# lm-sandbox settings\n"
					      "\n"
					      "   \t\n"
					      "  # an indented comment\n"
					      "export LM_SANDBOX_LISTEN=\"127.0.0.1:9000\"\n"
					      "LM_SANDBOX_OLLAMA_URL='http://ollama:11434'\n"
					      "  LM_SANDBOX_PIDS = 7  \n"
					      "LM_SANDBOX_OLLAMA_MODEL=\"unbalanced'\n"
					      "LM_SANDBOX_LLAMACPP_MODEL=\"\"\n"
					      "COMPOSE_PROJECT_NAME=shared-with-compose\n"
					      "LM_SANDBOX_API_TOKEN=s3cret\n"
					      "LM_SANDBOX_ALLOW_NETWORK=true");
	struct load l;
	load(&l, (const char *[]){"--env-file", file, NULL}, NULL);
	assert_int_equal(l.rc, 0);
	assert_string_equal(l.cfg.listen, "127.0.0.1:9000");
	assert_string_equal(l.cfg.ollama_url, "http://ollama:11434");
	assert_int_equal(l.cfg.defaults.pids, 7);
	assert_string_equal(l.cfg.ollama_model, "\"unbalanced'");
	assert_string_equal(l.cfg.llamacpp_model, "");
	assert_string_equal(l.cfg.token, "s3cret");
	assert_true(l.cfg.allow_network);
	unload(&l);

	_cleanup_free_ char *bad_line = file_with("# ok\nLM_SANDBOX_PIDS=2\njust words\n");
	_cleanup_free_ char *want = xasprintf("%s:3: not a KEY=VALUE line", bad_line);
	fails_with((const char *[]){"--env-file", bad_line, NULL}, NULL, want);

	_cleanup_free_ char *unknown = file_with("LM_SANDBOX_PIDZ=2\n");
	_cleanup_free_ char *want2 =
	    xasprintf("%s:1:: unknown setting LM_SANDBOX_PIDZ (see lm-sandbox serve --help)", unknown);
	fails_with((const char *[]){"--env-file", unknown, NULL}, NULL, want2);

	_cleanup_free_ char *bad_value = file_with("\n\nLM_SANDBOX_PIDS=lots\n");
	_cleanup_free_ char *want3 =
	    xasprintf("%s:3: LM_SANDBOX_PIDS: 'lots' is not a non-negative integer", bad_value);
	fails_with((const char *[]){"--env-file", bad_value, NULL}, NULL, want3);

	fails_with((const char *[]){"--env-file", "/nonexistent/lms.env", NULL}, NULL,
		   "--env-file /nonexistent/lms.env: No such file or directory");
}

static void
env_text_from_a_buffer(void **state)
{
	(void)state;
	struct lms_config cfg = {0};
	_cleanup_error_ struct lms_error *err = NULL;
	/* Not NUL-terminated: the length counts, a final line needs no newline, CRLF lines are trimmed. */
	const char text[] = "LM_SANDBOX_PIDS=5\r\nLM_SANDBOX_LISTEN=[::1]:0XXXX";
	assert_int_equal(lms_config_parse_env(&cfg, text, sizeof(text) - 5, "mem", &err), 0);
	assert_int_equal(cfg.defaults.pids, 5);
	assert_string_equal(cfg.listen, "[::1]:0");
	assert_int_equal(lms_config_parse_env(&cfg, "", 0, "mem", &err), 0);
	const char nul[] = "# ok\nLM_SANDBOX_PIDS=5\0 and more\n";
	assert_int_equal(lms_config_parse_env(&cfg, nul, sizeof(nul) - 1, "mem", &err), -1);
	assert_string_equal(err->message, "mem:2: a NUL byte in the line");
	lms_config_free(&cfg);
}

static void
token_and_timeout_clamp(void **state)
{
	(void)state;
	_cleanup_free_ char *token_file = file_with("  from-file\n");
	struct load l;
	load(&l, (const char *[]){"--token-file", token_file, "--max-timeout-ms", "1000", NULL},
	     (const char *[]){"LM_SANDBOX_API_TOKEN=from-env", NULL});
	assert_int_equal(l.rc, 0);
	assert_string_equal(l.cfg.token, "from-file");
	/* The default timeout never exceeds the ceiling. */
	assert_int_equal(l.cfg.defaults.timeout_ms, 1000);
	unload(&l);

	_cleanup_free_ char *empty = file_with(" \n");
	_cleanup_free_ char *want = xasprintf("--token-file %s is empty", empty);
	fails_with((const char *[]){"--token-file", empty, NULL}, NULL, want);

	/* Open to the group or others: refused, naming the file, its mode and the fix. */
	static const char fmt[] =
	    "--%s %s holds the API token and is open to others than its owner (mode %04o): run "
	    "chmod 600 %s, and keep it out of /etc, which every sandbox sees (/var/lib/lm-sandbox, "
	    "or a systemd credential)";
	_cleanup_free_ char *shared = file_with("from-file\n");
	assert_int_equal(chmod(shared, 0644), 0);
	_cleanup_free_ char *want2 = xasprintf(fmt, "token-file", shared, 0644, shared);
	fails_with((const char *[]){"--token-file", shared, NULL}, NULL, want2);
	_cleanup_free_ char *env = file_with("LM_SANDBOX_API_TOKEN=x\n");
	assert_int_equal(chmod(env, 0640), 0);
	_cleanup_free_ char *want3 = xasprintf(fmt, "env-file", env, 0640, env);
	fails_with((const char *[]){"--env-file", env, NULL}, NULL, want3);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(defaults),
	    cmocka_unit_test(flag_beats_variable_beats_file_beats_default),
	    cmocka_unit_test(bounds_and_numbers_name_the_flag_or_variable),
	    cmocka_unit_test(booleans),
	    cmocka_unit_test(repeated_list_flags_join_and_replace_the_variable),
	    cmocka_unit_test(help_lists_every_setting),
	    cmocka_unit_test(env_file_syntax),
	    cmocka_unit_test(env_text_from_a_buffer),
	    cmocka_unit_test(token_and_timeout_clamp),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
