#pragma once
/*
 * The GPUs' memory from NVIDIA's management library (NVML), which the driver's /proc and /sys files do
 * not say. libnvidia-ml.so.1 is loaded (dlopen) once, where it is installed: never a dependency of
 * lm-sandbox, and without it memory_mb stays unknown (null in the API).
 */
#include <stdbool.h>

#include "sandbox/gpu.h"

/* Loads library (NULL: "libnvidia-ml.so.1", as the dynamic linker finds it) and runs nvmlInit_v2,
 * once for the process; later calls return the first one's answer. true when NVML can be asked. */
bool lms_gpu_nvml_load(const char *library);

/* Fills the memory_mb of each GPU that has none: its NVML device found by UUID where it has one, else
 * by index. Without NVML (lms_gpu_nvml_load false or never called), nothing changes. */
void lms_gpu_nvml_memory(struct lms_gpus *gpus);
