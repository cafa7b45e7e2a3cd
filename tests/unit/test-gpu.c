/* GPU discovery, selection and the driver's files over fake /dev and /proc trees and fake `ldconfig -p`
 * output: no GPU, driver or root needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/gpu-json.h"
#include "sandbox/gpu-driver.h"
#include "sandbox/gpu.h"

static char root[64];

static void
mkdirs(const char *rel)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/%s'", root, rel);
	assert_int_equal(system(cmd), 0);
}

static void
put(const char *rel, const char *text, mode_t mode)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	char *slash = strrchr(path, '/');
	*slash = '\0';
	mkdirs(path + strlen(root) + 1);
	*slash = '/';
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

/* A device node of the fake /dev: a link to a real character device (mknod needs privileges). */
static void
node(const char *name)
{
	char path[512];
	mkdirs("dev");
	snprintf(path, sizeof(path), "%s/dev/%s", root, name);
	assert_int_equal(symlink("/dev/null", path), 0);
}

static void
gpu_info(const char *bus, const char *model, int minor)
{
	char rel[256], text[512];
	snprintf(rel, sizeof(rel), "proc/driver/nvidia/gpus/%s/information", bus);
	snprintf(text, sizeof(text),
		 "Model: \t\t %s\nIRQ:   120\nGPU UUID: \t GPU-%d-uuid\nVideo BIOS: \t 96.00.74.00.1C\n"
		 "Bus Type: \t PCIe\nDMA Size: \t 52 bits\nBus Location: \t %s\nDevice Minor: \t %d\n"
		 "GPU Excluded:\t No\n",
		 model, minor, bus, minor);
	put(rel, text, 0444);
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
	snprintf(root, sizeof(root), "/tmp/lms-gputest-XXXXXX");
	return mkdtemp(root) ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	return nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Two H200s whose bus order is not their minor order (index follows the bus, as nvidia-smi). */
static void
two_gpus(void)
{
	node("nvidiactl");
	node("nvidia-uvm");
	node("nvidia0");
	node("nvidia1");
	gpu_info("0000:3b:00.0", "NVIDIA H200", 0);
	gpu_info("0000:17:00.0", "NVIDIA H200 \"NVL\"", 1);
}

static void
no_dev_is_no_gpu(void **state)
{
	(void)state;
	struct lms_gpus g;
	assert_int_equal(lms_gpu_discover(root, &g, NULL), 0);
	assert_false(g.control);
	assert_int_equal(g.count, 0);
	struct lms_error *err = NULL;
	uint64_t minors;
	assert_int_equal(lms_gpu_select(&g, LMS_GPU_ALL, &minors, &err), -1);
	assert_int_equal(err->kind, LMS_ERR_UNSUPPORTED);
	assert_non_null(strstr(err->message, "this host has no NVIDIA GPU (/dev/nvidiactl does not exist)"));
	lms_error_free(err);
}

static void
lists_gpus_in_bus_order(void **state)
{
	(void)state;
	two_gpus();
	struct lms_gpus g;
	assert_int_equal(lms_gpu_discover(root, &g, NULL), 0);
	assert_true(g.control);
	assert_int_equal(g.count, 2);
	assert_int_equal(g.gpu[0].index, 0);
	assert_int_equal(g.gpu[0].minor, 1);
	assert_string_equal(g.gpu[0].bus, "0000:17:00.0");
	assert_string_equal(g.gpu[0].name, "NVIDIA H200 ?NVL?"); /* made safe for JSON and labels */
	assert_string_equal(g.gpu[0].uuid, "GPU-1-uuid");
	assert_int_equal(g.gpu[1].minor, 0);
	assert_string_equal(g.gpu[1].name, "NVIDIA H200");
	assert_int_equal(g.gpu[1].memory_mb, 0);

	json_t *j = lms_gpus_json(&g);
	char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(text,
			    "[{\"bus\":\"0000:17:00.0\",\"index\":0,\"memory_mb\":null,\"name\":\"NVIDIA H200 "
			    "?NVL?\",\"uuid\":\"GPU-1-uuid\"},{\"bus\":\"0000:3b:00.0\",\"index\":1,\"memory_mb\":"
			    "null,\"name\":\"NVIDIA H200\",\"uuid\":\"GPU-0-uuid\"}]");
	free(text);
	json_decref(j);
}

static void
selects_by_index(void **state)
{
	(void)state;
	two_gpus();
	struct lms_gpus g;
	assert_int_equal(lms_gpu_discover(root, &g, NULL), 0);
	uint64_t minors;
	assert_int_equal(lms_gpu_select(&g, LMS_GPU_ALL, &minors, NULL), 0);
	assert_int_equal(minors, 3);
	assert_int_equal(lms_gpu_select(&g, 1u << 0, &minors, NULL), 0);
	assert_int_equal(minors, 1u << 1); /* index 0 is /dev/nvidia1 */
	struct lms_error *err = NULL;
	assert_int_equal(lms_gpu_select(&g, (1u << 0) | (1u << 3) | (1u << 5), &minors, &err), -1);
	assert_int_equal(err->kind, LMS_ERR_UNSUPPORTED);
	assert_non_null(strstr(err->message, "gpu: no GPU with index 3, 5 on this host; it has 0, 1"));
	lms_error_free(err);
}

/* Only usable nodes count: a /proc entry without its node, a regular file, other nvidia* names. */
static void
ignores_what_is_not_a_gpu_node(void **state)
{
	(void)state;
	two_gpus();
	gpu_info("0000:5d:00.0", "NVIDIA H200", 2); /* no /dev/nvidia2 */
	put("dev/nvidia3", "", 0644);		    /* not a device */
	node("nvidia07");
	node("nvidia-modeset");
	node("nvidia-nvswitch0");
	mkdirs("dev/nvidia-caps");
	struct lms_gpus g;
	assert_int_equal(lms_gpu_discover(root, &g, NULL), 0);
	assert_int_equal(g.count, 2);
	assert_int_equal(g.gpu[0].minor, 1);
	assert_int_equal(g.gpu[1].minor, 0);
}

/* Without the driver's /proc files (a container that masks them): the nodes, by minor, unnamed. */
static void
nodes_alone(void **state)
{
	(void)state;
	node("nvidiactl");
	node("nvidia2");
	node("nvidia0");
	struct lms_gpus g;
	assert_int_equal(lms_gpu_discover(root, &g, NULL), 0);
	assert_int_equal(g.count, 2);
	assert_int_equal(g.gpu[0].minor, 0);
	assert_int_equal(g.gpu[1].minor, 2);
	assert_int_equal(g.gpu[1].index, 1);
	assert_string_equal(g.gpu[1].name, "");
}

static void
node_selection(void **state)
{
	(void)state;
	const char *control[] = {"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset", "nvidia-caps"};
	for (size_t i = 0; i < 5; i++)
		assert_true(lms_gpu_node_wanted(control[i], 0));
	assert_true(lms_gpu_node_wanted("nvidia1", 1u << 1));
	assert_true(lms_gpu_node_wanted("nvidia63", 1ull << 63));
	assert_false(lms_gpu_node_wanted("nvidia0", 1u << 1));
	assert_false(lms_gpu_node_wanted("nvidia01", ~0ull));
	assert_false(lms_gpu_node_wanted("nvidia64", ~0ull));
	assert_false(lms_gpu_node_wanted("nvidia", ~0ull));
	assert_false(lms_gpu_node_wanted("nvidia-nvswitch0", ~0ull));
	assert_false(lms_gpu_node_wanted("null", ~0ull));
}

static void
information_without_minor(void **state)
{
	(void)state;
	struct lms_gpu g = {0};
	assert_false(lms_gpu_parse_information("Model: X\nDevice Minor: 64\n", &g));
	assert_false(lms_gpu_parse_information("Model: X\nDevice Minor: -1\n", &g));
	assert_false(lms_gpu_parse_information("", &g));
	assert_true(lms_gpu_parse_information("Device Minor: 7", &g));
	assert_int_equal(g.minor, 7);
}

static const char ldconfig[] =
    "1234 libs found in cache `/etc/ld.so.cache'\n"
    "\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1\n"
    "\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/local/nvidia/lib64/libnvidia-ml.so.1\n"
    "\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1\n"
    "\tlibnvidia-ml.so.1 (libc6) => /usr/lib/i386-linux-gnu/libnvidia-ml.so.1\n"
    "\tlibnvidia-ptxjitcompiler.so.1 (libc6,x86-64) => /usr/local/nvidia/lib64/libnvidia-ptxjitcompiler.so.1\n"
    "\tlibnvidia-pkcs11-openssl3.so.550.54.15 (libc6,x86-64) => /usr/lib/libnvidia-pkcs11-openssl3.so.550.54.15\n"
    "\tlibcudart.so.12 (libc6,x86-64) => /usr/local/cuda/lib64/libcudart.so.12\n"
    "\tlibcuda.so.1 (libc6,x86-64, OS ABI: Linux 3.2.0) => /usr/local/nvidia/lib64/libcuda.so.1\n"
    "\tlibcuda.so (libc6,x86-64) => /usr/local/nvidia/lib64/libcuda.so\n"
    "\tlibcuda.so (libc6,AArch64) => /usr/lib/aarch64-linux-gnu/libcuda.so\n"
    "\tlibnvidia-cfg.so.1 (libc6,x86-64) => relative/libnvidia-cfg.so.1\n"
    "\tlibnvidia-opencl.so.1 (libc6,x86-64) => /usr/lib/../../etc/libnvidia-opencl.so.1\n"
    "\tlibnvidia-allocator.so.1 (libc6,x86-64) =>\n"
    "\tlibnvidia-nvvm.so.4 libc6,x86-64 => /usr/lib/libnvidia-nvvm.so.4\n"
    "\tlibcudadebugger.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcudadebugger.so.1";

static void
driver_libraries_from_the_linker_cache(void **state)
{
	(void)state;
	struct lms_gpu_driver drv = {0};
	lms_gpu_driver_libs(ldconfig, strlen(ldconfig), "x86-64", &drv);
	const char *want[] = {
	    "/usr/local/nvidia/lib64/libnvidia-ml.so.1",
	    "/usr/local/nvidia/lib64/libnvidia-ptxjitcompiler.so.1",
	    "/usr/lib/libnvidia-pkcs11-openssl3.so.550.54.15",
	    "/usr/local/nvidia/lib64/libcuda.so.1",
	    "/usr/local/nvidia/lib64/libcuda.so",
	    "/usr/lib/x86_64-linux-gnu/libcudadebugger.so.1",
	};
	assert_int_equal(drv.n_libs, 6);
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(drv.libs[i], want[i]);
	assert_null(drv.libs[6]);
	lms_gpu_driver_free(&drv);

	lms_gpu_driver_libs(ldconfig, strlen(ldconfig), "AArch64", &drv);
	assert_int_equal(drv.n_libs, 1);
	assert_string_equal(drv.libs[0], "/usr/lib/aarch64-linux-gnu/libcuda.so");
	lms_gpu_driver_free(&drv);

	lms_gpu_driver_libs("", 0, "x86-64", &drv);
	lms_gpu_driver_libs(ldconfig, strlen(ldconfig), NULL, &drv);
	assert_int_equal(drv.n_libs, 0);
	assert_non_null(lms_gpu_host_abi());
}

static void
driver_tools_on_the_path(void **state)
{
	(void)state;
	put("usr/local/nvidia/bin/nvidia-smi", "#!/bin/sh\n", 0755);
	put("usr/bin/nvidia-smi", "#!/bin/sh\n", 0755);
	put("usr/bin/nvidia-debugdump", "", 0644); /* not executable */
	put("usr/bin/nvidia-cuda-mps-control", "", 0755);
	mkdirs("usr/bin/nvidia-persistenced"); /* a folder */
	struct lms_gpu_driver drv = {0};
	lms_gpu_driver_bins(root, "relative:/usr/local/nvidia/bin::/usr/bin", &drv);
	assert_int_equal(drv.n_bins, 2);
	assert_string_equal(drv.bins[0], "/usr/local/nvidia/bin/nvidia-smi");
	assert_string_equal(drv.bins[1], "/usr/bin/nvidia-cuda-mps-control");
	lms_gpu_driver_free(&drv);
}

static void
selection_text(void **state)
{
	(void)state;
	uint64_t g = 0;
	assert_int_equal(lms_gpu_selection_parse_text(NULL, &g, NULL), 0);
	assert_true(g == LMS_GPU_ALL);
	assert_int_equal(lms_gpu_selection_parse_text("all", &g, NULL), 0);
	assert_true(g == LMS_GPU_ALL);
	assert_int_equal(lms_gpu_selection_parse_text("0,1", &g, NULL), 0);
	assert_int_equal(g, 3);
	assert_int_equal(lms_gpu_selection_parse_text("63", &g, NULL), 0);
	assert_true(g == 1ull << 63);
	const char *bad[] = {"", "0,", ",1", "0,,1", "64", "1000000000000000000000", "a", "1;2"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct lms_error *err = NULL;
		assert_int_equal(lms_gpu_selection_parse_text(bad[i], &g, &err), -1);
		assert_int_equal(err->kind, LMS_ERR_INVALID);
		assert_non_null(strstr(err->message, "--gpu takes all or GPU indices"));
		lms_error_free(err);
	}
	assert_true(lms_gpu_selection_text_like("all"));
	assert_true(lms_gpu_selection_text_like("0,1"));
	assert_false(lms_gpu_selection_text_like("--"));
	assert_false(lms_gpu_selection_text_like("nvidia-smi"));
	assert_false(lms_gpu_selection_text_like(""));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(no_dev_is_no_gpu, setup, teardown),
	    cmocka_unit_test_setup_teardown(lists_gpus_in_bus_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(selects_by_index, setup, teardown),
	    cmocka_unit_test_setup_teardown(ignores_what_is_not_a_gpu_node, setup, teardown),
	    cmocka_unit_test_setup_teardown(nodes_alone, setup, teardown),
	    cmocka_unit_test(node_selection),
	    cmocka_unit_test(information_without_minor),
	    cmocka_unit_test(driver_libraries_from_the_linker_cache),
	    cmocka_unit_test_setup_teardown(driver_tools_on_the_path, setup, teardown),
	    cmocka_unit_test(selection_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
