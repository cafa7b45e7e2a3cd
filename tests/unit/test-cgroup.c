/* The cgroup module over fake cgroupfs trees (v1 and v2), so both run on any machine without root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/file.h"
#include "sandbox/cgroup.h"

static char root[64];

static void
put(const char *rel, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	char *slash = strrchr(path, '/');
	*slash = '\0';
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", path);
	assert_int_equal(system(cmd), 0);
	*slash = '/';
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char *
get(const char *rel)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	char *text = lms_file_read_at(AT_FDCWD, path, 4096, NULL);
	if (text == NULL)
		fail_msg("cannot read %s", path);
	return text;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int
setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/tmp/lms-cgtest-XXXXXX");
	assert_non_null(mkdtemp(root));
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static void
self_path_parsing(void **state)
{
	(void)state;
	const char *text = "12:pids:/user.slice\n4:cpu,cpuacct:/a/b\n3:memory:/process_api/x\n0::/init.scope\n";
	_cleanup_free_ char *pids = lms_cgroup_self_path(text, "pids");
	_cleanup_free_ char *cpuacct = lms_cgroup_self_path(text, "cpuacct");
	_cleanup_free_ char *mem = lms_cgroup_self_path(text, "memory");
	_cleanup_free_ char *unified = lms_cgroup_self_path(text, "");
	_cleanup_free_ char *missing = lms_cgroup_self_path(text, "blkio");
	assert_string_equal(pids, "/user.slice");
	assert_string_equal(cpuacct, "/a/b");
	assert_string_equal(mem, "/process_api/x");
	assert_string_equal(unified, "/init.scope");
	assert_null(missing);
	_cleanup_free_ char *none = lms_cgroup_self_path("garbage without colons", "memory");
	assert_null(none);
}

static void
v1_group_is_child_of_own_group_with_limits(void **state)
{
	(void)state;
	char self[128];
	snprintf(self, sizeof(self), "%s/self", root);
	put("self", "8:pids:/ci\n4:memory:/job/7\n2:cpuacct:/\n");
	put("fs/memory/job/7/cgroup.procs", "");
	put("fs/pids/ci/cgroup.procs", "");
	put("fs/cpuacct/cgroup.procs", "");
	char fs[128];
	snprintf(fs, sizeof(fs), "%s/fs", root);

	struct lms_limits limits = {.memory_mb = 64, .pids = 16};
	struct lms_cgroup *cg = NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	assert_int_equal(lms_cgroup_create(fs, self, "lms-t-1", &limits, &cg, &err), 0);
	assert_int_equal(cg->version, 1);
	assert_int_equal(lms_cgroup_clone_fd(cg), -1);

	_cleanup_free_ char *mem = get("fs/memory/job/7/lms-t-1/memory.limit_in_bytes");
	_cleanup_free_ char *pids = get("fs/pids/ci/lms-t-1/pids.max");
	assert_string_equal(mem, "67108864");
	assert_string_equal(pids, "16");

	assert_int_equal(lms_cgroup_attach(cg, 4242, &err), 0);
	_cleanup_free_ char *procs = get("fs/cpuacct/lms-t-1/cgroup.procs");
	assert_string_equal(procs, "4242");

	put("fs/cpuacct/lms-t-1/cpuacct.usage", "123456789\n");
	uint64_t ns = 0;
	assert_int_equal(lms_cgroup_cpu_ns(cg, &ns, &err), 0);
	assert_int_equal(ns, 123456789);

	assert_false(lms_cgroup_oom_killed(cg));
	put("fs/memory/job/7/lms-t-1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
	assert_true(lms_cgroup_oom_killed(cg));
	/* Plain directories with files cannot be rmdir'ed: destroy reports it, and frees. */
	assert_int_equal(lms_cgroup_destroy(cg, NULL), -1);
}

static void
v1_missing_controller_is_explained(void **state)
{
	(void)state;
	char self[128], fs[128];
	snprintf(self, sizeof(self), "%s/self", root);
	snprintf(fs, sizeof(fs), "%s/fs", root);
	put("self", "4:memory:/\n");
	put("fs/memory/cgroup.procs", "");
	struct lms_limits limits = {.memory_mb = 64, .pids = 16};
	struct lms_cgroup *cg = NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	assert_int_equal(lms_cgroup_create(fs, self, "lms-t-2", &limits, &cg, &err), -1);
	assert_non_null(strstr(err->message, "pids controller is not mounted"));
	assert_null(cg);
	/* The memory group made before the failure is removed again. */
	char path[256];
	snprintf(path, sizeof(path), "%s/fs/memory/lms-t-2", root);
	struct stat st;
	assert_int_equal(stat(path, &st), -1);
}

static void
v2_uses_own_group_when_it_can_delegate(void **state)
{
	(void)state;
	char self[128], fs[128];
	snprintf(self, sizeof(self), "%s/self", root);
	snprintf(fs, sizeof(fs), "%s/fs", root);
	put("self", "0::/system.slice/lm-sandbox.service\n");
	put("fs/cgroup.controllers", "cpuset cpu io memory hugetlb pids\n");
	put("fs/system.slice/lm-sandbox.service/cgroup.controllers", "cpu memory pids\n");
	put("fs/system.slice/lm-sandbox.service/cgroup.subtree_control", "");

	struct lms_limits limits = {.memory_mb = 128, .pids = 32};
	struct lms_cgroup *cg = NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	assert_int_equal(lms_cgroup_create(fs, self, "lms-t-3", &limits, &cg, &err), 0);
	assert_int_equal(cg->version, 2);
	assert_true(lms_cgroup_clone_fd(cg) >= 0);
	_cleanup_free_ char *enabled = get("fs/system.slice/lm-sandbox.service/cgroup.subtree_control");
	_cleanup_free_ char *mem = get("fs/system.slice/lm-sandbox.service/lms-t-3/memory.max");
	_cleanup_free_ char *pids = get("fs/system.slice/lm-sandbox.service/lms-t-3/pids.max");
	assert_string_equal(enabled, "+memory +pids +cpu");
	assert_string_equal(mem, "134217728");
	assert_string_equal(pids, "32");

	/* A CPU limit: quota and period in cpu.max; none is "max". */
	put("fs/system.slice/lm-sandbox.service/lms-t-3/cpu.max", "max 100000\n");
	limits.millicpus = 500;
	assert_int_equal(lms_cgroup_set_limits(cg, &limits, &err), 0);
	_cleanup_free_ char *half = get("fs/system.slice/lm-sandbox.service/lms-t-3/cpu.max");
	assert_string_equal(half, "50000 100000");
	limits.millicpus = 0;
	assert_int_equal(lms_cgroup_set_limits(cg, &limits, &err), 0);
	_cleanup_free_ char *none = get("fs/system.slice/lm-sandbox.service/lms-t-3/cpu.max");
	assert_string_equal(none, "max 100000");

	put("fs/system.slice/lm-sandbox.service/lms-t-3/cpu.stat", "usage_usec 2500\nuser_usec 2000\n");
	uint64_t ns = 0;
	assert_int_equal(lms_cgroup_cpu_ns(cg, &ns, &err), 0);
	assert_int_equal(ns, 2500000);
	put("fs/system.slice/lm-sandbox.service/lms-t-3/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n");
	assert_true(lms_cgroup_oom_killed(cg));
	lms_cgroup_destroy(cg, NULL);
}

static void
v2_falls_back_to_top_group(void **state)
{
	(void)state;
	char self[128], fs[128];
	snprintf(self, sizeof(self), "%s/self", root);
	snprintf(fs, sizeof(fs), "%s/fs", root);
	put("self", "0::/user.slice/session-1.scope\n");
	put("fs/cgroup.controllers", "cpu memory pids\n");
	put("fs/cgroup.subtree_control", "cpu memory pids\n");
	/* A scope that holds the caller's shell cannot enable controllers: a directory stands in for a
	 * subtree_control that refuses the write. */
	put("fs/user.slice/session-1.scope/cgroup.controllers", "memory pids\n");
	put("fs/user.slice/session-1.scope/cgroup.subtree_control/x", "");
	put("fs/lm-sandbox/cgroup.controllers", "memory pids\n");
	put("fs/lm-sandbox/cgroup.subtree_control", "");

	struct lms_limits limits = {.memory_mb = 64, .pids = 8};
	struct lms_cgroup *cg = NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	assert_int_equal(lms_cgroup_create(fs, self, "lms-t-4", &limits, &cg, &err), 0);
	_cleanup_free_ char *pids = get("fs/lm-sandbox/lms-t-4/pids.max");
	assert_string_equal(pids, "8");
	/* No cpu controller delegated here: a CPU limit is refused, and says how to run without one. */
	limits.millicpus = 1000;
	assert_int_equal(lms_cgroup_set_limits(cg, &limits, &err), -1);
	assert_int_equal(err->kind, LMS_ERR_UNSUPPORTED);
	assert_non_null(strstr(err->message, "cpus 0"));
	lms_cgroup_destroy(cg, NULL);
}

static void
v1_command_group_below_the_sandbox(void **state)
{
	(void)state;
	char self[128], fs[128];
	snprintf(self, sizeof(self), "%s/self", root);
	snprintf(fs, sizeof(fs), "%s/fs", root);
	put("self", "8:pids:/\n4:memory:/\n2:cpuacct:/\n");
	put("fs/memory/cgroup.procs", "");
	put("fs/pids/cgroup.procs", "");
	put("fs/cpuacct/cgroup.procs", "");
	struct lms_limits box = {.memory_mb = 512, .pids = 256}, cmd = {.memory_mb = 64, .pids = 16};
	struct lms_cgroup *sb = NULL, *cg = NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	assert_int_equal(lms_cgroup_create(fs, self, "lms-t-5", &box, &sb, &err), 0);
	assert_int_equal(lms_cgroup_child_create(sb, "x1", &cmd, &cg, &err), 0);
	/* Memory and pids only: the command's CPU time is the sandbox's. */
	_cleanup_free_ char *mem = get("fs/memory/lms-t-5/x1/memory.limit_in_bytes");
	_cleanup_free_ char *pids = get("fs/pids/lms-t-5/x1/pids.max");
	assert_string_equal(mem, "67108864");
	assert_string_equal(pids, "16");
	char path[256];
	struct stat st;
	snprintf(path, sizeof(path), "%s/fs/cpuacct/lms-t-5/x1", root);
	assert_int_equal(stat(path, &st), -1);
	/* What a process of the sandbox writes "0" to, to join the group before it execs (the kernel makes
	 * cgroup.procs; the fake tree needs it put). */
	put("fs/memory/lms-t-5/x1/cgroup.procs", "");
	put("fs/pids/lms-t-5/x1/cgroup.procs", "");
	int fds[2];
	size_t n = 0;
	assert_int_equal(lms_cgroup_join_fds(cg, fds, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(write(fds[0], "0", 1), 1);
	close(fds[0]);
	close(fds[1]);
	_cleanup_free_ char *joined = get("fs/memory/lms-t-5/x1/cgroup.procs");
	assert_string_equal(joined, "0");
	/* Which limit stopped it. */
	assert_false(lms_cgroup_pids_hit(cg));
	put("fs/pids/lms-t-5/x1/pids.events", "max 3\n");
	assert_true(lms_cgroup_pids_hit(cg));
	put("fs/memory/lms-t-5/x1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
	assert_int_equal(lms_cgroup_oom_kills(cg), 2);
	lms_cgroup_destroy(cg, NULL);
	lms_cgroup_destroy(sb, NULL);
}

static void
v2_command_group_is_a_leaf_beside_init(void **state)
{
	(void)state;
	char self[128], fs[128];
	snprintf(self, sizeof(self), "%s/self", root);
	snprintf(fs, sizeof(fs), "%s/fs", root);
	put("self", "0::/svc\n");
	put("fs/cgroup.controllers", "cpu memory pids\n");
	put("fs/svc/cgroup.controllers", "cpu memory pids\n");
	put("fs/svc/cgroup.subtree_control", "");
	struct lms_limits box = {.memory_mb = 512, .pids = 256}, cmd = {.memory_mb = 64, .pids = 16};
	struct lms_cgroup *sb = NULL, *cg = NULL;
	_cleanup_error_ struct lms_error *err = NULL;
	assert_int_equal(lms_cgroup_create(fs, self, "lms-t-6", &box, &sb, &err), 0);
	/* PID 1 is cloned into the init leaf, not into the sandbox's group itself. */
	char path[256];
	struct stat st;
	snprintf(path, sizeof(path), "%s/fs/svc/lms-t-6/init", root);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(lms_cgroup_clone_fd(sb), sb->init_fd);
	assert_int_equal(lms_cgroup_attach(sb, 77, &err), 0);
	_cleanup_free_ char *in_init = get("fs/svc/lms-t-6/init/cgroup.procs");
	assert_string_equal(in_init, "77");
	/* The sandbox's group hands memory and pids to the command's leaf, which gets its limits. */
	put("fs/svc/lms-t-6/cgroup.controllers", "cpu memory pids\n");
	put("fs/svc/lms-t-6/cgroup.subtree_control", "");
	assert_int_equal(lms_cgroup_child_create(sb, "x2", &cmd, &cg, &err), 0);
	_cleanup_free_ char *enabled = get("fs/svc/lms-t-6/cgroup.subtree_control");
	_cleanup_free_ char *mem = get("fs/svc/lms-t-6/x2/memory.max");
	_cleanup_free_ char *pids = get("fs/svc/lms-t-6/x2/pids.max");
	assert_string_equal(enabled, "+memory +pids +cpu");
	assert_string_equal(mem, "67108864");
	assert_string_equal(pids, "16");
	put("fs/svc/lms-t-6/x2/cgroup.procs", "");
	int fds[2];
	size_t n = 0;
	assert_int_equal(lms_cgroup_join_fds(cg, fds, &n, &err), 0);
	assert_int_equal(n, 1);
	close(fds[0]);
	put("fs/svc/lms-t-6/x2/pids.events", "max 1\n");
	assert_true(lms_cgroup_pids_hit(cg));
	lms_cgroup_destroy(cg, NULL);
	lms_cgroup_destroy(sb, NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(self_path_parsing),
	    cmocka_unit_test_setup_teardown(v1_group_is_child_of_own_group_with_limits, setup, teardown),
	    cmocka_unit_test_setup_teardown(v1_missing_controller_is_explained, setup, teardown),
	    cmocka_unit_test_setup_teardown(v2_uses_own_group_when_it_can_delegate, setup, teardown),
	    cmocka_unit_test_setup_teardown(v2_falls_back_to_top_group, setup, teardown),
	    cmocka_unit_test_setup_teardown(v1_command_group_below_the_sandbox, setup, teardown),
	    cmocka_unit_test_setup_teardown(v2_command_group_is_a_leaf_beside_init, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
