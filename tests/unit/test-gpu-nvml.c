/* The GPUs' memory through NVML (sandbox/gpu-nvml.c), against a fake libnvidia-ml (fake-nvml.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "sandbox/gpu-nvml.h"

static void
without_nvml_memory_stays_unknown(void **state)
{
	(void)state;
	struct lms_gpus gpus = {.control = true, .count = 1};
	lms_gpu_nvml_memory(&gpus); /* never loaded: nothing asked */
	assert_int_equal(gpus.gpu[0].memory_mb, 0);
}

static void
memory_by_uuid_then_by_index(void **state)
{
	(void)state;
	assert_true(lms_gpu_nvml_load(FAKE_NVML));
	assert_true(lms_gpu_nvml_load("/nonexistent/libnvidia-ml.so.1")); /* once per process: the first answer */
	struct lms_gpus gpus = {.control = true, .count = 4};
	/* Found by UUID whatever its index; by index without one; one NVML does not know stays unknown; one
	 * the driver's files gave a size keeps it. */
	gpus.gpu[0] = (struct lms_gpu){.index = 0};
	snprintf(gpus.gpu[0].uuid, sizeof(gpus.gpu[0].uuid), "GPU-bbbb");
	gpus.gpu[1] = (struct lms_gpu){.index = 0};
	gpus.gpu[2] = (struct lms_gpu){.index = 1};
	snprintf(gpus.gpu[2].uuid, sizeof(gpus.gpu[2].uuid), "GPU-zzzz");
	gpus.gpu[3] = (struct lms_gpu){.index = 1, .memory_mb = 7};
	lms_gpu_nvml_memory(&gpus);
	assert_int_equal(gpus.gpu[0].memory_mb, 141 * 1024);
	assert_int_equal(gpus.gpu[1].memory_mb, 80 * 1024);
	assert_int_equal(gpus.gpu[2].memory_mb, 0);
	assert_int_equal(gpus.gpu[3].memory_mb, 7);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(without_nvml_memory_stays_unknown),
	    cmocka_unit_test(memory_by_uuid_then_by_index),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
