/* A stand-in for libnvidia-ml.so.1 (test-gpu-nvml.c): two GPUs, by index and by UUID, 80 and 141 GiB. */
#include <string.h>

struct fake_device {
	const char *uuid;
	unsigned long long total;
};
struct nvml_memory {
	unsigned long long total, free, used;
};

static struct fake_device devices[2] = {{"GPU-aaaa", 80ull << 30}, {"GPU-bbbb", 141ull << 30}};

int nvmlInit_v2(void);
int nvmlDeviceGetHandleByIndex_v2(unsigned index, struct fake_device **d);
int nvmlDeviceGetHandleByUUID(const char *uuid, struct fake_device **d);
int nvmlDeviceGetMemoryInfo(struct fake_device *d, struct nvml_memory *m);

int
nvmlInit_v2(void)
{
	return 0;
}

int
nvmlDeviceGetHandleByIndex_v2(unsigned index, struct fake_device **d)
{
	if (index >= 2)
		return 2; /* NVML_ERROR_INVALID_ARGUMENT */
	*d = &devices[index];
	return 0;
}

int
nvmlDeviceGetHandleByUUID(const char *uuid, struct fake_device **d)
{
	for (int i = 0; i < 2; i++)
		if (strcmp(devices[i].uuid, uuid) == 0) {
			*d = &devices[i];
			return 0;
		}
	return 6; /* NVML_ERROR_NOT_FOUND */
}

int
nvmlDeviceGetMemoryInfo(struct fake_device *d, struct nvml_memory *m)
{
	m->total = d->total;
	m->free = m->used = 0;
	return 0;
}
