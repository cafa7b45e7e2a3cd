#include "sandbox/gpu-nvml.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

/* NVML's own declarations (nvml.h), the few used: its ABI is stable across driver versions. */
typedef int nvml_return;
typedef struct nvml_device *nvml_device;
struct nvml_memory {
	unsigned long long total, free, used;
};

static struct {
	nvml_return (*init)(void);
	nvml_return (*by_index)(unsigned index, nvml_device *device);
	nvml_return (*by_uuid)(const char *uuid, nvml_device *device);
	nvml_return (*memory)(nvml_device device, struct nvml_memory *memory);
	bool ready;
} nvml;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const char *wanted;

static void
load(void)
{
	void *h = dlopen(wanted ? wanted : "libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
	if (h == NULL)
		return;
	*(void **)&nvml.init = dlsym(h, "nvmlInit_v2");
	*(void **)&nvml.by_index = dlsym(h, "nvmlDeviceGetHandleByIndex_v2");
	*(void **)&nvml.by_uuid = dlsym(h, "nvmlDeviceGetHandleByUUID");
	*(void **)&nvml.memory = dlsym(h, "nvmlDeviceGetMemoryInfo");
	/* 0 is NVML_SUCCESS. The library stays loaded: NVML is asked again at each /healthz. */
	nvml.ready = nvml.init && nvml.by_index && nvml.memory && nvml.init() == 0;
	if (!nvml.ready)
		dlclose(h);
}

bool
lms_gpu_nvml_load(const char *library)
{
	wanted = library;
	pthread_once(&once, load);
	return nvml.ready;
}

void
lms_gpu_nvml_memory(struct lms_gpus *gpus)
{
	if (!nvml.ready)
		return;
	for (size_t i = 0; i < gpus->count; i++) {
		struct lms_gpu *g = &gpus->gpu[i];
		nvml_device d = NULL;
		if (g->memory_mb != 0)
			continue;
		nvml_return r = g->uuid[0] && nvml.by_uuid ? nvml.by_uuid(g->uuid, &d) : nvml.by_index(g->index, &d);
		struct nvml_memory m = {0};
		if (r == 0 && nvml.memory(d, &m) == 0)
			g->memory_mb = m.total >> 20;
	}
}
